"""Bulk statements that work on both databases, and the per-project processing lock."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
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
    """``column IN values``. On PostgreSQL ONE array parameter (``= ANY``): the statement
    text stays the same for any number of values, so it is parsed and planned once per
    connection instead of once per distinct list length."""
    if dialect(session) != "postgresql":
        return column.in_(list(values))
    element = sa.BigInteger() if kind == "bigint" else sa.String()
    array = sa.bindparam(None, list(values), type_=ARRAY(element))
    return column == sa.any_(array)


def upsert_arrays(
    session: Session,
    table: str,
    columns: dict[str, tuple[str, Sequence[Any]]],
    *,
    conflict: str,
    assignments: str,
) -> None:
    """PostgreSQL only: ``INSERT … SELECT FROM unnest(arrays) ON CONFLICT (conflict) DO
    UPDATE SET assignments`` — many rows, one statement, one round trip."""
    names = ", ".join(columns)
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, (kind, _) in columns.items())
    sql = (
        f"INSERT INTO {table} AS t ({names}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({conflict}) DO UPDATE SET {assignments}"
    )
    session.execute(text(sql), {name: list(values) for name, (_, values) in columns.items()})


def update_arrays(
    session: Session, table: str, key: str, columns: dict[str, tuple[str, Sequence[Any]]]
) -> None:
    """PostgreSQL only: ``UPDATE … FROM unnest(arrays)`` matching ``key`` (the first
    column of ``columns``) — many rows updated with different values in one statement."""
    names = ", ".join(columns)
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, (kind, _) in columns.items())
    sets = ", ".join(f"{name} = v.{name}" for name in columns if name != key)
    sql = (
        f"UPDATE {table} AS t SET {sets} FROM unnest({arrays}) AS v({names}) "
        f"WHERE t.{key} = v.{key}"
    )
    session.execute(text(sql), {name: list(values) for name, (_, values) in columns.items()})
