"""Logging predictions and recording feedback: the rules of the front door.

Both functions take a session, write in bulk with ``INSERT … ON CONFLICT DO NOTHING`` (one
statement for the whole batch, on SQLite and PostgreSQL) and never commit: the caller owns
the transaction and enqueues processing only after it committed. Each new event is queued
for processing (a ``pending_event`` row) in the same statement (PostgreSQL) or transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Insert
from sqlmodel import Session, col

from .models import FeedbackEvent, Prediction, Project, utcnow
from .schemas.common import pointer
from .schemas.ingest import MAX_VALUE_TEXT, FeedbackEventIn, PredictionIn

PREDICTION_CONTENT = (
    "model_version",
    "input",
    "output",
    "confidence",
    "alternatives",
    "segment",
    "explanation",
    "shadow_of",
)


class PredictionConflict(Exception):
    """Some client ids were logged before with different content (nothing was written)."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(f"{len(errors)} prediction(s) conflict with what was logged before")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class LoggedPrediction:
    client_id: str
    row_id: int
    status: str  # "created" | "unchanged"
    end_user: str | None


# ---------------------------------------------------------------------------- text safety


def unsafe_text_errors(data: Any, *prefix: str | int) -> list[dict[str, str]]:
    """Errors for strings PostgreSQL cannot store or that are not text: NUL, lone surrogates."""
    errors: list[dict[str, str]] = []
    _walk_text(data, list(prefix), errors)
    return errors


def _walk_text(data: Any, path: list[str | int], errors: list[dict[str, str]]) -> None:
    if isinstance(data, str):
        if problem := _text_problem(data):
            errors.append({"path": pointer(*path), "message": problem})
    elif isinstance(data, dict):
        for key, value in data.items():
            if problem := _text_problem(key):
                errors.append({"path": pointer(*path, key), "message": f"field name {problem}"})
            _walk_text(value, [*path, key], errors)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            _walk_text(value, [*path, index], errors)


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which is not allowed"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (an unpaired \\ud800-\\udfff escape); send valid UTF-16"
    return None


# ---------------------------------------------------------------------- project checks


def output_errors(project: Project, output: Any, *path: str | int) -> list[dict[str, str]]:
    """Errors when ``output`` does not fit the project's task type and label set."""
    if output is None:
        return []
    return _value_errors(project, output, list(path))


def _value_errors(project: Project, value: Any, path: list[str | int]) -> list[dict[str, str]]:
    where = pointer(*path)
    labels = project.labels
    if project.task_type == "classification":
        if not isinstance(value, str):
            return [{"path": where, "message": "must be one label (a string)"}]
        if labels and value not in labels:
            return [{"path": where, "message": _not_a_label(value, labels)}]
    elif project.task_type == "multilabel":
        if not isinstance(value, list):
            return [{"path": where, "message": "must be a list of labels"}]
        if len(set(value)) != len(value):
            return [{"path": where, "message": "lists a label more than once"}]
        bad = [v for v in value if labels and v not in labels]
        if bad:
            return [{"path": where, "message": _not_a_label(bad[0], labels)}]
    elif not isinstance(value, str):
        return [{"path": where, "message": "must be a text (a string)"}]
    elif len(value) > MAX_VALUE_TEXT:
        return [{"path": where, "message": f"is longer than {MAX_VALUE_TEXT} characters"}]
    return []


def _not_a_label(value: str, labels: list[str]) -> str:
    shown = ", ".join(labels[:20]) + (" …" if len(labels) > 20 else "")
    return f"{value[:80]!r} is not one of the project's labels ({shown})"


def prediction_errors(project: Project, item: PredictionIn, index: int) -> list[dict[str, str]]:
    """Errors of one validated prediction against the project (labels, task type)."""
    errors = output_errors(project, item.output, "predictions", index, "output")
    for number, alternative in enumerate(item.alternatives or []):
        if project.labels and alternative.label not in project.labels:
            path = pointer("predictions", index, "alternatives", number, "label")
            errors.append(
                {"path": path, "message": _not_a_label(alternative.label, project.labels)}
            )
    return errors


def event_errors(
    project: Project, event: FeedbackEventIn, *prefix: str | int
) -> list[dict[str, str]]:
    """Errors of one validated feedback event against the project (kind ↔ value, labels)."""
    if event.value is None:
        if event.kind == "correct":
            return [{"path": pointer(*prefix, "value"), "message": "a correction needs a value"}]
        return []
    if event.kind in ("view", "accept", "flag"):
        message = f"a {event.kind} event carries no value"
        return [{"path": pointer(*prefix, "value"), "message": message}]
    return _value_errors(project, event.value, [*prefix, "value"])


# ------------------------------------------------------------------------- predictions


def log_predictions(
    session: Session, *, project: Project, items: list[PredictionIn]
) -> list[LoggedPrediction]:
    """Insert new predictions; identical re-sends are ``unchanged``.

    Raises PredictionConflict (before anything is flushed that the caller should keep) when
    an id was logged with different content. The caller must roll back in that case.
    """
    unique, conflicts = _collapse_repeats(items)
    rows = [_prediction_row(project, item) for item in unique.values()]
    table: Table = Prediction.__table__  # type: ignore[attr-defined]
    statement = _insert(session, table).on_conflict_do_nothing(
        index_elements=["project_id", "client_id"]
    )
    created = dict(session.execute(statement.returning(table.c.client_id, table.c.id), rows).all())
    existing = _existing_predictions(session, project, [c for c in unique if c not in created])
    for client_id, row in existing.items():
        if row[1] != unique[client_id].content():
            conflicts.append(client_id)
    if conflicts:
        raise PredictionConflict(_conflict_errors(items, set(conflicts)))
    ids = {**created, **{client_id: row[0] for client_id, row in existing.items()}}
    return [
        LoggedPrediction(
            item.id, ids[item.id], "created" if item.id in created else "unchanged", item.end_user
        )
        for item in items
    ]


def _collapse_repeats(items: list[PredictionIn]) -> tuple[dict[str, PredictionIn], list[str]]:
    """First item per client id; ids repeated in one batch with other content conflict."""
    unique: dict[str, PredictionIn] = {}
    conflicts: list[str] = []
    for item in items:
        first = unique.setdefault(item.id, item)
        if first is not item and first.content() != item.content():
            conflicts.append(item.id)
    return unique, conflicts


def _prediction_row(project: Project, item: PredictionIn) -> dict[str, Any]:
    return {
        "project_id": project.id,
        "client_id": item.id,
        "created_at": utcnow(),
        **item.content(),
    }


def _existing_predictions(
    session: Session, project: Project, client_ids: list[str]
) -> dict[str, tuple[int, dict[str, Any]]]:
    if not client_ids:
        return {}
    columns = [col(getattr(Prediction, name)) for name in PREDICTION_CONTENT]
    query = select(col(Prediction.client_id), col(Prediction.id), *columns).where(
        Prediction.project_id == project.id, col(Prediction.client_id).in_(client_ids)
    )
    return {
        row[0]: (row[1], dict(zip(PREDICTION_CONTENT, row[2:], strict=True)))
        for row in session.execute(query)
    }


def _conflict_errors(items: list[PredictionIn], conflicting: set[str]) -> list[dict[str, str]]:
    message = "this id was logged before with different content; use a new id for a new prediction"
    return [
        {"path": pointer("predictions", index, "id"), "message": message}
        for index, item in enumerate(items)
        if item.id in conflicting
    ]


# ---------------------------------------------------------------------------- feedback


@dataclass
class EventToStore:
    """A valid event whose prediction is known by row id (token) or by client id (secret key)."""

    index: int
    event: FeedbackEventIn
    prediction_id: int | None = None
    end_user: str | None = None


@dataclass
class FeedbackOutcome:
    accepted: dict[int, int] = field(default_factory=dict)  # request index -> event row id
    duplicate: list[int] = field(default_factory=list)
    unknown_prediction: list[int] = field(default_factory=list)


def record_feedback(
    session: Session | Connection,
    *,
    project: Project,
    events: list[EventToStore],
    source: str,
    origin: str | None,
    verify_predictions: bool = False,
    prediction_ids: PredictionIdCache | None = None,
) -> FeedbackOutcome:
    """Store events with insert-or-ignore on their UUID; report accepted/duplicate per index.

    ``session`` may also be a Core connection (the API's autocommit fast path): with
    token-carrying events this is a single statement. Events that carry a prediction row id
    (from a verified token) need no lookup; others are resolved by client id in one query.
    ``verify_predictions`` also checks token row ids (for the rare retry after a prediction
    was deleted under a still-valid token). ``prediction_ids`` caches client id → row id
    across calls (one cache per database).
    """
    outcome = FeedbackOutcome()
    _resolve_predictions(session, project, events, outcome, verify_predictions, prediction_ids)
    storable = [e for e in events if e.prediction_id is not None]
    if not storable:
        return outcome
    inserted = _insert_events(session, project, storable, source, origin, utcnow())
    # Keyed by the UUID's int: UUID.__hash__ and __eq__ are Python code (~1 µs an event).
    by_int = {event_id.int: row_id for event_id, row_id in inserted}
    for item in storable:
        row_id = by_int.pop(item.event.id.int, None)
        if row_id is None:
            outcome.duplicate.append(item.index)
        else:
            outcome.accepted[item.index] = row_id
    return outcome


def _resolve_predictions(
    session: Session | Connection,
    project: Project,
    events: list[EventToStore],
    outcome: FeedbackOutcome,
    verify: bool,
    cache: PredictionIdCache | None,
) -> None:
    wanted = [e for e in events if e.prediction_id is None or verify]
    if not wanted:
        return
    client_ids = {e.event.prediction for e in wanted if e.event.prediction}
    known = cache.lookup(project.id, client_ids) if cache is not None and not verify else {}  # type: ignore[arg-type]
    if missing := client_ids - known.keys():
        query = select(col(Prediction.client_id), col(Prediction.id)).where(
            Prediction.project_id == project.id, col(Prediction.client_id).in_(missing)
        )
        found = dict(session.execute(query).all())
        known.update(found)
        if cache is not None:
            cache.remember(project.id, found)  # type: ignore[arg-type]
    for item in wanted:
        row_id = known.get(item.event.prediction or "")
        if row_id is None or (item.prediction_id is not None and row_id != item.prediction_id):
            item.prediction_id = None
            outcome.unknown_prediction.append(item.index)
        else:
            item.prediction_id = row_id


class PredictionIdCache:
    """Row ids of predictions by (project, client id), for one database, in one process.

    A prediction's row id never changes and is never reused, so a cached id can only be
    stale if the prediction was deleted: the insert then fails on the foreign key and the
    caller retries with ``verify_predictions=True``, which bypasses this cache.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._ids: dict[tuple[int, str], int] = {}

    def lookup(self, project_id: int, client_ids: set[str]) -> dict[str, int]:
        ids = self._ids
        return {c: ids[(project_id, c)] for c in client_ids if (project_id, c) in ids}

    def remember(self, project_id: int, found: dict[str, int]) -> None:
        if len(self._ids) + len(found) > self.max_entries:
            self._ids = {}  # bounded; a miss costs one indexed query
        self._ids.update({(project_id, c): row_id for c, row_id in found.items()})


def _insert_events(
    session: Session | Connection,
    project: Project,
    events: list[EventToStore],
    source: str,
    origin: str | None,
    received: datetime,
) -> list[tuple[uuid.UUID, int]]:
    """Insert and queue the events, skipping event ids already stored; (event id, row id)
    of those inserted. One statement on PostgreSQL; on SQLite the queue rows follow in the
    same transaction. Each database and size has the form measured cheapest for it."""
    postgres = _dialect(session) == "postgresql"
    if postgres and len(events) > 1:
        return _insert_batch_postgresql(session, project, events, source, origin, received)
    rows = [_event_row(project, e, source, origin, received) for e in events]
    if postgres:
        return _insert_one_event_postgresql(session, rows[0])
    if len(rows) == 1:
        inserted = _insert_one_event_sqlite(session, rows[0])
    else:
        table: Table = FeedbackEvent.__table__  # type: ignore[attr-defined]
        statement = _insert(session, table).on_conflict_do_nothing(index_elements=["event_id"])
        returning = statement.returning(table.c.event_id, table.c.id)
        inserted = list(session.execute(returning, rows).all())
    _queue_sqlite(session, [row_id for _, row_id in inserted])
    return inserted


def _event_row(
    project: Project, item: EventToStore, source: str, origin: str | None, received: datetime
) -> dict[str, Any]:
    event = item.event
    return {
        "event_id": event.id,
        "project_id": project.id,
        "prediction_id": item.prediction_id,
        "kind": event.kind,
        "value": event.value,
        "comment": event.comment,
        "end_user": item.end_user or event.end_user,
        "session_id": event.session,
        "source": source,
        "origin": origin,
        "client_time": event.client_time,
        "received_at": received,
        "time_to_decision_ms": event.time_to_decision_ms,
    }


# One event (the widget's usual request): plain parameters. Batches: the rows travel as ONE
# JSON parameter that PostgreSQL unpacks with json_to_recordset — array parameters cost
# ~12 µs per event of Python in the driver (its array dumper is pure Python), orjson
# serialises a row in ~1 µs and the server parses it in C. Either way one statement, one
# round trip, run on the driver's cursor: SQLAlchemy's execution context costs more
# Python than these inserts themselves.
_COLUMNS = (
    "event_id", "project_id", "prediction_id", "kind", "value", "comment", "end_user",
    "session_id", "source", "origin", "client_time", "received_at", "time_to_decision_ms",
)  # fmt: skip
_ONE_INSERT = f"""
    INSERT INTO feedback_event ({", ".join(_COLUMNS)})
    VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id, id
"""
_ONE_INSERT_SQLITE = _ONE_INSERT.replace("%s::jsonb", "?").replace("%s", "?")
# OR IGNORE: SQLite may reuse the rowid of the newest event if it was deleted while pending.
_QUEUE_SQLITE = "INSERT OR IGNORE INTO pending_event (id) VALUES (?)"


def _queued(insert: str) -> str:
    """PostgreSQL: the insert that also queues the new events, still ONE statement."""
    return f"""
    WITH inserted AS ({insert}),
    queued AS (INSERT INTO pending_event (id) SELECT id FROM inserted)
    SELECT event_id, id FROM inserted
"""


_ONE_INSERT_QUEUED = _queued(_ONE_INSERT)
_BATCH_INSERT = f"""
    INSERT INTO feedback_event ({", ".join(_COLUMNS)})
    SELECT e.event_id, %s::bigint, e.prediction_id, e.kind, e.value, e.comment, e.end_user,
        e.session_id, %s::text, %s::text, e.client_time, %s::timestamptz,
        e.time_to_decision_ms
    FROM json_to_recordset(%s::json) AS e(event_id uuid, prediction_id bigint, kind text,
        value jsonb, comment text, end_user text, session_id text, client_time timestamptz,
        time_to_decision_ms integer)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id, id
"""
_BATCH_INSERT_QUEUED = _queued(_BATCH_INSERT)


def _insert_one_event_postgresql(
    session: Session | Connection, row: dict[str, Any]
) -> list[tuple[uuid.UUID, int]]:
    params = [row[name] for name in _COLUMNS]
    params[4] = None if params[4] is None else orjson.dumps(params[4]).decode()
    return _driver_execute(session, _ONE_INSERT_QUEUED, params)


def _insert_batch_postgresql(
    session: Session | Connection,
    project: Project,
    events: list[EventToStore],
    source: str,
    origin: str | None,
    received: datetime,
) -> list[tuple[uuid.UUID, int]]:
    """What is the same for the whole batch travels once, as parameters; each row holds
    only its own non-null fields (a missing key is NULL to json_to_recordset): a third of
    the bytes to build, send and parse than full rows."""
    rows = [_compact_row(item) for item in events]
    params = [project.id, source, origin, received, orjson.dumps(rows).decode()]
    return _driver_execute(session, _BATCH_INSERT_QUEUED, params)


def _compact_row(item: EventToStore) -> dict[str, Any]:
    event = item.event
    row = {"event_id": event.id, "prediction_id": item.prediction_id, "kind": event.kind}
    if event.value is not None:
        row["value"] = event.value
    if event.comment is not None:
        row["comment"] = event.comment
    end_user = item.end_user or event.end_user
    if end_user is not None:
        row["end_user"] = end_user
    if event.session is not None:
        row["session_id"] = event.session
    if event.client_time is not None:
        row["client_time"] = event.client_time
    if event.time_to_decision_ms is not None:
        row["time_to_decision_ms"] = event.time_to_decision_ms
    return row


def _insert_one_event_sqlite(
    session: Session | Connection, row: dict[str, Any]
) -> list[tuple[uuid.UUID, int]]:
    """SQLite, one event: SQLAlchemy's own column conversions, then the driver's cursor."""
    connection = session if isinstance(session, Connection) else session.connection()
    convert = _sqlite_binds(connection)
    params = [convert[name](row[name]) for name in _COLUMNS]
    found = _driver_execute(session, _ONE_INSERT_SQLITE, params)
    return [(uuid.UUID(str(event_id)), row_id) for event_id, row_id in found]


def _queue_sqlite(session: Session | Connection, row_ids: list[int]) -> None:
    """SQLite: the pending rows of the new events, in the insert's transaction."""
    if not row_ids:
        return
    connection = session if isinstance(session, Connection) else session.connection()
    driver = connection.connection.driver_connection
    driver.executemany(_QUEUE_SQLITE, [(row_id,) for row_id in row_ids])  # type: ignore[union-attr]


_SQLITE_BINDS: dict[str, Any] = {}


def _sqlite_binds(connection: Connection) -> dict[str, Any]:
    if not _SQLITE_BINDS:
        table: Table = FeedbackEvent.__table__  # type: ignore[attr-defined]
        for name in _COLUMNS:
            process = table.c[name].type.bind_processor(connection.dialect)
            _SQLITE_BINDS[name] = process or (lambda value: value)
    return _SQLITE_BINDS


def _driver_execute(
    session: Session | Connection, statement: str, params: list[Any]
) -> list[tuple[Any, int]]:
    """Run an ``… RETURNING key, id`` statement on the driver's cursor."""
    connection = session if isinstance(session, Connection) else session.connection()
    driver = connection.connection.driver_connection
    try:
        cursor = driver.cursor()  # type: ignore[union-attr]
        try:  # sqlite3 cursors are no context managers
            cursor.execute(statement, params)
            return cursor.fetchall()
        finally:
            cursor.close()
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _wrapped(connection, exc, statement, params) from exc


def _wrapped(
    connection: Connection, exc: Exception, statement: str, params: list[Any]
) -> DBAPIError:
    """The error SQLAlchemy would have raised (IntegrityError, …; dead connections dropped)."""
    dialect = connection.dialect
    gone = dialect.is_disconnect(exc, connection.connection.driver_connection, None)
    if gone:
        connection.invalidate(exc)
    return DBAPIError.instance(
        statement, params, exc, dialect.loaded_dbapi.Error, connection_invalidated=gone
    )


def _dialect(session: Session | Connection) -> str:
    bind = session if isinstance(session, Connection) else session.get_bind()
    return bind.dialect.name


def _insert(session: Session | Connection, table: Table) -> Any:
    builder = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
    statement: Insert = builder(table)
    return statement


def new_event_id() -> uuid.UUID:
    return uuid.uuid4()
