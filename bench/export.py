"""Export benchmark: N examples from PostgreSQL as JSONL and as Parquet (zstd).

Measures, each in a fresh child process (so peak memory is its own): the full dataset-version
build (snapshot read, split, serialise, write, sha256) in rows/s and peak RSS, against the
baseline ``COPY (SELECT <the same columns> ...) TO STDOUT`` of the same rows, read to the
end by psycopg in the same run. Loopback only; a throw-away database is created and dropped.

    python bench/export.py                 # 1,000,000 rows
    python bench/export.py --rows 200000   # a bounded run on a loaded machine
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get(
    "CORRIGENDA_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

LOAD_SQL = """
INSERT INTO prediction (project_id, client_id, model_version, input, output, confidence,
                        segment, content_hash, cluster_id, created_at)
SELECT 1, 'p-' || i, 'v' || (i %% 3),
       jsonb_build_object('text', 'Customer message number ' || i || ': my invoice for '
                          || (ARRAY['March','April','May'])[1 + i %% 3]
                          || ' looks wrong, "please" check'),
       to_jsonb((ARRAY['billing','bug','feature','other'])[1 + (i + 1) %% 4]),
       (i %% 100) / 100.0,
       jsonb_build_object('locale', (ARRAY['en','de','fr'])[1 + i %% 3], 'plan', 'pro'),
       md5(i::text), i / 3, now()
FROM generate_series(1, %(rows)s) AS i;
INSERT INTO example (project_id, prediction_id, input, target, model_output, source, weight,
                     agreement, cluster_id, provenance, is_gold, revision, seq, created_at,
                     updated_at)
SELECT 1, p.id, p.input, to_jsonb((ARRAY['billing','bug','feature','other'])[1 + p.id %% 4]),
       p.output, (ARRAY['reviewed','consensus','implicit'])[1 + p.id %% 3], 1.0,
       (p.id %% 5) / 4.0, p.cluster_id, jsonb_build_object('event_ids', jsonb_build_array(p.id)),
       false, 1, pg_current_xact_id()::text::bigint, now(), now()
FROM prediction p;
"""


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def setup(rows: int) -> str:
    name = f"corrigenda_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        load(url, rows)
    except BaseException:
        drop(url)
        raise
    return url


def load(url: str, rows: int) -> None:
    from corrigenda.db import make_engine, transaction
    from corrigenda.models import metadata
    from corrigenda.projects import create_project

    engine = make_engine(sqlalchemy_url(url))
    metadata.create_all(engine)
    with transaction(engine) as session:
        create_project(session, slug="bench", labels=["billing", "bug", "feature", "other"])
    engine.dispose()
    started = time.perf_counter()
    with psycopg.connect(url) as connection:
        for statement in filter(str.strip, LOAD_SQL.split(";")):
            connection.execute(statement, {"rows": rows})  # type: ignore[call-overload]
        connection.execute("ANALYZE")
    print(f"loaded {rows:,} examples in {time.perf_counter() - started:.1f}s", file=sys.stderr)


def drop(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_copy(url: str) -> dict:
    """The baseline: the build's own SELECT (same columns, same rows) through COPY."""
    from corrigenda.examples import stream_columns

    columns = stream_columns("postgresql")
    sql = (
        f"COPY (SELECT {columns} FROM example e LEFT JOIN prediction p ON p.id = e.prediction_id "
        "WHERE e.project_id = 1 AND e.deleted_at IS NULL ORDER BY e.id) TO STDOUT"
    )
    started = time.perf_counter()
    size = 0
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        with cursor.copy(sql) as copy:
            for chunk in copy:
                size += len(chunk)
    return {"seconds": time.perf_counter() - started, "bytes": size, "peak_rss_mib": peak_rss_mib()}


def child_copy_lines(url: str) -> dict:
    """Where the limit is: the fast path's own ``COPY`` of the JSONL lines (split, stats key
    and line built by PostgreSQL), read to the end without writing anything."""
    from corrigenda.datasets import pgcopy
    from corrigenda.datasets.build import FROM_EXAMPLES, HASH_MEM, _pyformat
    from corrigenda.datasets.filters import DatasetFilter
    from corrigenda.datasets.splits import Splitter

    splitter = Splitter(1, None)
    where = "e.project_id = 1 AND e.deleted_at IS NULL"
    source, params = pgcopy.from_where(FROM_EXAMPLES, where, {}, DatasetFilter(), splitter)
    sql, extra = pgcopy.jsonl_sql(source, splitter, True)
    started = time.perf_counter()
    size = 0
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(HASH_MEM)  # as the build runs it
        with cursor.copy(_pyformat(sql), {**params, **extra}) as copy:
            for chunk in copy:
                size += len(chunk)
    return {"seconds": time.perf_counter() - started, "bytes": size, "peak_rss_mib": peak_rss_mib()}


def child_build(url: str, fmt: str) -> dict:
    from corrigenda.datasets import DatasetFilter, LocalStorage, build_version, create_version
    from corrigenda.db import make_engine, transaction
    from corrigenda.models import Project

    engine = make_engine(sqlalchemy_url(url))
    with transaction(engine) as session:
        project = session.get(Project, 1)
        version = create_version(session, project=project, flt=DatasetFilter(), formats=[fmt])
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        outcome = build_version(engine, LocalStorage(Path(folder)), version.id)
        seconds = time.perf_counter() - started
        with transaction(engine) as session:
            from corrigenda.models import DatasetVersion

            built = session.get(DatasetVersion, version.id)
            manifest = built.manifest or {}
        size = sum(f["bytes"] for f in manifest.get("files", []))
    assert outcome is not None and outcome.status == "ready", built.error
    return {
        "seconds": seconds,
        "bytes": size,
        "rows": manifest["counts"]["total"],
        "peak_rss_mib": peak_rss_mib(),
    }


def run_child(*args: str) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(output.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--child", nargs="*")
    args = parser.parse_args()
    if args.child:
        kind, url = args.child[0], args.child[1]
        children = {"copy": child_copy, "copy-lines": child_copy_lines}
        child = children.get(kind)
        print(json.dumps(child(url) if child else child_build(url, kind)))
        return
    url = setup(args.rows)
    try:
        baseline = run_child("copy", url)
        lines = run_child("copy-lines", url)
        results = {fmt: run_child(fmt, url) for fmt in ("jsonl", "parquet")}
        baseline_again = run_child("copy", url)  # the machine is shared: bracket the runs
    finally:
        drop(url)
    copy_seconds = min(baseline["seconds"], baseline_again["seconds"])
    copy_rate = args.rows / copy_seconds
    print(f"rows: {args.rows:,}   cores: {os.cpu_count()}   load: {os.getloadavg()[0]:.1f}")
    print(
        f"COPY (SELECT …) TO STDOUT  {copy_rate:>10,.0f} rows/s  "
        f"{baseline['bytes'] / 2**20:7.1f} MiB  peak {baseline['peak_rss_mib']:.0f} MiB"
    )
    lines_rate = args.rows / lines["seconds"]
    print(
        f"{'COPY of the JSONL lines':<26} {lines_rate:>10,.0f} rows/s  "
        f"{lines['bytes'] / 2**20:7.1f} MiB  peak {lines['peak_rss_mib']:.0f} MiB  "
        f"ratio vs COPY {lines_rate / copy_rate:.2f}   (read only: the database's share)"
    )
    for fmt, result in results.items():
        rate = result["rows"] / result["seconds"]
        print(
            f"{fmt:<26} {rate:>10,.0f} rows/s  {result['bytes'] / 2**20:7.1f} MiB  "
            f"peak {result['peak_rss_mib']:.0f} MiB  ratio vs COPY {rate / copy_rate:.2f}"
        )


if __name__ == "__main__":
    main()
