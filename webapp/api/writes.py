"""Where the ingestion endpoints write: the fewest round trips that keep every guarantee.

- PostgreSQL: a Core connection in autocommit from a pool without pre-ping. A feedback
  write is ONE statement (``INSERT … ON CONFLICT DO NOTHING RETURNING``), which is its own
  transaction, so BEGIN/COMMIT and the pre-ping ``SELECT 1`` would be three extra round
  trips per request. A connection that died in the pool (database restart) fails on
  use; the write is then retried once on a fresh connection.
- SQLite: writes are serialised by a lock in the process, so request threads queue on a
  mutex instead of sleeping in SQLite's busy handler; they share one connection (no pool
  checkout) and each write is one short ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from corrigenda.db import is_sqlite, make_engine
from corrigenda.ingest import PredictionIdCache

from ..extensions import get_engine

T = TypeVar("T")


class IngestWriter:
    """Per-app: the autocommit engine (PostgreSQL) or the write lock (SQLite), and the
    prediction-id cache of the app's database."""

    def __init__(self, engine: Engine) -> None:
        self.sqlite = is_sqlite(engine)
        self.lock = threading.Lock()
        self.prediction_ids = PredictionIdCache()
        self._connection: Connection | None = None
        if self.sqlite:
            self.engine = engine
            event.listen(engine, "engine_disposed", lambda _engine: self._close())
        else:
            url = engine.url.render_as_string(hide_password=False)
            own = make_engine(url, pool_pre_ping=False, isolation_level="AUTOCOMMIT")
            self.engine = own
            # Close our connections whenever the app's engine is disposed (tests, forks).
            event.listen(engine, "engine_disposed", lambda _engine: own.dispose())

    def run(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)``: autocommit statements (PostgreSQL) or one transaction (SQLite)."""
        if self.sqlite:
            with self.lock:
                connection = self._sqlite_connection()
                with connection.begin():
                    return work(connection)
        try:
            with self.engine.connect() as connection:
                return work(connection)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        with self.engine.connect() as connection:  # the pooled connection was dead
            return work(connection)

    def _close(self) -> None:
        with self.lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _sqlite_connection(self) -> Connection:
        # Writes are serialised, so one connection serves them all (no pool checkout).
        if self._connection is None or self._connection.closed:
            self._connection = self.engine.connect()
        return self._connection


def init_writer(app: Flask) -> None:
    with app.app_context():
        app.extensions["corrigenda.ingest_writer"] = IngestWriter(get_engine())


def writer() -> IngestWriter:
    found = current_app.extensions.get("corrigenda.ingest_writer")
    if found is None:
        init_writer(current_app)  # type: ignore[arg-type]
        found = current_app.extensions["corrigenda.ingest_writer"]
    return found
