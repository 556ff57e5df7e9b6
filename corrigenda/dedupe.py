"""Dedupe level b: one effective opinion per (prediction, end user), set-based.

The latest event wins (client time, then received time, then event id); older events only
raise ``events_seen``. Opinions are loaded for a whole batch in one query, folded in plain
Python records, and written back in one ``INSERT … ON CONFLICT DO UPDATE`` — no ORM objects
on the hot path (constructing them cost more than the rest of the batch).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from .bulk import Write, among, chunks, dialect, execute_write, fetch_rows, upsert_arrays_write
from .models import EffectiveOpinion, utcnow

OPINIONS = EffectiveOpinion.__table__


@dataclass(slots=True)
class Opinion:
    """The stored opinion of one end user on one prediction (a plain record)."""

    prediction_id: int
    end_user: str
    cluster_id: int | None
    event_id: int
    order_key: str
    kind: str
    value: Any
    events_seen: int
    dirty: bool = False


def load_opinions(
    session: Session, keys: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], Opinion]:
    """Stored opinions by (prediction, end user): those of these keys, and on PostgreSQL
    every other one on their predictions too (it reads a batch's predictions in one query)."""
    found: dict[tuple[int, str], Opinion] = {}
    for query in _opinion_queries(session, set(keys)):
        for row in fetch_rows(session, query):
            found[(row[0], row[1])] = Opinion(*row)
    return found


_LOADED = (
    OPINIONS.c.prediction_id, OPINIONS.c.end_user, OPINIONS.c.cluster_id, OPINIONS.c.event_id,
    OPINIONS.c.order_key, OPINIONS.c.kind, OPINIONS.c.value, OPINIONS.c.events_seen,
)  # fmt: skip


def _opinion_queries(session: Session, keys: set[tuple[int, str]]) -> Iterator[sa.Select]:  # type: ignore[type-arg]
    c = OPINIONS.c
    if dialect(session) == "postgresql":
        for part in chunks(sorted({prediction for prediction, _ in keys})):
            yield sa.select(*_LOADED).where(among(session, c.prediction_id, part))
        return
    # SQLite: each key through the unique index, the keys in ONE JSON parameter (the
    # statement compiles once). Reading every opinion on the predictions grew with them (one
    # shown to thousands of anonymous users: thousands of rows per batch), and ``IN`` lists
    # on both columns plan as a scan or a cross product of probes.
    keys_json = sa.bindparam("keys", type_=sa.String)
    k = sa.func.json_each(keys_json).table_valued("value").alias("k")
    on = sa.and_(
        c.prediction_id == sa.func.json_extract(k.c.value, "$[0]"),
        c.end_user == sa.func.json_extract(k.c.value, "$[1]"),
    )
    query = sa.select(*_LOADED).select_from(k.join(OPINIONS, on))
    for some in chunks(sorted(keys)):
        yield query.params(keys=orjson.dumps(some).decode())


def fold(
    opinions: dict[tuple[int, str], Opinion],
    event: Any,
    user: str,
    ordering: str,
    cluster_id: int | None,
) -> bool:
    """Apply one event to its (prediction, user) opinion; True if the opinion changed."""
    key = (event.prediction_id, user)
    opinion = opinions.get(key)
    if opinion is None:
        opinions[key] = Opinion(
            event.prediction_id, user, cluster_id, event.id, ordering, event.kind, event.value,
            1, dirty=True,
        )  # fmt: skip
        return True
    opinion.events_seen += 1
    opinion.dirty = True
    if ordering <= opinion.order_key:
        return False
    opinion.event_id, opinion.order_key = event.id, ordering
    opinion.kind, opinion.value = event.kind, event.value
    return True


def store_opinions(session: Session, project_id: int, opinions: Iterable[Opinion]) -> None:
    """Write every changed opinion in one upsert; ``updated_at`` moves only when the
    winning event did."""
    rows = _changed_rows(project_id, opinions)
    if not rows:
        return
    if dialect(session) == "postgresql":
        execute_write(session, _pg_upsert(rows))
        return
    insert = postgresql.insert if dialect(session) == "postgresql" else sqlite.insert
    statement = insert(OPINIONS)
    new = statement.excluded
    moved = sa.case(
        (new.order_key != OPINIONS.c.order_key, new.updated_at), else_=OPINIONS.c.updated_at
    )
    statement = statement.on_conflict_do_update(
        index_elements=["prediction_id", "end_user"],
        set_={
            "event_id": new.event_id,
            "order_key": new.order_key,
            "kind": new.kind,
            "value": new.value,
            "events_seen": new.events_seen,
            "updated_at": moved,
        },
    )
    for part in chunks(rows, 1000):
        session.execute(statement, part)


def opinions_write(project_id: int, opinions: Iterable[Opinion]) -> list[Write]:
    """PostgreSQL: ``store_opinions`` as a statement to send later (none if nothing changed)."""
    rows = _changed_rows(project_id, opinions)
    return [_pg_upsert(rows)] if rows else []


def _changed_rows(project_id: int, opinions: Iterable[Opinion]) -> list[dict[str, Any]]:
    now = utcnow()
    return [
        {
            "project_id": project_id,
            "prediction_id": o.prediction_id,
            "cluster_id": o.cluster_id,
            "end_user": o.end_user,
            "event_id": o.event_id,
            "order_key": o.order_key,
            "kind": o.kind,
            "value": o.value,
            "events_seen": o.events_seen,
            "updated_at": now,
        }
        for o in opinions
        if o.dirty
    ]


_OPINION_TYPES = {
    "project_id": "bigint",
    "prediction_id": "bigint",
    "cluster_id": "bigint",
    "end_user": "varchar",
    "event_id": "bigint",
    "order_key": "varchar",
    "kind": "varchar",
    "value": "jsonb",
    "events_seen": "integer",
    "updated_at": "timestamptz",
}


def _pg_upsert(rows: list[dict[str, Any]]) -> Write:
    columns = {
        name: (kind, [_json(r[name]) if kind == "jsonb" else r[name] for r in rows])
        for name, kind in _OPINION_TYPES.items()
    }
    return upsert_arrays_write(
        "effective_opinion",
        columns,
        conflict="prediction_id, end_user",
        assignments=(
            "event_id = excluded.event_id, order_key = excluded.order_key, "
            "kind = excluded.kind, value = excluded.value, events_seen = excluded.events_seen, "
            "updated_at = CASE WHEN excluded.order_key <> t.order_key "
            "THEN excluded.updated_at ELSE t.updated_at END"
        ),
    )


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()
