"""Turning raw feedback events into effective opinions, clusters, examples and review items.

One call processes one micro-batch inside the caller's transaction:

1. claim the events by deleting their ``pending_event`` rows (``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL, so two workers never take the same event) and take the project's
   processing lock;
2. set aside events that cannot be processed, with the reason (replayable);
3. cluster the inputs of the predictions they touch (exact hash, then MinHash LSH);
4. mark predictions shown and draw the audit sample;
5. apply per-user caps, then keep one effective opinion per (prediction, end user);
6. re-route every touched cluster (``corrigenda.routing``);
7. note why ignored events did not count (rate cap, quarantine).

Events already processed have no pending row and are skipped, so running a batch twice
changes nothing; a batch that fails rolls back, and its pending rows with it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import update
from sqlmodel import Session, col, select

from . import abuse, dedupe
from .bulk import (
    Write,
    among,
    array_literal,
    chunks,
    dialect,
    execute_write,
    fetch_rows,
    insert_ignore,
    lock_project,
    update_arrays_write,
    writes_sent_meanwhile,
)
from .clustering import assign_clusters
from .models import Cluster, FeedbackEvent, PendingEvent, Prediction, Project
from .normalize import input_text
from .routing import WAITING_FOR_ROUTING, audit_selected, effective_policy, route_clusters

OPINION_KINDS = ("accept", "reject", "correct", "flag")
EVENTS = FeedbackEvent.__table__
PENDING = PendingEvent.__table__
PREDICTIONS = Prediction.__table__


@dataclass
class ProcessResult:
    processed: int = 0
    set_aside: int = 0
    ignored: int = 0
    clusters_created: int = 0
    near_duplicates: int = 0
    examples_written: int = 0
    review_items: int = 0


@dataclass(slots=True)
class EventRow:
    """The columns of a feedback event that processing reads (a plain record, no ORM)."""

    id: int
    event_id: uuid.UUID
    project_id: int
    prediction_id: int
    kind: str
    value: Any
    end_user: str | None
    session_id: str | None
    client_time: datetime | None
    received_at: datetime


@dataclass(slots=True)
class PredictionState:
    """What processing reads and may set on a prediction; ``input`` only while unclustered."""

    id: int
    cluster_id: int | None
    content_hash: str | None
    input: Any
    shown_at: datetime | None
    audit_sample: bool | None
    dirty: bool = False


@dataclass
class _Outcome:
    """Per-event bookkeeping written back in bulk at the end of a batch."""

    errors: dict[int, str]
    ignored: dict[int, str]


def pending_event_ids(
    *, session: Session, limit: int, received_before: datetime | None = None
) -> list[int]:
    """Ids of committed events waiting for processing (not set aside), oldest first."""
    query = sa.select(PENDING.c.id).order_by(PENDING.c.id).limit(limit)
    if received_before is not None:
        query = query.join(EVENTS, EVENTS.c.id == PENDING.c.id).where(
            EVENTS.c.received_at < received_before
        )
    return list(session.execute(query).scalars())


def mark_pending(session: Session, *, event_ids: Iterable[int]) -> None:
    """Put events (back) in the processing queue; ingestion does this in its insert."""
    insert_ignore(session, PENDING, [{"id": event_id} for event_id in event_ids])


def process_events(session: Session, *, event_ids: list[int]) -> ProcessResult:
    """Process the given events; processed, set-aside or locked ones are skipped."""
    result = ProcessResult()
    with _planned_per_call(session):
        by_project: dict[int, list[EventRow]] = defaultdict(list)
        for event in _claim(session, event_ids):
            by_project[event.project_id].append(event)
        for project_id in sorted(by_project):
            _process_project(session, project_id, by_project[project_id], result)
    return result


@contextmanager
def _planned_per_call(session: Session) -> Iterator[None]:
    """Plan every statement of a batch for its actual arrays (PostgreSQL).

    Our statements take whole batches as one array parameter. A cached generic plan cannot
    see the array's size and may re-read it for every row of a sequential scan (seconds per
    batch once a table has grown); planning each call costs well under a millisecond. So
    the driver does not turn them into server-side prepared statements while processing (an
    unnamed statement is always planned for its parameters). Not ``plan_cache_mode =
    force_custom_plan``, which did the same for our statements but also re-planned the
    foreign-key check query of every inserted row (effective opinions, review items): half
    of the backend's time in those inserts.
    """
    if dialect(session) != "postgresql":
        yield
        return
    raw = session.connection().connection.driver_connection
    threshold = raw.prepare_threshold  # type: ignore[union-attr]
    raw.prepare_threshold = None  # type: ignore[union-attr]
    try:
        yield
    finally:
        raw.prepare_threshold = threshold  # type: ignore[union-attr]


_EVENT_COLUMNS = [EVENTS.c[name] for name in EventRow.__slots__]  # type: ignore[attr-defined]


def _claim(session: Session, event_ids: list[int]) -> list[EventRow]:
    """Take the events still pending: delete their pending rows (skipping those another
    worker holds), then read the events, unlocked (their columns never change).

    The transaction is the unit: a batch that fails rolls back, and its events are pending
    again. Pending rows of events deleted meanwhile (erasure) go without an event.
    """
    events: list[EventRow] = []
    for part in chunks(sorted(set(event_ids))):
        if dialect(session) == "postgresql":
            rows = fetch_rows(session, _CLAIM_POSTGRESQL.bindparams(ids=array_literal(part)))
        else:
            rows = _claim_sqlite(session, part)
        events.extend(EventRow(*row) for row in rows)
    return events


# One statement: lock the pending rows not held by another worker, delete them by their
# tuple ids (a TID scan; ``id IN (subquery)`` made the planner hash-join the whole queue),
# and read their events.
_CLAIM_POSTGRESQL = sa.text(
    f"""
    WITH claimed AS (
        DELETE FROM pending_event WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM pending_event
            WHERE id IN (SELECT unnest(CAST(:ids AS bigint[])))
            FOR UPDATE SKIP LOCKED
        ))
        RETURNING id
    )
    SELECT {", ".join(c.name for c in _EVENT_COLUMNS)} FROM feedback_event
    WHERE id IN (SELECT id FROM claimed) ORDER BY id
    """
)


def _claim_sqlite(session: Session, ids: list[int]) -> list[Any]:
    """SQLite has one writer at a time (``BEGIN IMMEDIATE``): nobody else can hold them."""
    statement = sa.delete(PENDING).where(PENDING.c.id.in_(ids)).returning(PENDING.c.id)
    claimed = list(session.execute(statement).scalars())
    if not claimed:
        return []
    query = sa.select(*_EVENT_COLUMNS).where(EVENTS.c.id.in_(claimed)).order_by(EVENTS.c.id)
    return list(session.execute(query).all())


def _process_project(
    session: Session, project_id: int, events: list[EventRow], result: ProcessResult
) -> None:
    lock_project(session, project_id)
    project = session.get(Project, project_id)
    if project is None:
        return
    policy = effective_policy(project)
    predictions = _predictions(session, project_id, {e.prediction_id for e in events})
    outcome = _Outcome(errors={}, ignored={})
    good = [e for e in events if not _set_aside_invalid(e, project, predictions, outcome)]
    result.set_aside += len(outcome.errors)
    # Clustered in stream order (first event first; the events come in id order): the
    # greedy near-duplicate choice then sees the texts in the same order however the
    # stream is cut into batches, so any batch size gives the same clusters.
    touched = dict.fromkeys(e.prediction_id for e in good)
    _cluster(session, project, policy, [predictions[p] for p in touched], result)
    clusters = _mark_shown_and_audit(predictions, good, float(policy["audit_rate"]))
    # PostgreSQL: writes nothing reads again in the batch, sent while Python works.
    later: list[Write] | None = [] if dialect(session) == "postgresql" else None
    changed, unwritten = _record_opinions(
        session, project, policy, good, predictions, outcome, later
    )
    result.ignored += len(outcome.ignored)
    if later is None:
        store_predictions(session, predictions.values())
    else:
        later += _ignored_writes(outcome)
    # Routed right away, in this transaction: these clusters never wait for re-routing.
    routed = route_clusters(
        session,
        project=project,
        cluster_ids=clusters | changed,
        alongside=later or (),
        unstored=unwritten,
    )
    result.examples_written += routed.examples_written
    result.review_items += routed.items_created
    if later is None:
        _record_ignored(session, outcome)
    _record_errors(session, outcome)
    result.processed += len(good)


_PREDICTION_COLUMNS = (
    PREDICTIONS.c.id,
    PREDICTIONS.c.cluster_id,
    PREDICTIONS.c.content_hash,
    # The input is only needed (and decoded) for predictions not clustered yet.
    sa.case((PREDICTIONS.c.cluster_id.is_(None), PREDICTIONS.c.input), else_=None).label("input"),
    PREDICTIONS.c.shown_at,
    PREDICTIONS.c.audit_sample,
)


def _predictions(session: Session, project_id: int, ids: set[int]) -> dict[int, PredictionState]:
    found: dict[int, PredictionState] = {}
    for part in chunks(sorted(ids)):
        query = sa.select(*_PREDICTION_COLUMNS).where(
            among(session, PREDICTIONS.c.id, part), PREDICTIONS.c.project_id == project_id
        )
        found.update((row[0], PredictionState(*row)) for row in fetch_rows(session, query))
    return found


def store_predictions(session: Session, predictions: Iterable[PredictionState]) -> None:
    """Write back cluster, hash, shown time and audit draw of the predictions that changed."""
    rows = _changed_predictions(predictions)
    if not rows:
        return
    if dialect(session) == "postgresql":
        execute_write(session, _prediction_write(rows))
        return
    statement = (
        PREDICTIONS.update()
        .where(PREDICTIONS.c.id == sa.bindparam("b_id"))
        .values(
            cluster_id=sa.bindparam("b_cluster"),
            content_hash=sa.bindparam("b_hash"),
            shown_at=sa.bindparam("b_shown"),
            audit_sample=sa.bindparam("b_audit"),
        )
    )
    session.execute(statement, rows)


def _changed_predictions(predictions: Iterable[PredictionState]) -> list[dict[str, Any]]:
    return [
        {
            "b_id": p.id,
            "b_cluster": p.cluster_id,
            "b_hash": p.content_hash,
            "b_shown": p.shown_at,
            "b_audit": p.audit_sample,
        }
        for p in predictions
        if p.dirty
    ]


def _prediction_write(rows: list[dict[str, Any]]) -> Write:
    return update_arrays_write(
        "prediction",
        "id",
        {
            "id": ("bigint", [r["b_id"] for r in rows]),
            "cluster_id": ("bigint", [r["b_cluster"] for r in rows]),
            "content_hash": ("varchar", [r["b_hash"] for r in rows]),
            "shown_at": ("timestamptz", [r["b_shown"] for r in rows]),
            "audit_sample": ("boolean", [r["b_audit"] for r in rows]),
        },
    )


def invalid_reason(event: Any, project: Project, prediction: Any | None) -> str | None:
    """Why ``event`` cannot be processed, or None. The reason is shown to admins."""
    if prediction is None:
        return f"prediction {event.prediction_id} does not exist in project {project.slug!r}"
    if event.kind == "correct" and event.value is None:
        return "a correction needs a value"
    if event.kind not in ("correct", "reject") or event.value is None:
        return None
    return _value_problem(event.value, project)


def _value_problem(value: Any, project: Project) -> str | None:
    labels = set(project.labels or [])
    if project.task_type == "text":
        return None if isinstance(value, str) else "value must be a string for a text project"
    items = value if project.task_type == "multilabel" and isinstance(value, list) else [value]
    if project.task_type == "classification" and not isinstance(value, str):
        return "value must be one label (a string) for a classification project"
    unknown = [v for v in items if not isinstance(v, str) or (labels and v not in labels)]
    if unknown:
        return f"value {unknown[0]!r} is not one of the project's labels"
    return None


def _set_aside_invalid(
    event: EventRow,
    project: Project,
    predictions: dict[int, PredictionState],
    outcome: _Outcome,
) -> bool:
    reason = invalid_reason(event, project, predictions.get(event.prediction_id))
    if reason is None:
        return False
    outcome.errors[event.id] = reason
    return True


def _cluster(
    session: Session,
    project: Project,
    policy: dict[str, Any],
    predictions: list[PredictionState],
    result: ProcessResult,
) -> None:
    pending = [p for p in predictions if p.cluster_id is None]
    if not pending:
        return
    assignment = assign_clusters(
        session,
        project_id=project.id,  # type: ignore[arg-type]
        texts=[(p.id, input_text(p.input)) for p in pending],
        options=policy.get("normalization"),
        threshold=float(policy["near_duplicate_threshold"]),
        near_duplicates=bool(policy["near_duplicates"]),
    )
    for prediction in pending:
        prediction.content_hash = assignment.content_hashes[prediction.id]
        prediction.cluster_id = assignment.clusters[prediction.id]
        prediction.input, prediction.dirty = None, True
    result.clusters_created += len(assignment.created)
    result.near_duplicates += assignment.near_duplicates


def _mark_shown_and_audit(
    predictions: dict[int, PredictionState], events: list[EventRow], rate: float
) -> set[int]:
    """Any event means the prediction was shown; draw its audit sample once."""
    first_seen: dict[int, datetime] = {}
    for event in events:
        seen = event.client_time or event.received_at
        first_seen[event.prediction_id] = min(seen, first_seen.get(event.prediction_id, seen))
    sampled: set[int] = set()
    for prediction_id, seen in first_seen.items():
        prediction = predictions[prediction_id]
        if prediction.shown_at is None:
            prediction.shown_at, prediction.dirty = seen, True
        if prediction.audit_sample is None:
            prediction.audit_sample = audit_selected(prediction_id, rate)
            prediction.dirty = True
            if prediction.audit_sample:
                sampled.add(prediction.cluster_id)  # type: ignore[arg-type]
    return sampled


def end_user_key(event: Any) -> str:
    """Who gave the opinion: the end user, else the session, else the event alone."""
    if event.end_user:
        return event.end_user
    if event.session_id:
        return f"session:{event.session_id}"[:200]
    return f"event:{event.event_id}"


def order_key(event: Any) -> str:
    """Latest wins: client time, then received time, then the event id (a total order)."""
    stated = _stamp(event.client_time or event.received_at)
    return f"{stated}|{_stamp(event.received_at)}|{event.event_id}"


def _stamp(moment: datetime) -> str:
    """``strftime("%Y%m%d%H%M%S%f")`` in UTC, several times faster (one per event)."""
    m = moment.astimezone(UTC)
    return (
        f"{m.year}{m.month:02d}{m.day:02d}{m.hour:02d}{m.minute:02d}{m.second:02d}"
        f"{m.microsecond:06d}"
    )


def _record_opinions(
    session: Session,
    project: Project,
    policy: dict[str, Any],
    events: list[EventRow],
    predictions: dict[int, PredictionState],
    outcome: _Outcome,
    later: list[Write] | None,
) -> tuple[set[int], dict[tuple[int, str], dedupe.Opinion]]:
    """Fold opinion events into effective opinions; returns the clusters that changed and
    the changed opinions not written yet, by (prediction, end user).

    On PostgreSQL (``later`` given) the opinions' upsert and the users' rate windows (see
    ``apply_caps``) are left in ``later``: routing takes the changed opinions from here,
    so they are written while it decides. The changed predictions are written while the
    events are ordered and folded: the reads come first, and nothing reads predictions
    before routing."""
    opinions = [e for e in events if e.kind in OPINION_KINDS]
    users = {e.id: end_user_key(e) for e in opinions}
    capped: set[int] = set()
    blocked: set[str] = set()
    existing: dict[tuple[int, str], dedupe.Opinion] = {}
    if opinions:
        cap = int(policy["user_cap_per_hour"])
        capped, blocked = abuse.apply_caps(session, project.id, opinions, users, cap, defer=later)  # type: ignore[arg-type]
        existing = dedupe.load_opinions(session, ((e.prediction_id, users[e.id]) for e in opinions))
    changed: set[int] = set()
    with writes_sent_meanwhile(session, _prediction_writes(predictions, later)):
        for ordering, event in _ordered(opinions):
            if event.id in capped:
                outcome.ignored[event.id] = "cap"
                continue
            user = users[event.id]
            if user in blocked:
                outcome.ignored[event.id] = "quarantined"
            cluster = predictions[event.prediction_id].cluster_id
            if dedupe.fold(existing, event, user, ordering, cluster):
                changed.add(cluster)  # type: ignore[arg-type]
    if later is None:
        if opinions:
            dedupe.store_opinions(session, project.id, existing.values())  # type: ignore[arg-type]
        return changed, {}
    unwritten = {key: o for key, o in existing.items() if o.dirty}
    later += dedupe.opinions_write(project.id, unwritten.values())  # type: ignore[arg-type]
    return changed, unwritten


def _prediction_writes(
    predictions: dict[int, PredictionState], later: list[Write] | None
) -> list[Write]:
    """PostgreSQL (``later`` given): the changed predictions' update, to send meanwhile."""
    if later is None:
        return []
    changed = _changed_predictions(predictions.values())
    return [_prediction_write(changed)] if changed else []


def _ordered(opinions: list[EventRow]) -> list[tuple[str, EventRow]]:
    """The opinion events in "latest wins" order, each with its order key."""
    return sorted(((order_key(e), e) for e in opinions), key=lambda pair: pair[0])


def _by_ignored_reason(outcome: _Outcome) -> dict[str, list[int]]:
    by_reason: dict[str, list[int]] = defaultdict(list)
    for event_id, reason in sorted(outcome.ignored.items()):
        by_reason[reason].append(event_id)
    return by_reason


def _record_ignored(session: Session, outcome: _Outcome) -> None:
    """Note why processed events did not count (SQLite); they are few."""
    for reason, ids in _by_ignored_reason(outcome).items():
        for part in chunks(ids):
            session.execute(
                EVENTS.update().where(EVENTS.c.id.in_(part)).values(ignored_reason=reason)
            )


def _ignored_writes(outcome: _Outcome) -> list[Write]:
    """``_record_ignored`` as statements to send later (PostgreSQL)."""
    return [
        (
            "UPDATE feedback_event SET ignored_reason = %(reason)s "
            "WHERE id IN (SELECT unnest(CAST(%(ids)s AS bigint[])))",
            {"reason": reason, "ids": array_literal(ids)},
        )
        for reason, ids in _by_ignored_reason(outcome).items()
    ]


def _record_errors(session: Session, outcome: _Outcome) -> None:
    """Set aside the events that cannot be processed, with the reason."""
    if outcome.errors:
        statement = (
            EVENTS.update()
            .where(EVENTS.c.id == sa.bindparam("b_id"))
            .values(error=sa.bindparam("b_error"))
        )
        rows = [{"b_id": i, "b_error": r} for i, r in sorted(outcome.errors.items())]
        session.execute(statement, rows)


# --- set-aside events: visible to admins, replayable ------------------------------------


def set_aside(session: Session, *, event_id: int, reason: str) -> None:
    """Record that an event could not be processed (it leaves the stream until replayed);
    an event processed or set aside meanwhile stays as it is."""
    taken = session.execute(
        sa.delete(PENDING).where(PENDING.c.id == event_id).returning(PENDING.c.id)
    ).first()
    if taken is not None:
        session.execute(
            update(FeedbackEvent)
            .where(col(FeedbackEvent.id) == event_id)
            .values(error=reason[:2000])
        )


def set_aside_events(
    session: Session, *, project_id: int | None = None, limit: int = 100
) -> list[FeedbackEvent]:
    """Events set aside, newest first."""
    query = select(FeedbackEvent).where(col(FeedbackEvent.error).is_not(None))
    if project_id is not None:
        query = query.where(FeedbackEvent.project_id == project_id)
    return list(session.exec(query.order_by(col(FeedbackEvent.id).desc()).limit(limit)))


def replay_events(
    session: Session, *, event_ids: list[int] | None = None, project_id: int | None = None
) -> list[int]:
    """Put set-aside events back in the stream (all of them when no ids are given)."""
    query = select(FeedbackEvent.id).where(col(FeedbackEvent.error).is_not(None))
    if event_ids is not None:
        query = query.where(col(FeedbackEvent.id).in_(event_ids))
    if project_id is not None:
        query = query.where(FeedbackEvent.project_id == project_id)
    ids = [i for i in session.exec(query) if i is not None]
    for part in chunks(ids):
        session.execute(
            update(FeedbackEvent).where(col(FeedbackEvent.id).in_(part)).values(error=None)
        )
    mark_pending(session, event_ids=ids)
    return ids


# --- periodic re-aggregation -----------------------------------------------------------


@dataclass
class ReaggregateResult:
    audited: int = 0
    reliabilities_changed: int = 0
    quarantined: int = 0
    clusters_routed: int = 0


def reaggregate_project(
    session: Session, *, project: Project, learn: bool = True, limit: int = 2000
) -> ReaggregateResult:
    """One bounded round for one project: learn reliabilities (Dawid–Skene) and quarantine
    outliers, draw the audit sample for predictions shown without any event, and re-route
    clusters touched since they were last aggregated."""
    result = ReaggregateResult()
    lock_project(session, project.id)  # type: ignore[arg-type]
    policy = effective_policy(project)
    if learn:
        result.reliabilities_changed = abuse.update_reliabilities(session, project=project)
        result.quarantined = len(abuse.update_quarantine(session, project=project, policy=policy))
    sampled = _audit_shown(session, project, policy, limit)
    result.audited = len(sampled)
    stale = _stale_clusters(session, project.id, limit)  # type: ignore[arg-type]
    route_clusters(session, project=project, cluster_ids=stale | sampled)
    result.clusters_routed = len(stale | sampled)
    return result


def _audit_shown(
    session: Session, project: Project, policy: dict[str, Any], limit: int
) -> set[int]:
    """Predictions the product marked shown but nobody reacted to still join the audit draw."""
    query = (
        sa.select(*_PREDICTION_COLUMNS)
        .where(
            PREDICTIONS.c.project_id == project.id,
            PREDICTIONS.c.shown_at.is_not(None),
            PREDICTIONS.c.audit_sample.is_(None),
        )
        .order_by(PREDICTIONS.c.id)
        .limit(limit)
    )
    predictions = [PredictionState(*row) for row in session.execute(query)]
    _cluster(session, project, policy, predictions, ProcessResult())
    sampled: set[int] = set()
    for prediction in predictions:
        prediction.audit_sample = audit_selected(prediction.id, float(policy["audit_rate"]))
        prediction.dirty = True
        if prediction.audit_sample:
            sampled.add(prediction.cluster_id)  # type: ignore[arg-type]
    store_predictions(session, predictions)
    return sampled


def _stale_clusters(session: Session, project_id: int, limit: int) -> set[int]:
    clusters = Cluster.__table__
    query = (
        sa.select(clusters.c.id)
        .where(clusters.c.project_id == project_id, WAITING_FOR_ROUTING)
        .limit(limit)
    )
    return set(session.execute(query).scalars())
