"""Where the ingestion endpoints write: the fewest round trips that keep every guarantee.

- PostgreSQL: a Core connection in autocommit, without pre-ping, kept by each request
  thread (a pool checkout and check-in cost ~7 % of a single-event request's Python). A
  feedback write is ONE statement (``INSERT … ON CONFLICT DO NOTHING RETURNING``), which is
  its own transaction, so BEGIN/COMMIT and the pre-ping ``SELECT 1`` would be three extra
  round trips per request. A connection that died (database restart) fails on use; the
  write is then retried once on a fresh connection.
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
from sqlalchemy.pool import NullPool

from corrigenda.db import is_sqlite, make_engine, sqlite_write_lock
from corrigenda.ingest import PredictionIdCache

from ..extensions import get_engine

T = TypeVar("T")


class IngestWriter:
    """Per-app: the autocommit engine (PostgreSQL) or the write lock (SQLite), and the
    prediction-id cache of the app's database."""

    def __init__(self, engine: Engine) -> None:
        self.sqlite = is_sqlite(engine)
        # SQLite: the engine's write lock, shared with the embedded worker's batches.
        self.lock = sqlite_write_lock(engine) if self.sqlite else threading.Lock()
        self.prediction_ids = PredictionIdCache()
        self._connection: Connection | None = None
        self._local = threading.local()  # PostgreSQL: each thread's connection
        self._opened: list[Connection] = []  # every thread's, to close on dispose
        if self.sqlite:
            self.engine = engine
            event.listen(engine, "engine_disposed", lambda _engine: self._close())
        else:
            url = engine.url.render_as_string(hide_password=False)
            # Each request thread keeps its own connection, so a pool would only cap the
            # number of threads (a thread past pool_size + overflow would wait 30 s).
            own = make_engine(
                url, pool_pre_ping=False, isolation_level="AUTOCOMMIT", poolclass=NullPool
            )
            self.engine = own
            # Close our connections whenever the app's engine is disposed (tests, forks).
            event.listen(engine, "engine_disposed", lambda _engine: self._close())

    def run(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)``: autocommit statements (PostgreSQL) or one transaction (SQLite)."""
        if self.sqlite:
            with self.lock:
                connection = self._sqlite_connection()
                with connection.begin():
                    return work(connection)
        try:
            return self._run_postgresql(work)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        return self._run_postgresql(work)  # the old connection was dead and is invalidated

    def _run_postgresql(self, work: Callable[[Connection], T]) -> T:
        connection = self._thread_connection()
        try:
            return work(connection)
        finally:
            # A query through SQLAlchemy autobegins its bookkeeping transaction; in
            # autocommit every statement already committed, so this ends it without a
            # round trip (and resets an invalidated connection for its replacement).
            if connection.in_transaction():
                connection.rollback()

    def _thread_connection(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.invalidated:
            if connection is not None:
                self._forget(connection)
            connection = self.engine.connect()
            with self.lock:
                self._opened.append(connection)
            self._local.connection = connection
        return connection

    def _forget(self, connection: Connection) -> None:
        with self.lock:
            if connection in self._opened:
                self._opened.remove(connection)
        connection.close()

    def _close(self) -> None:
        with self.lock:
            opened, self._opened = self._opened, []
            if self._connection is not None:
                self._connection.close()
                self._connection = None
        for connection in opened:
            connection.close()  # idle: no thread is inside run() while the app is disposed
        if not self.sqlite:
            self.engine.dispose()

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
