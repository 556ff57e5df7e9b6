"""Bulk statements that work on both databases, and the per-project processing lock."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import NullType
from sqlmodel import Session

T = TypeVar("T")

# Bound parameters per statement stay well under SQLite's and PostgreSQL's limits.
CHUNK = 5000
# The first key of PostgreSQL's two-key advisory locks taken by processing ("corr").
PROCESSING_LOCK_CLASS = 0x636F7272 & 0x7FFFFFFF


def dialect(session: Session) -> str:
    bind = session.get_bind()
    return bind.dialect.name


def insert_ignore(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """``INSERT … ON CONFLICT DO NOTHING`` for many rows in few round trips."""
    if not rows:
        return
    insert = postgresql.insert if dialect(session) == "postgresql" else sqlite.insert
    # executemany: SQLAlchemy batches it ("insertmanyvalues") with one cached compilation,
    # where a literal multi-row VALUES would be compiled afresh for every batch.
    session.execute(insert(table).on_conflict_do_nothing(), list(rows))


def chunks(items: Sequence[T] | Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def lock_project(session: Session, project_id: int) -> None:
    """Serialise processing of one project across workers until this transaction ends.

    On PostgreSQL a transaction-level advisory lock; SQLite already serialises writers
    (every transaction begins IMMEDIATE).
    """
    if dialect(session) == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:cls, :key)"),
            {"cls": PROCESSING_LOCK_CLASS, "key": int(project_id) & 0x7FFFFFFF},
        )


def insert_arrays(
    session: Session,
    table: str,
    columns: dict[str, tuple[str, Sequence[Any]]],
    *,
    returning: str | None = None,
) -> list[Any]:
    """PostgreSQL only: insert many rows in ONE statement from column arrays (``unnest``),
    skipping conflicts. ``columns`` maps a column to its SQL type and values — a sequence,
    or an array literal string (see ``array_literal``), much cheaper to send."""
    names = ", ".join(columns)
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, (kind, _) in columns.items())
    sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) ON CONFLICT DO NOTHING"
    if returning:
        sql += f" RETURNING {returning}"
    params = {
        name: values if isinstance(values, str) else list(values)
        for name, (_, values) in columns.items()
    }
    result = session.execute(text(sql), params)
    return list(result) if returning else []


def array_literal(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal of numbers or plain tokens (no quoting needed)."""
    return "{" + ",".join(map(str, values)) + "}"


def bytea_array_literal(values: Iterable[bytes]) -> str:
    """A PostgreSQL ``bytea[]`` literal in hex form."""
    return "{" + ",".join(f'"\\\\x{value.hex()}"' for value in values) + "}"


def among(session: Session, column: Any, values: Sequence[Any], kind: str = "bigint") -> Any:
    """``column IN values``. On PostgreSQL ONE array parameter, unnested in a subquery: the
    statement text stays the same for any number of values (parsed and planned once per
    connection), and the planner can hash or index-join it. (``= ANY(parameter)`` looks
    cheaper but is a linear search per row whenever the planner picks a sequential scan.)"""
    if dialect(session) != "postgresql":
        return column.in_(list(values))
    element = sa.BigInteger() if kind == "bigint" else sa.String()
    # Untyped parameter: the server reads it straight as the array type when binding,
    # instead of casting text to an array at run time (once per row in a nested loop).
    literal = sa.bindparam(None, typed_array_literal(values, kind), type_=NullType())
    return column.in_(sa.select(sa.func.unnest(sa.cast(literal, ARRAY(element)))))


def fetch_rows(session: Session, statement: Any) -> list[Any]:
    """``session.execute(statement).all()`` for the big reads of the hot path.

    On PostgreSQL the statement runs on the driver's cursor: psycopg already returns
    aware datetimes and decoded JSON, and building SQLAlchemy rows (with their result
    processors) cost as much as fetching. Only for statements whose bound values need no
    bind processing (ids, arrays, plain strings).
    """
    if dialect(session) != "postgresql":
        return list(session.execute(statement).all())
    compiled = statement.compile(dialect=session.get_bind().dialect)
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(str(compiled), compiled.params)
        return cursor.fetchall()


def fetch_driver_rows(session: Session, statement: Any) -> list[Any]:
    """Rows straight from the driver's cursor on either database: ``fetch_rows`` for reads
    of plain values that also skips SQLAlchemy's row building on SQLite (about two thirds
    of reading a large cluster's opinions there). SQLite gives JSON columns as text."""
    if dialect(session) == "postgresql":
        return fetch_rows(session, statement)
    bind = session.get_bind()
    compiled = statement.compile(dialect=bind.dialect, compile_kwargs={"render_postcompile": True})
    params = [compiled.params[name] for name in compiled.positiontup or ()]
    raw = session.connection().connection.driver_connection
    cursor = raw.cursor()  # type: ignore[union-attr]
    try:  # sqlite3 cursors are no context managers
        cursor.execute(str(compiled), params)
        return cursor.fetchall()
    finally:
        cursor.close()


# A statement nobody reads a result of, in the driver's parameter style (PostgreSQL only):
# executed at once (``execute_write``) or sent while Python works (``writes_sent_meanwhile``).
Write = tuple[str, dict[str, Any]]


def upsert_arrays_write(
    table: str,
    columns: dict[str, tuple[str, Sequence[Any]]],
    *,
    conflict: str,
    assignments: str,
) -> Write:
    """PostgreSQL only: ``INSERT … SELECT FROM unnest(arrays) ON CONFLICT (conflict) DO
    UPDATE SET assignments`` — many rows, one statement — to execute or send later."""
    return _upsert_sql(table, columns, conflict, assignments, "%({})s"), _literals(columns)


def _upsert_sql(
    table: str,
    columns: dict[str, tuple[str, Sequence[Any]]],
    conflict: str,
    assignments: str,
    placeholder: str,
) -> str:
    names = ", ".join(columns)
    arrays = ", ".join(
        f"CAST({placeholder.format(name)} AS {kind}[])" for name, (kind, _) in columns.items()
    )
    return (
        f"INSERT INTO {table} AS t ({names}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({conflict}) DO UPDATE SET {assignments}"
    )


def execute_write(session: Session, write: Write) -> None:
    """PostgreSQL only: run ``write`` on the driver's cursor, in the session's transaction."""
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(*write)


@contextmanager
def writes_sent_meanwhile(session: Session, writes: Sequence[Write]) -> Iterator[None]:
    """PostgreSQL only: send ``writes`` in pipeline mode, run the block while the server
    executes them, and wait for them at its end (an error in one is raised there).

    The worker's Python and its PostgreSQL backend run on different cores: writes whose
    effects nothing reads before the block ends cost no wall time while they overlap its
    Python work. The block must not use the database.
    """
    if not writes:
        yield
        return
    raw = session.connection().connection.driver_connection
    cursor = raw.cursor()  # type: ignore[union-attr]
    try:
        with raw.pipeline():  # type: ignore[union-attr]
            for sql, params in writes:
                cursor.execute(sql, params)
            yield
    finally:
        cursor.close()


def update_arrays(
    session: Session, table: str, key: str, columns: dict[str, tuple[str, Sequence[Any]]]
) -> None:
    """PostgreSQL only: ``UPDATE … FROM unnest(arrays)`` matching ``key`` (the first
    column of ``columns``) — many rows updated with different values in one statement."""
    session.execute(text(_update_sql(table, key, columns, ":{}")), _literals(columns))


def update_arrays_write(
    table: str, key: str, columns: dict[str, tuple[str, Sequence[Any]]]
) -> Write:
    """The statement ``update_arrays`` executes, to send later."""
    return _update_sql(table, key, columns, "%({})s"), _literals(columns)


def _update_sql(
    table: str, key: str, columns: dict[str, tuple[str, Sequence[Any]]], placeholder: str
) -> str:
    names = ", ".join(columns)
    arrays = ", ".join(
        f"CAST({placeholder.format(name)} AS {kind}[])" for name, (kind, _) in columns.items()
    )
    sets = ", ".join(f"{name} = v.{name}" for name in columns if name != key)
    return (
        f"UPDATE {table} AS t SET {sets} FROM unnest({arrays}) AS v({names}) "
        f"WHERE t.{key} = v.{key}"
    )


_NUMERIC = ("bigint", "integer", "float8", "boolean")


def typed_array_literal(values: Iterable[Any], kind: str) -> str:
    """A PostgreSQL array literal of ``kind`` (numbers, booleans, text, JSON text,
    timestamps; None is NULL). Sent as one text parameter and cast by the server: far
    cheaper than the driver adapting a Python list element by element."""
    if kind in _NUMERIC:
        return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"
    if kind == "timestamptz":
        # A batch stamps most rows with the same moment: format each distinct one once.
        seen: dict[Any, str] = {None: "NULL"}
        parts = []
        for v in values:
            text = seen.get(v)
            if text is None:
                text = seen[v] = f'"{v.isoformat()}"'
            parts.append(text)
        return "{" + ",".join(parts) + "}"
    return "{" + ",".join("NULL" if v is None else _quoted(v) for v in values) + "}"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literals(columns: dict[str, tuple[str, Sequence[Any]]]) -> dict[str, str]:
    return {name: typed_array_literal(values, kind) for name, (kind, values) in columns.items()}


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"


def copy_bigints(session: Session, table: str, columns: dict[str, Any]) -> None:
    """PostgreSQL only: ``COPY`` rows of bigint columns (equal-length numpy arrays) in the
    binary format, built by numpy without a Python loop. For rows that cannot conflict
    (e.g. the LSH bands of clusters just created): no per-row conflict check."""
    import numpy as np

    names = list(columns)
    count = len(next(iter(columns.values())))
    if count == 0:
        return
    fields = [("n", ">i2")]
    for i in range(len(names)):
        fields += [(f"l{i}", ">i4"), (f"v{i}", ">i8")]
    rows = np.empty(count, dtype=np.dtype(fields))
    rows["n"] = len(names)
    for i, name in enumerate(names):
        rows[f"l{i}"] = 8
        rows[f"v{i}"] = np.asarray(columns[name], dtype=np.int64)
    payload = _COPY_HEADER + rows.tobytes() + b"\xff\xff"
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cursor:  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(payload)
