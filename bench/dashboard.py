"""Dashboard benchmark on PostgreSQL: rollup throughput and dashboard server time.

    python bench/dashboard.py --predictions 1000000 --events-per-prediction 5

Loads synthetic predictions and events into a throw-away database (server-side
``generate_series``), builds the rollups (``rebuild_all``: facts + rollups from raw rows),
times an incremental round, then times the dashboard page for every filter combination
(in-process Flask client: server time, no network) against a direct aggregate query over the
raw events (same run, same database). Prints figures and ratios; drops the database.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from itertools import product
from pathlib import Path

import psycopg
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.* helpers

from corrigenda.db import make_engine, transaction  # noqa: E402
from corrigenda.metrics import drain, rebuild_all  # noqa: E402
from corrigenda.models import metadata  # noqa: E402
from tests.factories import PASSWORD, make_project, make_user  # noqa: E402
from tests.services import POSTGRES_ADMIN_URL  # noqa: E402

DAYS = 90
VERSIONS = ("v1", "v2", "v3")
LOCALES = ("de", "en", "fr", "es", "it")
PLANS = ("free", "pro", "team")

LOAD_PREDICTIONS = """
INSERT INTO prediction (project_id, client_id, model_version, input, output, confidence,
                        segment, created_at)
SELECT :project_id, 'p' || g,
       (ARRAY['v1','v2','v3'])[1 + g % 3],
       jsonb_build_object('text', 'ticket ' || g),
       to_jsonb((ARRAY['billing','bug','feature','other'])[1 + (g * 7) % 4]),
       ((g * 37) % 100) / 100.0,
       jsonb_build_object('locale', (ARRAY['de','en','fr','es','it'])[1 + (g / 3) % 5],
                          'plan', (ARRAY['free','pro','team'])[1 + (g / 15) % 3]),
       TIMESTAMPTZ '2025-01-01 00:00:00+00' + ((g % :days) || ' days')::interval
FROM generate_series(1, :n) AS g
"""
# Per prediction: one view, then opinions from several users; kinds cycle deterministically.
# Loaded as processed already: no pending_event rows.
LOAD_EVENTS = """
INSERT INTO feedback_event (event_id, project_id, prediction_id, kind, end_user, source,
                            client_time, received_at, time_to_decision_ms)
SELECT gen_random_uuid(), :project_id, p.id,
       CASE WHEN e = 0 THEN 'view'
            ELSE (ARRAY['accept','accept','accept','reject','correct','accept','accept'])
                 [1 + ((p.id * 13 + e * 5) % 7)] END,
       'u' || (e % 3), 'widget', p.created_at + (e || ' seconds')::interval, now(),
       CASE WHEN e = 0 THEN NULL ELSE 500 + (p.id * 31 + e) % 9000 END
FROM prediction p CROSS JOIN generate_series(0, :per - 1) AS e
WHERE p.project_id = :project_id
"""
LOAD_AUDIT = """
WITH audited AS (
  SELECT id, input, output FROM prediction WHERE project_id = :project_id AND id % 20 = 0
), items AS (
  INSERT INTO review_item (project_id, prediction_id, reason, priority, status,
                           required_reviews, needs_adjudication, created_at, updated_at)
  SELECT :project_id, id, 'audit', 0, 'done', 1, false, now(), now() FROM audited
)
INSERT INTO example (project_id, prediction_id, input, target, model_output, source, weight,
                     provenance, is_gold, revision, seq, created_at, updated_at)
SELECT :project_id, id, input,
       CASE WHEN id % 7 = 0 THEN to_jsonb('other'::text) ELSE output END,
       output, 'reviewed', 1, '{}'::jsonb, false, 1, id, now(), now()
FROM audited
"""
# The baseline: override rate per version and day straight from raw events, with the
# effective-opinion rule (latest per end user by client time), no rollups.
DIRECT_AGGREGATE = """
WITH latest AS (
  SELECT DISTINCT ON (e.prediction_id, e.end_user) e.prediction_id, e.kind
  FROM feedback_event e
  WHERE e.project_id = :project_id AND e.kind IN ('accept','reject','correct')
  ORDER BY e.prediction_id, e.end_user, e.client_time DESC, e.received_at DESC, e.id DESC
), per_prediction AS (
  SELECT prediction_id, bool_or(kind IN ('reject','correct')) AS overridden
  FROM latest GROUP BY prediction_id
)
SELECT p.model_version, p.created_at::date AS day, count(*) AS shown,
       count(*) FILTER (WHERE pp.overridden) AS overridden
FROM prediction p LEFT JOIN per_prediction pp ON pp.prediction_id = p.id
WHERE p.project_id = :project_id
  AND EXISTS (SELECT 1 FROM feedback_event v WHERE v.prediction_id = p.id)
GROUP BY 1, 2
"""


def timed(label: str, fn):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    print(f"{label}: {seconds:.2f} s")
    return result, seconds


def load(engine, n: int, per: int) -> int:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        project = make_project(session, "bench")
        make_user(session, project, role="viewer", email="pm@example.com")
        project_id = project.id
    params = {"project_id": project_id, "n": n, "days": DAYS, "per": per}
    with engine.begin() as connection:
        timed(f"load {n:,} predictions", lambda: connection.execute(text(LOAD_PREDICTIONS), params))
    with engine.begin() as connection:
        timed(f"load {n * per:,} events", lambda: bulk_load(connection, LOAD_EVENTS, params))
    with engine.begin() as connection:
        timed("load audit sample (5 %)", lambda: connection.execute(text(LOAD_AUDIT), params))
        connection.execute(text("ANALYZE"))
    return project_id  # type: ignore[return-value]


def bulk_load(connection, sql: str, params: dict) -> None:  # type: ignore[no-untyped-def]
    """Load events fast, as a restore would: the table's secondary indexes are dropped and
    rebuilt afterwards (sorted builds instead of millions of random inserts), and foreign-key
    triggers are skipped (rows reference predictions just loaded). Same final schema."""
    defs = connection.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'feedback_event' "
            "AND indexname <> 'feedback_event_pkey'"
        )
    ).all()
    constraints = {"feedback_event_event_id_key": "UNIQUE (event_id)"}
    for name, _ in defs:
        if name in constraints:
            connection.execute(text(f"ALTER TABLE feedback_event DROP CONSTRAINT {name}"))
        else:
            connection.execute(text(f"DROP INDEX {name}"))
    connection.execute(text("SET LOCAL session_replication_role = replica"))
    connection.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
    connection.execute(text(sql), params)
    for name, definition in defs:
        if name in constraints:
            connection.execute(
                text(f"ALTER TABLE feedback_event ADD CONSTRAINT {name} {constraints[name]}")
            )
        else:
            connection.execute(text(definition))


def filter_combinations() -> list[str]:
    ranges = ["", "from=2025-02-01&to=2025-02-28", "from=2025-03-20"]
    versions = ["", "model_version=v2"]
    segments = ["", "segment=locale:de", "segment=plan:pro"]
    grains = ["", "granularity=week"]
    return [
        "&".join(p for p in combo if p) for combo in product(ranges, versions, segments, grains)
    ]


def dashboard_times(url: str, tmp: Path) -> list[float]:
    from tests.conftest import make_test_settings
    from webapp import create_app

    app = create_app(make_test_settings(url, tmp))
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    client.post(
        "/login", data={"email": "pm@example.com", "password": PASSWORD, "csrf_token": token}
    )
    client.get("/dashboard/bench")  # warm-up
    times = []
    for _ in range(2):
        for query in filter_combinations():
            started = time.perf_counter()
            response = client.get(f"/dashboard/bench?{query}")
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.status_code
    app.extensions["corrigenda.engine"].dispose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--events-per-prediction", type=int, default=5)
    args = parser.parse_args()
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    name = f"corrigenda_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    try:
        metadata.create_all(engine)
        project_id = load(engine, args.predictions, args.events_per_prediction)
        events = args.predictions * args.events_per_prediction

        def rebuild() -> int:
            with transaction(engine) as session:
                return rebuild_all(session)

        _, rebuild_s = timed("rollup rebuild (facts + rollups from raw rows)", rebuild)
        print(
            f"  throughput: {args.predictions / rebuild_s:,.0f} predictions/s, "
            f"{events / rebuild_s:,.0f} events/s"
        )
        with engine.begin() as connection:  # 10,000 new events, then one incremental catch-up
            connection.execute(
                text(
                    LOAD_EVENTS.replace(
                        "FROM prediction p",
                        "FROM (SELECT * FROM prediction ORDER BY id DESC LIMIT 5000) p",
                    )
                ),
                {"project_id": project_id, "per": 2},
            )
        result, inc_s = timed(
            "incremental rounds for 10,000 new events", lambda: drain(lambda: transaction(engine))
        )
        print(f"  {result.predictions:,} predictions recomputed, {10_000 / inc_s:,.0f} events/s")

        with engine.connect() as connection:
            _, direct_s = timed(
                "direct aggregate over raw events (override rate per version/day)",
                lambda: connection.execute(
                    text(DIRECT_AGGREGATE), {"project_id": project_id}
                ).all(),
            )
        with tempfile.TemporaryDirectory() as tmp:
            times = dashboard_times(url, Path(tmp))
        times.sort()
        p50, p95 = statistics.median(times), times[int(len(times) * 0.95) - 1]
        print(
            f"dashboard page, {len(times)} requests over {len(filter_combinations())} filter "
            f"combinations: p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {times[-1]:.0f} ms"
        )
        print(f"direct aggregate ÷ dashboard p95: {direct_s * 1000 / p95:,.1f}×")
        print(f"full rollup rebuild ÷ one direct aggregate: {rebuild_s / direct_s:,.1f}×")
        print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    finally:
        engine.dispose()
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
