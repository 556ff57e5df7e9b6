"""Ingestion throughput: our API (key, token, origin, rate limit, outbox in the path) against
a bare Flask endpoint inserting the same rows, both under gunicorn on loopback, same run.

    /work/venv/bin/python bench/ingest.py [--seconds 8] [--connections 8] [--only pg|sqlite]

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
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import loadgen  # noqa: E402
from corrigenda.db import make_engine  # noqa: E402
from corrigenda.models import Prediction, metadata  # noqa: E402
from corrigenda.tokens import TokenSigner  # noqa: E402
from tests.factories import setup_project_with_keys  # noqa: E402
from tests.services import throwaway_postgres_database  # noqa: E402

SECRET = "bench-secret-key"
ORIGIN = "http://127.0.0.1:5050"
PREDICTIONS = 200
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn(target: str, env: dict[str, str], workers: int = 2) -> Iterator[int]:
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", target, "-b", f"{HOST}:{port}", "-w", str(workers),
        "-k", "gthread", "--threads", "4", "--keep-alive", "30", "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://{HOST}:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)  # waiting for the server to listen
        yield port
    finally:
        process.terminate()
        process.wait(20)


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


def app_env(url: str) -> dict[str, str]:
    return {
        "CORRIGENDA_DATABASE_URL": url,
        "CORRIGENDA_SECRET_KEY": SECRET,
        "CORRIGENDA_DATA_DIR": tempfile.mkdtemp(prefix="corrigenda-bench-"),
        "CORRIGENDA_RATE_LIMIT_PER_KEY": "10000000/minute",
        "CORRIGENDA_RATE_LIMIT_PER_ADDRESS": "10000000/minute",
    }


def measure(
    name: str, ours: Callable, bare: Callable, url: str, keys: dict, args, per_request: int
) -> None:  # type: ignore[no-untyped-def,type-arg]
    with gunicorn("webapp:create_app()", app_env(url)) as port:
        mine = loadgen.run(
            HOST, port, ours(port, keys), connections=args.connections, seconds=args.seconds
        )
    bare_env = {"BARE_DATABASE_URL": url, "BARE_PROJECT_ID": str(keys["project_id"])}
    with gunicorn("bench.bare_app:app", bare_env) as port:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--only", choices=["pg", "sqlite"])
    args = parser.parse_args()
    print(f"cpus={os.cpu_count()} connections={args.connections} seconds={args.seconds}\n")
    if args.only != "sqlite":
        with throwaway_postgres_database() as url:
            keys = prepare(url)
            measure("pg single feedback", single_ours, single_bare, url, keys, args, 1)
            measure("pg batch feedback (500)", batch_ours, batch_bare, url, keys, args, 500)
    if args.only != "pg":
        url = f"sqlite:///{tempfile.mkdtemp(prefix='corrigenda-bench-')}/bench.db"
        keys = prepare(url)
        measure("sqlite single feedback", single_ours, single_bare, url, keys, args, 1)


if __name__ == "__main__":
    main()
