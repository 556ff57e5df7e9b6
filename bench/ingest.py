"""Ingestion throughput: our API (key, token, origin, rate limit, outbox in the path) against
a bare Flask endpoint inserting the same rows (``bench/bare_app.py``), same server, same run.

    /work/venv/bin/python bench/ingest.py [--seconds 8] [--connections 8] [--only pg|sqlite]

- PostgreSQL: the scale-out setup — gunicorn (``--workers`` × ``--threads`` gthread),
  Redis for the rate-limit counters and the Celery enqueue after commit (to a throwaway
  queue that nothing consumes; it is deleted at the end).
- SQLite: the embedded default — ``corrigenda up`` (waitress, ``--waitress-threads``, the
  in-process worker processing what is ingested) against the bare app under waitress with
  the same thread count.

Prints requests/s, events/s and p50/p99 latency for each scenario beside the baseline, and
the ratio. Bounded: every scenario runs ``--seconds`` (plus 1 s warm-up).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import orjson
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import loadgen  # noqa: E402
from corrigenda.db import make_engine  # noqa: E402
from corrigenda.models import Prediction, metadata  # noqa: E402
from corrigenda.tokens import TokenSigner  # noqa: E402
from tests.factories import setup_project_with_keys  # noqa: E402
from tests.services import REDIS_URL, throwaway_postgres_database  # noqa: E402

SECRET = "bench-secret-key"
ORIGIN = "http://127.0.0.1:5050"
PREDICTIONS = 200
HOST = "127.0.0.1"
Served = AbstractContextManager[int]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextmanager
def server(command: list[str], env: dict[str, str], port: int) -> Iterator[int]:
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
        yield port
    finally:
        process.terminate()
        process.wait(20)


def gunicorn(target: str, env: dict[str, str], args: argparse.Namespace) -> Served:
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", target, "-b", f"{HOST}:{port}", "-w", str(args.workers),
        "-k", "gthread", "--threads", str(args.threads), "--keep-alive", "30",
        "--log-level", "warning",
    ]  # fmt: skip
    return server(command, env, port)


def waitress(target: str, env: dict[str, str], args: argparse.Namespace) -> Served:
    port = free_port()
    command = [
        sys.executable, "-m", "waitress", f"--listen={HOST}:{port}",
        f"--threads={args.waitress_threads}",
        *(["--call", target[:-2]] if target.endswith("()") else [target]),
    ]  # fmt: skip
    return server(command, env, port)


def embedded(_target: str, env: dict[str, str], args: argparse.Namespace) -> Served:
    """``corrigenda up``: waitress plus the in-process worker, as users run it."""
    port = free_port()
    command = [
        sys.executable, "-m", "corrigenda", "up", "--port", str(port),
        "--threads", str(args.waitress_threads),
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


def counter() -> Callable[[], int]:
    state = {"n": 0}

    def next_n() -> int:
        state["n"] += 1
        return state["n"]

    return next_n


def single_ours(port: int, keys: dict) -> Callable[[], bytes]:  # type: ignore[type-arg]
    headers = {
        "Authorization": f"Bearer {keys['pk']}",
        "Origin": ORIGIN,
        "Content-Type": "application/json",
    }
    n = counter()
    preds = keys["predictions"]

    def make() -> bytes:
        _, _, token = preds[n() % len(preds)]
        body = orjson.dumps({"id": str(uuid.uuid4()), "token": token, "kind": "accept"})
        return loadgen.build_request(HOST, port, "/api/v1/feedback", body, headers)

    return make


def single_bare(port: int, keys: dict) -> Callable[[], bytes]:  # type: ignore[type-arg]
    headers = {"Content-Type": "application/json"}
    n = counter()
    preds = keys["predictions"]

    def make() -> bytes:
        row_id, _, _ = preds[n() % len(preds)]
        body = orjson.dumps({"id": str(uuid.uuid4()), "prediction_id": row_id, "kind": "accept"})
        return loadgen.build_request(HOST, port, "/bare", body, headers)

    return make


def batch_ours(port: int, keys: dict, size: int = 500) -> Callable[[], bytes]:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {keys['sk']}", "Content-Type": "application/json"}
    preds = keys["predictions"]

    def make() -> bytes:
        events = [
            {"id": str(uuid.uuid4()), "prediction": preds[i % len(preds)][1], "kind": "accept"}
            for i in range(size)
        ]
        return loadgen.build_request(
            HOST, port, "/api/v1/feedback", orjson.dumps({"events": events}), headers
        )

    return make


def batch_bare(port: int, keys: dict, size: int = 500) -> Callable[[], bytes]:  # type: ignore[type-arg]
    headers = {"Content-Type": "application/json"}
    preds = keys["predictions"]

    def make() -> bytes:
        events = [
            {"id": str(uuid.uuid4()), "prediction_id": preds[i % len(preds)][0], "kind": "accept"}
            for i in range(size)
        ]
        return loadgen.build_request(HOST, port, "/bare", orjson.dumps({"events": events}), headers)

    return make


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
) -> None:
    (ours, bare), (our_server, bare_server) = scenario, servers
    with our_server("webapp:create_app()", env, args) as port:
        mine = loadgen.run(
            HOST, port, ours(port, keys), connections=args.connections, seconds=args.seconds
        )
    bare_env = {"BARE_DATABASE_URL": env["CORRIGENDA_DATABASE_URL"]}
    bare_env["BARE_PROJECT_ID"] = str(keys["project_id"])
    with bare_server("bench.bare_app:app", bare_env, args) as port:
        base = loadgen.run(
            HOST, port, bare(port, keys), connections=args.connections, seconds=args.seconds
        )
    for label, result in (("ours", mine), ("bare", base)):
        print(
            f"{name:28} {label:5} {result.rate:9.0f} req/s"
            f" {result.rate * per_request:10.0f} events/s"
            f"  p50 {result.percentile(0.5):6.1f} ms  p99 {result.percentile(0.99):6.1f} ms"
            f"  statuses {result.statuses} errors {result.errors}",
            flush=True,
        )
    ratio = mine.rate / base.rate if base.rate else 0.0
    print(f"{name:28} ratio ours/bare = {ratio:.2f}\n", flush=True)


def run_postgresql(args: argparse.Namespace) -> None:
    queue = f"corrigenda-bench-{uuid.uuid4().hex[:8]}"
    with throwaway_postgres_database() as url:
        keys = prepare(url)
        env = app_env(url, REDIS_URL, queue)
        servers = (gunicorn, gunicorn)
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
    measure("sqlite single feedback", scenario, (embedded, waitress), env, keys, args, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--waitress-threads", type=int, default=8)
    parser.add_argument("--only", choices=["pg", "sqlite"])
    args = parser.parse_args()
    print(
        f"cpus={os.cpu_count()} connections={args.connections} seconds={args.seconds}"
        f" gunicorn={args.workers}x{args.threads} waitress threads={args.waitress_threads}"
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
