"""Ingestion throughput: our API (key, token, origin, rate limit, outbox in the path) against
a bare Flask endpoint inserting the same rows (``bench/bare_app.py``), same server, same run.

    /work/venv/bin/python bench/ingest.py [--seconds 8] [--connections 8] [--only pg|sqlite]

- PostgreSQL: the scale-out setup — Granian (``--workers`` × ``--threads`` blocking
  threads; ``--pg-server gunicorn`` for gunicorn's gthread workers instead),
  Redis for the rate-limit counters and the Celery enqueue after commit (to a throwaway
  queue that nothing consumes; it is deleted at the end).
- SQLite: the embedded default — ``corrigenda up`` (Granian, ``--embedded-threads``, the
  in-process worker processing what is ingested) against the bare app under Granian with
  the same thread count.

Prints requests/s, events/s and p50/p99 latency for each scenario beside the baseline, and
the ratio. Bounded: every scenario runs ``--seconds`` (plus 1 s warm-up).
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import loadgen, wrk  # noqa: E402
from corrigenda.db import make_engine  # noqa: E402
from corrigenda.models import Prediction, metadata  # noqa: E402
from corrigenda.tokens import TokenSigner  # noqa: E402
from tests.factories import setup_project_with_keys  # noqa: E402
from tests.services import REDIS_URL, throwaway_postgres_database  # noqa: E402

SECRET = "bench-secret-key"
ORIGIN = "http://127.0.0.1:5050"
PREDICTIONS = 200
HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    """A running server: its port and its process (the root of its process tree)."""

    port: int
    pid: int


Serving = AbstractContextManager[Served]


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _process_tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
            parents.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


@dataclass
class CpuMeter:
    """CPU used during a measurement by the server's processes, the database's backends
    serving this benchmark's database (PostgreSQL) and the load generator — per request,
    the figure that noise on the shared cores changes least (2 cores / this = a ceiling)."""

    served: Served
    database_url: str | None
    start: dict[str, float] = field(default_factory=dict)

    def snapshot(self) -> dict[str, float]:
        server = sum(_cpu_of(pid) for pid in _process_tree(self.served.pid))
        backends = sum(_cpu_of(pid) for pid in self._backend_pids())
        # wrk once it has exited, or the asyncio generator in this process
        loadgen_cpu = sum(
            usage.ru_utime + usage.ru_stime
            for usage in map(resource.getrusage, (resource.RUSAGE_CHILDREN, resource.RUSAGE_SELF))
        )
        return {"server": server, "database": backends, "loadgen": loadgen_cpu}

    def _backend_pids(self) -> list[int]:
        if not self.database_url or not self.database_url.startswith("postgresql"):
            return []
        import psycopg

        url = self.database_url.replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        return [pid for (pid,) in rows]

    def __enter__(self) -> CpuMeter:
        self.start = self.snapshot()
        return self

    def __exit__(self, *_exc: object) -> None:
        end = self.snapshot()
        self.used = {name: end[name] - self.start[name] for name in end}

    def per_request_ms(self, requests: int) -> str:
        if not requests:
            return ""
        parts = [f"{name} {seconds * 1000 / requests:.2f}" for name, seconds in self.used.items()]
        total = sum(self.used.values()) * 1000 / requests
        return f"CPU ms/request: {', '.join(parts)}, total {total:.2f}"


@contextmanager
def server(command: list[str], env: dict[str, str], port: int) -> Iterator[Served]:
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {' '.join(command)}")
            try:
                httpx.get(f"http://{HOST}:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)  # waiting for the server to listen
        yield Served(port, process.pid)
    finally:
        process.terminate()
        process.wait(20)


def gunicorn(target: str, env: dict[str, str], args: argparse.Namespace) -> Serving:
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", target, "-b", f"{HOST}:{port}", "-w", str(args.workers),
        "-k", args.worker_class, "--threads", str(args.threads), "--keep-alive", "30",
        "--log-level", "warning",
    ]  # fmt: skip
    return server(command, env, port)


def granian(target: str, env: dict[str, str], args: argparse.Namespace) -> Serving:
    port = free_port()
    url = env.get("CORRIGENDA_DATABASE_URL") or env["BARE_DATABASE_URL"]
    pg = url.startswith("postgresql")
    workers, threads = (args.workers, args.threads) if pg else (1, args.embedded_threads)
    factory = ["--factory"] if target.endswith("()") else []
    command = [
        sys.executable, "-m", "granian", "--interface", "wsgi", "--host", HOST,
        "--port", str(port), "--workers", str(workers), "--blocking-threads", str(threads),
        "--log-level", "warning", *factory, target.removesuffix("()"),
    ]  # fmt: skip
    return server(command, env, port)


def embedded(_target: str, env: dict[str, str], args: argparse.Namespace) -> Serving:
    """``corrigenda up``: Granian plus the in-process worker, as users run it."""
    port = free_port()
    command = [
        sys.executable, "-m", "corrigenda", "up", "--port", str(port),
        "--threads", str(args.embedded_threads),
    ]  # fmt: skip
    return server(command, {**env, "CORRIGENDA_HOST": HOST}, port)


def prepare(url: str) -> dict:  # type: ignore[type-arg]
    engine = make_engine(url)
    metadata.create_all(engine)
    keys = setup_project_with_keys(engine, "bench")
    from corrigenda.db import transaction

    with transaction(engine) as session:
        rows = [
            Prediction(project_id=keys["project_id"], client_id=f"p-{i}", input={"text": "t"})
            for i in range(PREDICTIONS)
        ]
        session.add_all(rows)
        session.flush()
        signer = TokenSigner(SECRET, 3600)
        keys["predictions"] = [
            (r.id, r.client_id, signer.sign(project_id=keys["project_id"], prediction_id=r.id,
                                            prediction=r.client_id))
            for r in rows
        ]  # fmt: skip
    engine.dispose()
    return keys


@dataclass(frozen=True)
class Load:
    """One scenario's requests: ``body(n)`` for the asyncio generator, ``lua`` (defining
    ``body(n)``) for wrk — the same bodies either way, each event with a fresh UUID."""

    path: str
    headers: dict[str, str]
    body: Callable[[int], bytes]
    lua: str


def _event_json(fields: str) -> str:
    """Lua: one event object with a fresh id followed by ``fields`` (a Lua expression)."""
    return "'{\"id\":\"' .. uuid() .. '\",' .. " + fields + " .. '}'"


def single_ours(keys: dict) -> Load:  # type: ignore[type-arg]
    headers = {
        "Authorization": f"Bearer {keys['pk']}",
        "Origin": ORIGIN,
        "Content-Type": "application/json",
    }
    tokens = [token for _, _, token in keys["predictions"]]

    def body(n: int) -> bytes:
        event = {"id": str(uuid.uuid4()), "token": tokens[n % len(tokens)], "kind": "accept"}
        return orjson.dumps(event)

    fields = '\'"token":"\' .. tokens[n % #tokens + 1] .. \'","kind":"accept"\''
    lua = (
        f"local tokens = {wrk.lua_list(tokens)}\nfunction body(n) return {_event_json(fields)} end"
    )
    return Load("/api/v1/feedback", headers, body, lua)


def single_bare(keys: dict) -> Load:  # type: ignore[type-arg]
    row_ids = [str(row_id) for row_id, _, _ in keys["predictions"]]

    def body(n: int) -> bytes:
        event = {"id": str(uuid.uuid4()), "prediction_id": int(row_ids[n % len(row_ids)])}
        return orjson.dumps(event | {"kind": "accept"})

    fields = '\'"prediction_id":\' .. rows[n % #rows + 1] .. \',"kind":"accept"\''
    lua = f"local rows = {wrk.lua_list(row_ids)}\nfunction body(n) return {_event_json(fields)} end"
    return Load("/bare", {"Content-Type": "application/json"}, body, lua)


def _batch_lua(name: str, values: list[str], fields: str, size: int) -> str:
    return f"""local {name} = {wrk.lua_list(values)}
function body(n)
  local events = {{}}
  for i = 1, {size} do
    events[i] = {_event_json(fields)}
  end
  return '{{"events":[' .. table.concat(events, ",") .. ']}}'
end"""


def batch_ours(keys: dict, size: int = 500) -> Load:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {keys['sk']}", "Content-Type": "application/json"}
    clients = [client_id for _, client_id, _ in keys["predictions"]]

    def body(_n: int) -> bytes:
        events = [
            {"id": str(uuid.uuid4()), "prediction": clients[i % len(clients)], "kind": "accept"}
            for i in range(size)
        ]
        return orjson.dumps({"events": events})

    fields = '\'"prediction":"\' .. clients[(i - 1) % #clients + 1] .. \'","kind":"accept"\''
    return Load("/api/v1/feedback", headers, body, _batch_lua("clients", clients, fields, size))


def batch_bare(keys: dict, size: int = 500) -> Load:  # type: ignore[type-arg]
    row_ids = [str(row_id) for row_id, _, _ in keys["predictions"]]

    def body(_n: int) -> bytes:
        events = [
            {"id": str(uuid.uuid4()), "prediction_id": int(row_ids[i % len(row_ids)])}
            | {"kind": "accept"}
            for i in range(size)
        ]
        return orjson.dumps({"events": events})

    fields = '\'"prediction_id":\' .. rows[(i - 1) % #rows + 1] .. \',"kind":"accept"\''
    return Load(
        "/bare",
        {"Content-Type": "application/json"},
        body,
        _batch_lua("rows", row_ids, fields, size),
    )


def load(
    served: Served, scenario: Load, args: argparse.Namespace, database_url: str
) -> tuple[loadgen.Result | wrk.WrkResult, CpuMeter]:
    """Run one scenario with wrk, or the asyncio generator without it: a 1 s warm-up, then
    ``--seconds`` measured, with the CPU used during the measured part."""
    if args.loadgen == "wrk":

        def run(seconds: float) -> wrk.WrkResult:
            return wrk.run(
                HOST, served.port, scenario.path, scenario.headers, scenario.lua,
                connections=args.connections, seconds=seconds, warmup=0,
            )  # fmt: skip

    else:
        count = iter(range(1 << 62))

        def make() -> bytes:
            body = scenario.body(next(count))
            return loadgen.build_request(HOST, served.port, scenario.path, body, scenario.headers)

        def run(seconds: float) -> loadgen.Result:  # type: ignore[misc]
            return loadgen.run(
                HOST, served.port, make, connections=args.connections, seconds=seconds, warmup=0
            )

    run(1.0)
    with CpuMeter(served, database_url) as meter:
        result = run(args.seconds)
    return result, meter


def app_env(url: str, redis_url: str | None = None, queue: str = "") -> dict[str, str]:
    env = {
        "CORRIGENDA_DATABASE_URL": url,
        "CORRIGENDA_SECRET_KEY": SECRET,
        "CORRIGENDA_DATA_DIR": tempfile.mkdtemp(prefix="corrigenda-bench-"),
        "CORRIGENDA_RATE_LIMIT_PER_KEY": "10000000/minute",
        "CORRIGENDA_RATE_LIMIT_PER_ADDRESS": "10000000/minute",
    }
    if redis_url:
        env |= {"CORRIGENDA_REDIS_URL": redis_url, "CORRIGENDA_CELERY_QUEUE": queue}
    return env


def measure(
    name: str,
    scenario: tuple[Callable, Callable],  # type: ignore[type-arg]
    servers: tuple[Callable, Callable],  # type: ignore[type-arg]
    env: dict[str, str],
    keys: dict,  # type: ignore[type-arg]
    args: argparse.Namespace,
    per_request: int,
    backlog: Callable[[], str] | None = None,
) -> None:
    (ours, bare), (our_server, bare_server) = scenario, servers
    url = env["CORRIGENDA_DATABASE_URL"]
    with our_server("webapp:create_app()", env, args) as served:
        mine = load(served, ours(keys), args, url)
        if backlog is not None:
            print(backlog(), flush=True)
    bare_env = {"BARE_DATABASE_URL": url, "BARE_PROJECT_ID": str(keys["project_id"])}
    with bare_server("bench.bare_app:app", bare_env, args) as served:
        base = load(served, bare(keys), args, url)
    for label, (result, meter) in (("ours", mine), ("bare", base)):
        requests = round(result.rate * args.seconds)
        print(
            f"{name:28} {label:5} {result.rate:9.0f} req/s"
            f" {result.rate * per_request:10.0f} events/s"
            f"  p50 {result.percentile(0.5):6.1f} ms  p99 {result.percentile(0.99):6.1f} ms"
            f"  statuses {result.statuses} errors {result.errors}\n"
            f"{'':34} {meter.per_request_ms(requests)}",
            flush=True,
        )
    ratio = mine[0].rate / base[0].rate if base[0].rate else 0.0
    print(f"{name:28} ratio ours/bare = {ratio:.2f}\n", flush=True)


def run_postgresql(args: argparse.Namespace) -> None:
    queue = f"corrigenda-bench-{uuid.uuid4().hex[:8]}"
    with throwaway_postgres_database() as url:
        keys = prepare(url)
        env = app_env(url, REDIS_URL, queue)
        servers = (granian, granian) if args.pg_server == "granian" else (gunicorn, gunicorn)
        try:
            single = (single_ours, single_bare)
            measure("pg single feedback", single, servers, env, keys, args, 1)
            batch = (batch_ours, batch_bare)
            measure("pg batch feedback (500)", batch, servers, env, keys, args, 500)
        finally:
            redis.Redis.from_url(REDIS_URL).delete(queue)  # our own throwaway queue only


def run_sqlite(args: argparse.Namespace) -> None:
    url = f"sqlite:///{tempfile.mkdtemp(prefix='corrigenda-bench-')}/bench.db"
    env = app_env(url)
    subprocess.run(
        [sys.executable, "-m", "corrigenda", "migrate"], cwd=ROOT, env={**os.environ, **env},
        check=True, capture_output=True,
    )  # fmt: skip
    keys = prepare(url)
    scenario = (single_ours, single_bare)
    backlog = functools.partial(processing_backlog, url.removeprefix("sqlite:///"))
    measure("sqlite single feedback", scenario, (embedded, granian), env, keys, args, 1, backlog)


def processing_backlog(path: str, wait_seconds: float = 60.0) -> str:
    """Whether the in-process worker kept up: the events still unprocessed when the load
    stopped, and how long the worker then took to process them (while idle)."""

    def counts() -> tuple[int, int]:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            total, pending = db.execute(
                "SELECT (SELECT count(*) FROM feedback_event), (SELECT count(*) FROM pending_event)"
            ).fetchone()
        return total, pending

    stopped = time.monotonic()
    total, pending = counts()
    left = pending
    while left and time.monotonic() - stopped < wait_seconds:
        time.sleep(0.25)  # polling the worker's progress from outside the server
        left = counts()[1]
    drained = f"processed {time.monotonic() - stopped:.1f} s later" if not left else "not drained"
    return (
        f"{'':34} backlog when the load stopped: {pending} of {total} events unprocessed"
        f" ({drained}{f', {left} left' if left else ''})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class")
    parser.add_argument("--embedded-threads", type=int, default=8, help="SQLite server threads")
    parser.add_argument("--only", choices=["pg", "sqlite"])
    parser.add_argument(
        "--pg-server", choices=["granian", "gunicorn"], default="granian",
        help="PostgreSQL scenarios' server (gunicorn: pip install '.[bench]'); SQLite: Granian",
    )  # fmt: skip
    parser.add_argument(
        "--loadgen", choices=["wrk", "python"], default="wrk" if wrk.available() else "python",
        help="wrk when installed (apt-get install wrk), else bench/loadgen.py",
    )  # fmt: skip
    args = parser.parse_args()
    used = f"{wrk.version()} ({wrk.THREADS} threads)" if args.loadgen == "wrk" else "loadgen.py"
    print(f"load generator: {used}, the same for ours and bare", flush=True)
    print(
        f"cpus={os.cpu_count()} connections={args.connections} seconds={args.seconds}"
        f" {args.pg_server}={args.workers}x{args.threads} embedded threads={args.embedded_threads}"
        f" load average={os.getloadavg()[0]:.1f}\n",
        flush=True,
    )
    if args.only != "sqlite":
        run_postgresql(args)
    if args.only != "pg":
        run_sqlite(args)
    print(f"load average at the end={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
