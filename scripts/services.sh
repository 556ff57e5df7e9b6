#!/usr/bin/env bash
# Make sure PostgreSQL, Redis, Chromium and Node.js are installed and running (Debian; as root
# it installs what is missing). Sourced by scripts/test; exports CORRIGENDA_TEST_POSTGRES_URL.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

wait_until() {  # wait_until SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq "$((seconds * 5))"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "error: $what did not come up within ${seconds}s" >&2; return 1
}

ensure_postgres() {
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
    wait_until 60 PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432
  fi
  local url=${CORRIGENDA_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}
  if ! psql "$url" -qAtc 'select 1' >/dev/null 2>&1; then
    # A fresh Debian install wants a password over TCP: give postgres one, create "test".
    as_root su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
    as_root su postgres -c "createdb test" 2>/dev/null || true
    url=postgresql://postgres:postgres@127.0.0.1:5432/test
  fi
  export CORRIGENDA_TEST_POSTGRES_URL=$url
}

ensure_redis() {
  command -v redis-server >/dev/null || apt_install redis-server
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    as_root mkdir -p /var/lib/redis /var/log/redis
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_until 30 Redis redis-cli -h 127.0.0.1 -p 6379 ping
  fi
}

ensure_chromium() {
  command -v chromium >/dev/null || apt_install chromium
}

ensure_node() {
  command -v npm >/dev/null || apt_install nodejs npm
}

ensure_postgres
ensure_redis
ensure_chromium
ensure_node
