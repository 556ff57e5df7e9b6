"""Real services for tests: a throw-away PostgreSQL database, Redis, a Celery worker process.

Under ``CI=true`` a missing service fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import redis

POSTGRES_ADMIN_URL = os.environ.get(
    "CORRIGENDA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CORRIGENDA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parent.parent


def unavailable(what: str) -> None:
    """Fail in CI, skip elsewhere: CI must never pass by skipping."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} is required in CI but unavailable")
    pytest.skip(f"{what} unavailable")


@contextmanager
def throwaway_postgres_database() -> Iterator[str]:
    """Create a uniquely named database (so parallel test runs never collide); drop it after."""
    name = f"corrigenda_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL at {POSTGRES_ADMIN_URL} ({exc})")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def require_redis() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {REDIS_URL} ({exc})")
    return REDIS_URL


class CeleryWorkerProcess:
    """``celery worker`` as a real child process, consuming one queue of its own."""

    def __init__(self, env: dict[str, str], name: str, pool: str = "solo") -> None:
        self.env = env
        self.name = name
        self.pool = pool
        self.process: subprocess.Popen[str] | None = None
        self.log_path = Path(env.get("CORRIGENDA_DATA_DIR", "/tmp")) / f"{name}.log"

    def start(self, timeout: float = 60.0) -> CeleryWorkerProcess:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.celery_app",
            "worker",
            "--loglevel=INFO",
            f"--pool={self.pool}",
            "--concurrency=1",
            f"--hostname={self.name}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **self.env},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._wait_until_ready(timeout)
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text() if self.log_path.exists() else ""
            if " ready." in text:
                return
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{text}")
            time.sleep(0.1)  # polling a log file for readiness, not standing in for sync
        raise TimeoutError(
            f"celery worker not ready after {timeout}s:\n{self.log_path.read_text()}"
        )

    def kill(self) -> None:
        """SIGKILL, as a crashed machine would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, message: str = "") -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true; fail with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(message or f"condition not met within {timeout}s")
