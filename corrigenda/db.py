"""Database engines and sessions. Nothing is bound at import time."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, create_engine


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    url = normalize_url(url)
    if is_sqlite(url):
        kwargs.setdefault("json_deserializer", json_loads)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        event.listen(engine, "connect", _configure_sqlite)
        # pysqlite's own BEGIN handling breaks SAVEPOINT and locking; we issue BEGIN ourselves.
        event.listen(engine, "begin", _begin_immediate)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
    return create_engine(url, **kwargs)


def json_loads(text: str) -> Any:
    """Decode a JSON column (SQLite). Processing reads tens of thousands of them per second
    and orjson is several times faster than ``json.loads``; the standard library still
    reads what only it writes (``NaN``, ``Infinity``)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _configure_sqlite(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _begin_immediate(conn) -> None:  # type: ignore[no-untyped-def]
    # IMMEDIATE takes the write lock up front, so two writers queue instead of deadlocking.
    # Straight on the driver: SQLAlchemy's execution context for it was ~15 % of a
    # single-event ingest request's Python. A failure (locked past the busy timeout) is
    # raised as SQLAlchemy's own error type, as from exec_driver_sql.
    try:
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise DBAPIError.instance("BEGIN IMMEDIATE", (), exc, sqlite3.Error) from exc


_write_locks: WeakKeyDictionary[Engine, threading.Lock] = WeakKeyDictionary()
_write_locks_guard = threading.Lock()


def sqlite_write_lock(engine: Engine) -> threading.Lock:
    """The in-process lock that serialises an SQLite engine's hot writers (ingest requests,
    the embedded worker's batches): waiters queue on a mutex and get the database as soon as
    it is released, instead of sleeping in SQLite's busy handler (up to 100 ms per retry)."""
    with _write_locks_guard:
        lock = _write_locks.get(engine)
        if lock is None:
            lock = _write_locks[engine] = threading.Lock()
        return lock


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """``with transaction(engine) as session:`` commits on success, rolls back on error."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session
