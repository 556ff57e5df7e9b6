"""The baseline: a bare Flask endpoint that validates minimally and inserts the same rows
straight into ``feedback_event`` with one ``INSERT … ON CONFLICT DO NOTHING`` (psycopg or
sqlite3, no ORM, no key, token, origin, rate-limit or outbox checks).

Serve with gunicorn: ``BARE_DATABASE_URL=... gunicorn 'bench.bare_app:app'``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from datetime import UTC, datetime

import orjson
from flask import Flask, Response, request

URL = os.environ["BARE_DATABASE_URL"]
PROJECT_ID = int(os.environ.get("BARE_PROJECT_ID", "1"))
SQL = (
    "INSERT INTO feedback_event (event_id, project_id, prediction_id, kind, value, source,"
    " received_at) VALUES ({p}, {p}, {p}, {p}, {p}, 'api', {p}) ON CONFLICT (event_id) DO NOTHING"
)
app = Flask(__name__)
_local = threading.local()


def _connection():  # type: ignore[no-untyped-def]
    conn = getattr(_local, "conn", None)
    if conn is None:
        if URL.startswith("sqlite"):
            conn = sqlite3.connect(URL.split("///", 1)[1], timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        else:
            import psycopg

            conn = psycopg.connect(URL.replace("postgresql+psycopg", "postgresql"))
        _local.conn = conn
    return conn


def _row(event: dict) -> tuple:  # type: ignore[type-arg]
    event_id = uuid.UUID(event["id"])
    value = orjson.dumps(event.get("value")).decode()
    now = datetime.now(UTC)
    if URL.startswith("sqlite"):
        return (event_id.hex, PROJECT_ID, int(event["prediction_id"]), event["kind"], value, now)
    return (event_id, PROJECT_ID, int(event["prediction_id"]), event["kind"], value, now)


@app.post("/bare")
def bare() -> Response:
    data = orjson.loads(request.get_data())
    events = data["events"] if "events" in data else [data]
    rows = [_row(e) for e in events]
    conn = _connection()
    if URL.startswith("sqlite"):
        with _lock:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(SQL.format(p="?"), rows)
            conn.execute("COMMIT")
    else:
        with conn.cursor() as cursor:
            cursor.executemany(SQL.format(p="%s"), rows)
        conn.commit()
    return Response(b'{"ok":true}', status=202, mimetype="application/json")


_lock = threading.Lock()
