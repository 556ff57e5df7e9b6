"""The baseline: a bare Flask endpoint that parses the body and inserts the same rows
straight into ``feedback_event`` (psycopg or sqlite3, no ORM, no key, token, origin,
rate-limit or outbox checks), with the best plain recipe for each database:

- PostgreSQL, one event: one ``INSERT … ON CONFLICT DO NOTHING RETURNING`` in autocommit
  (the same statement and columns as Corrigenda's).
- PostgreSQL, a batch: ``COPY`` into a temporary staging table, then
  ``INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING`` (one transaction).
- SQLite: WAL, ``BEGIN IMMEDIATE`` + insert + ``COMMIT``, writes serialised by a lock.

Serve with gunicorn or waitress: ``BARE_DATABASE_URL=... gunicorn 'bench.bare_app:app'``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Flask, Response, request

URL = os.environ["BARE_DATABASE_URL"]
SQLITE = URL.startswith("sqlite")
PROJECT_ID = int(os.environ.get("BARE_PROJECT_ID", "1"))
COLUMNS = (
    "event_id, project_id, prediction_id, kind, value, comment, end_user, session_id, source,"
    " origin, client_time, received_at, time_to_decision_ms"
)
INSERT = (
    f"INSERT INTO feedback_event ({COLUMNS}) VALUES ({{p}}, {{p}}, {{p}}, {{p}}, {{p}}, {{p}},"
    " {p}, {p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT (event_id) DO NOTHING RETURNING event_id, id"
)
STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS stage (event_id uuid, project_id bigint, prediction_id"
    " bigint, kind text, value jsonb, comment text, end_user text, session_id text, source text,"
    " origin text, client_time timestamptz, received_at timestamptz, time_to_decision_ms int)"
    " ON COMMIT DELETE ROWS"
)
FROM_STAGE = (
    f"INSERT INTO feedback_event ({COLUMNS}) SELECT {COLUMNS} FROM stage"
    " ON CONFLICT (event_id) DO NOTHING RETURNING event_id, id"
)
app = Flask(__name__)
_local = threading.local()
_lock = threading.Lock()


def _connection() -> Any:
    conn = getattr(_local, "conn", None)
    if conn is None:
        if SQLITE:
            conn = sqlite3.connect(URL.split("///", 1)[1], timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        else:
            import psycopg

            conn = psycopg.connect(URL.replace("postgresql+psycopg", "postgresql"), autocommit=True)
            conn.execute(STAGE)
        _local.conn = conn
    return conn


def _row(event: dict[str, Any], now: datetime) -> tuple[Any, ...]:
    event_id = uuid.UUID(event["id"])
    value = orjson.dumps(event["value"]).decode() if event.get("value") is not None else None
    return (
        event_id.hex if SQLITE else event_id, PROJECT_ID, int(event["prediction_id"]),
        event["kind"], value, None, None, None, "api", None, None, now, None,
    )  # fmt: skip


@app.post("/bare")
def bare() -> Response:
    data = orjson.loads(request.get_data())
    events = data["events"] if "events" in data else [data]
    now = datetime.now(UTC)
    rows = [_row(e, now) for e in events]
    conn = _connection()
    if SQLITE:
        with _lock:
            conn.execute("BEGIN IMMEDIATE")
            inserted = [conn.execute(INSERT.format(p="?"), row).fetchall() for row in rows]
            conn.execute("COMMIT")
    elif len(rows) == 1:
        inserted = conn.execute(INSERT.format(p="%s"), rows[0]).fetchall()
    else:
        with conn.transaction(), conn.cursor() as cursor:
            with cursor.copy(f"COPY stage ({COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            inserted = cursor.execute(FROM_STAGE).fetchall()
    return Response(orjson.dumps({"inserted": len(inserted)}), 202, mimetype="application/json")
