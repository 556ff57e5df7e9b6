"""Writing labeled examples, and the incremental stream of them by cursor.

Every change to an example (new, revised, deleted) moves it to a new *position*
``(seq, id)``; the stream serves examples in position order after a cursor.

Why positions are commit-safe
-----------------------------
A stream page must never skip a row that commits later with a smaller position than one
already served. ``max(seq) + 1`` (or a plain sequence) breaks on PostgreSQL: two writers
take 7 and 8, 8 commits first, a reader serves 8 and moves its cursor past 7 forever.

* **PostgreSQL**: ``seq`` is the writing transaction's id (``pg_current_xact_id()``, a
  64-bit xid8 that never wraps). A reader serves only rows with ``seq`` below a horizon:
  the oldest transaction of this database still running when the reading statement's
  snapshot was taken (``PG_HORIZON``). Every transaction below that horizon has finished,
  so the set of rows below it can no longer change except by a *new* write, which gets a
  new, larger transaction id. Writers take no extra lock; a long-running writing
  transaction in this database only delays the stream (never loses rows).
* **SQLite**: writers are serialized (``BEGIN IMMEDIATE``), so ``max(seq) + 1`` taken
  inside the write transaction grows in commit order and needs no horizon.

Rows written in the same transaction share ``seq`` and are ordered by ``id``. Deletions
keep the row as a tombstone (``deleted_at``) with a new position, so a consumer learns them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import BigInteger, Text, cast, func, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlmodel import Session, col, select

from .bulk import typed_array_literal
from .db import is_sqlite
from .models import Example, Prediction, utcnow


@dataclass(frozen=True, order=True)
class Cursor:
    """A stream position: everything at or before ``(seq, id)`` has been served."""

    seq: int = 0
    id: int = 0

    def __str__(self) -> str:
        return f"{self.seq}-{self.id}"

    @classmethod
    def parse(cls, value: str | None) -> Cursor:
        """Parse ``"<seq>-<id>"``; empty or ``"0"`` is the start. Raises ValueError."""
        if value is None or value.strip() in ("", "0"):
            return cls()
        seq, _, ident = value.strip().partition("-")
        cursor = cls(int(seq), int(ident or 0))
        if cursor.seq < 0 or cursor.id < 0:
            raise ValueError("cursor parts must not be negative")
        return cursor


def position_expression(session: Session, project_id: int) -> Any:
    """The SQL value of ``seq`` for a row this transaction writes (see module docstring)."""
    if is_sqlite(session.get_bind()):
        current = session.exec(
            select(func.max(Example.seq)).where(Example.project_id == project_id)
        ).one()
        return (current or 0) + 1
    return cast(cast(func.pg_current_xact_id(), Text), BigInteger)


def next_seq(session: Session, project_id: int) -> Any:
    """Kept for callers of the skeleton: the position for a row written now."""
    return position_expression(session, project_id)


def upsert_example(
    session: Session,
    *,
    prediction: Prediction,
    target: Any,
    source: str,
    provenance: dict[str, Any],
    agreement: float | None = None,
) -> Example:
    """Write (or revise) the example for ``prediction``; a change bumps revision and position.

    Writing the same values again is a no-op, so re-running a task does not make consumers
    see a spurious new revision.
    """
    example = session.exec(
        select(Example).where(
            Example.project_id == prediction.project_id, Example.prediction_id == prediction.id
        )
    ).first()
    if example is None:
        example = Example(project_id=prediction.project_id, prediction_id=prediction.id, revision=0)
    elif _unchanged(example, prediction, target, source, provenance, agreement):
        return example
    example.deleted_at = None  # writing a withdrawn example brings it back, as a new revision
    example.input = prediction.input
    example.model_output = prediction.output
    example.cluster_id = prediction.cluster_id
    example.target = target
    example.source = source
    example.provenance = provenance
    example.agreement = agreement
    _touch(session, example)
    session.add(example)
    session.flush()
    return example


def _unchanged(
    example: Example,
    prediction: Prediction,
    target: Any,
    source: str,
    provenance: dict[str, Any],
    agreement: float | None,
) -> bool:
    return (
        example.deleted_at is None
        and example.target == target
        and example.source == source
        and example.provenance == provenance
        and example.agreement == agreement
        and example.input == prediction.input
        and example.model_output == prediction.output
        and example.cluster_id == prediction.cluster_id
    )


def delete_example(session: Session, *, example: Example) -> Example:
    """Turn ``example`` into a tombstone: out of datasets, announced once in the stream."""
    if example.deleted_at is not None:
        return example
    example.deleted_at = utcnow()
    _touch(session, example)
    session.add(example)
    session.flush()
    return example


def _touch(session: Session, example: Example) -> None:
    # ``revision + 1`` in SQL: two transactions revising the same row (the second waits on
    # the row lock) get r+1 and r+2, never both r+1 as a read-modify-write would.
    if example.id is None:
        example.revision = 1
    else:
        example.revision = Example.revision + 1  # type: ignore[assignment]
    example.updated_at = utcnow()
    example.seq = position_expression(session, example.project_id)


# Columns a bulk upsert writes; ``upsert_examples`` rows carry exactly these.
UPSERT_COLUMNS = (
    "prediction_id",
    "input",
    "model_output",
    "cluster_id",
    "target",
    "source",
    "provenance",
    "agreement",
)


def upsert_examples(session: Session, *, project_id: int, rows: list[dict[str, Any]]) -> int:
    """Write (or revise, or bring back) many examples of one project in one statement.

    The bulk form of ``upsert_example`` for the workers' hot path: ``INSERT … ON CONFLICT
    DO UPDATE``, ``revision + 1`` in SQL and the same commit-safe position (see module
    docstring) for every row. It writes every row it is given: callers pass only rows that
    changed (``upsert_example`` keeps the per-row no-op check).
    """
    if not rows:
        return 0
    now = utcnow()
    if not is_sqlite(session.get_bind()):
        _upsert_examples_pg(session, project_id, rows, now)
        return len(rows)
    position = position_expression(session, project_id)
    fixed = {"project_id": project_id, "weight": 1.0, "is_gold": False, "revision": 1}
    fixed |= {"deleted_at": None, "created_at": now, "updated_at": now}
    values = [{**fixed, **{c: row[c] for c in UPSERT_COLUMNS}} for row in rows]
    table = Example.__table__
    insert = sqlite_insert if is_sqlite(session.get_bind()) else pg_insert
    statement = insert(table)
    if isinstance(position, int):  # SQLite: a number taken inside this write transaction
        values = [{**v, "seq": position} for v in values]
    else:  # PostgreSQL: the writing transaction's id, evaluated by the server
        statement = statement.values(seq=position)
    new = statement.excluded
    changes = {c: new[c] for c in UPSERT_COLUMNS[1:]}
    changes |= {"deleted_at": None, "updated_at": new.updated_at, "seq": new.seq}
    changes["revision"] = table.c.revision + 1
    statement = statement.on_conflict_do_update(
        index_elements=["project_id", "prediction_id"], set_=changes
    )
    session.execute(statement, values)
    return len(values)


_UPSERT_TYPES = {
    "prediction_id": "bigint",
    "input": "jsonb",
    "model_output": "jsonb",
    "cluster_id": "bigint",
    "target": "jsonb",
    "source": "varchar",
    "provenance": "jsonb",
    "agreement": "float8",
}
_UPSERT_PG = (
    "INSERT INTO example AS t (project_id, weight, is_gold, revision, deleted_at, created_at, "
    "updated_at, seq, {names}) SELECT :project_id, 1.0, false, 1, NULL, :now, :now, "
    "pg_current_xact_id()::text::bigint, v.* FROM unnest({arrays}) AS v ({names}) "
    "ON CONFLICT (project_id, prediction_id) DO UPDATE SET {changes}, deleted_at = NULL, "
    "updated_at = excluded.updated_at, seq = excluded.seq, revision = t.revision + 1"
).format(
    names=", ".join(_UPSERT_TYPES),
    arrays=", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _UPSERT_TYPES.items()),
    changes=", ".join(f"{name} = excluded.{name}" for name in UPSERT_COLUMNS[1:]),
)


def _upsert_examples_pg(
    session: Session, project_id: int, rows: list[dict[str, Any]], now: datetime
) -> None:
    """``upsert_examples`` on PostgreSQL: one ``INSERT … SELECT FROM unnest(arrays)`` — an
    executemany of the same upsert cost ~0.4 ms per row, mostly per-statement overhead."""
    params: dict[str, Any] = {"project_id": project_id, "now": now}
    for name, kind in _UPSERT_TYPES.items():
        values = [row[name] for row in rows]
        if kind == "jsonb":  # JSON null for None, as the JSON column type stores it
            values = [orjson.dumps(value).decode() for value in values]
        params[name] = typed_array_literal(values, kind)
    session.execute(text(_UPSERT_PG), params)


def delete_examples(session: Session, *, project_id: int, example_ids: list[int]) -> int:
    """The bulk form of ``delete_example``: tombstones with a new revision and position."""
    live = [i for i in example_ids if i is not None]
    if not live:
        return 0
    now = utcnow()
    table = Example.__table__
    statement = (
        table.update()
        .where(table.c.id.in_(sorted(live)), table.c.deleted_at.is_(None))
        .values(
            deleted_at=now,
            updated_at=now,
            revision=table.c.revision + 1,
            seq=position_expression(session, project_id),
        )
    )
    return session.execute(statement).rowcount  # type: ignore[attr-defined, no-any-return]


# --- reading the stream -------------------------------------------------------------------

# The oldest transaction still running when this statement's snapshot was taken, ignoring
# transactions *proven* to belong to another database on the same server (they cannot
# write our rows; without this a bulk load in a neighbouring database stalls the stream).
# An xid not found in pg_locks any more (it just ended) is not proven foreign, so it still
# holds the horizon back: the check errs on the safe side. pg_locks shows 32-bit xids.
PG_HORIZON = (
    "(SELECT coalesce(min(x::text::bigint), "
    "pg_snapshot_xmax(pg_current_snapshot())::text::bigint) "
    "FROM pg_snapshot_xip(pg_current_snapshot()) AS x WHERE NOT EXISTS ("
    "SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'transactionid' AND l.granted "
    "AND l.transactionid::text::bigint = x::text::bigint % 4294967296 "
    "AND a.datname IS DISTINCT FROM current_database()))"
)

STREAM_COLUMNS = (
    "e.id, e.seq, e.revision, e.deleted_at, e.cluster_id, e.source, e.weight, e.agreement, "
    "e.is_gold, {input}, {target}, {model_output}, {created_at}, {updated_at}, "
    "p.client_id, p.model_version, {segment}, p.confidence"
)


def stream_columns(dialect: str) -> str:
    """``STREAM_COLUMNS`` for ``dialect``: JSON as its text and timestamps as ISO 8601 UTC
    text on PostgreSQL (no decode/re-encode in Python on the way out)."""
    if dialect != "postgresql":
        return STREAM_COLUMNS.format(
            input="e.input",
            target="e.target",
            model_output="e.model_output",
            segment="p.segment",
            created_at="e.created_at",
            updated_at="e.updated_at",
        )
    iso = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""
    return STREAM_COLUMNS.format(
        input="e.input::text",
        target="e.target::text",
        model_output="e.model_output::text",
        segment="p.segment::text",
        created_at=iso.format("e.created_at"),
        updated_at=iso.format("e.updated_at"),
    )


def stream_sql(connection: Connection) -> str:
    columns = stream_columns(connection.dialect.name)
    horizon = ""
    if connection.dialect.name == "postgresql":
        horizon = f"AND e.seq < {PG_HORIZON} "
    return (
        f"SELECT {columns} FROM example e LEFT JOIN prediction p ON p.id = e.prediction_id "
        "WHERE e.project_id = :project_id AND (e.seq > :seq OR (e.seq = :seq AND e.id > :id)) "
        f"{horizon}ORDER BY e.seq, e.id LIMIT :limit"
    )


def read_stream(
    connection: Connection, *, project_id: int, after: Cursor, limit: int
) -> list[tuple[Any, ...]]:
    """Raw rows (see ``STREAM_COLUMNS``) after ``after`` in position order, at most ``limit``.

    One statement, so the horizon and the rows come from the same snapshot.
    """
    params = {"project_id": project_id, "seq": after.seq, "id": after.id, "limit": limit}
    return [tuple(row) for row in connection.execute(text(stream_sql(connection)), params)]


def stream_horizon(connection: Connection, project_id: int) -> Cursor:
    """The cursor up to which the stream is complete right now (see module docstring)."""
    if connection.dialect.name == "postgresql":
        return Cursor(int(connection.execute(text(f"SELECT {PG_HORIZON}")).scalar_one()), 0)
    current = connection.execute(
        select(func.max(Example.seq)).where(col(Example.project_id) == project_id)
    ).scalar_one()
    return Cursor((current or 0) + 1, 0)
