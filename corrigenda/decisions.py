"""Decisions on review items: deciding, settling, cluster actions, undo, adjudication, gold.

Every function takes the session and flushes; the caller's transaction commits. Each one
locks the item rows it changes first (see :mod:`corrigenda.review` for the invariants).
"""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from typing import Any

from sqlalchemy import bindparam, func, insert, literal_column, null, update
from sqlalchemy.orm import aliased, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from .audit import record_audit
from .examples import next_seq, upsert_example
from .models import (
    AuditLog,
    Decision,
    Example,
    FeedbackEvent,
    Prediction,
    Project,
    ReviewClaim,
    ReviewItem,
    User,
    utcnow,
)
from .models.review import HOLDING_CLAIM_STATUSES, OPEN_STATUSES
from .review import ReviewError, _refresh_status, _take

DECIDING_ACTIONS = ("accept_correction", "keep_model", "relabel", "reject")
CLUSTER_LIMIT = 500


class ItemNotFound(ReviewError):
    """No such review item (in the project the caller named)."""


OPINION_KINDS = ("accept", "reject", "correct", "flag")

# ---------------------------------------------------------------- deciding


def decide(
    session: Session,
    *,
    item_id: int,
    user: User,
    action: str,
    value: Any = None,
    duration_ms: int | None = None,
    cluster: bool = False,
    project: Project | None = None,
) -> Decision:
    """Record the reviewer's decision on an item they hold; settle it when N are in.

    ``project``: the caller's project (saves a lookup); an item of another project is then
    refused like a missing one (``ItemNotFound``). On PostgreSQL the hot
    path is three round trips: lock and load everything (one SELECT), write decision, audit
    row, claim and settled item (one statement), write the example (see ``write_example``).
    """
    loaded = _load_for_decision(session, item_id=item_id, user=user)
    if loaded is None or (project is not None and loaded[0].project_id != project.id):
        raise ItemNotFound(f"review item {item_id} does not exist in this project")
    if action not in (*DECIDING_ACTIONS, "skip"):
        raise ReviewError(f"action must be one of {', '.join((*DECIDING_ACTIONS, 'skip'))}")
    item, prediction, claim, prior, decision_id = loaded
    claim = _usable_claim(session, item=item, user=user, claim=claim)
    project = project or session.get(Project, item.project_id)
    events = _opinions_needed(session, prediction, action, item)
    target = resolve_target(session, project, prediction, action, value, events=events)  # type: ignore[arg-type]
    decision = Decision(
        id=decision_id,
        review_item_id=item.id,  # type: ignore[arg-type]
        reviewer_id=user.id,
        action=action,
        value=target,
        duration_ms=_clamp_duration(duration_ms),
    )
    votes = _votes_with(session, item, prior, decision)
    settle = item.reason != "gold" and len(votes) >= item.required_reviews
    claim.status = "skipped" if action == "skip" else "decided"
    claim.decided_at = decision.created_at
    if decision_id is not None:
        _write_at_once(session, item, user, claim, decision, settle=settle, votes=votes)
    else:
        _write_stepwise(session, item, user, claim, decision, settle=settle, votes=votes)
    if settle:
        _write_settled(session, item, votes, events)
    elif item.reason != "gold":
        _refresh_status(session, [item.id])  # type: ignore[list-item]
    if cluster and action in DECIDING_ACTIONS and prediction is not None:
        apply_to_cluster(session, origin=decision, item=item, prediction=prediction, user=user)
    return decision


def _load_for_decision(
    session: Session, *, item_id: int, user: User
) -> tuple[ReviewItem, Prediction | None, ReviewClaim | None, int, int | None] | None:
    """Lock the item and load its prediction, the reviewer's latest open-or-expired claim
    and how many decisions it has, in one statement. On PostgreSQL also reserve the id of
    the decision about to be written (so it can be written with its audit row at once)."""
    statement = _load_statement(session.get_bind().dialect.name == "postgresql")
    params = {"item_id": item_id, "user_id": user.id}
    for _ in range(2):
        row = session.exec(statement, params=params).first()  # type: ignore[call-overload]
        if row is None:
            return None
        if row[5] == row[6]:
            return tuple(row[:5])  # type: ignore[return-value]
    raise AssertionError("the locked item changed while this transaction held its lock")


@cache
def _load_statement(postgres: bool) -> Any:
    """Built once per dialect: building it costs more than running it."""
    user_id = bindparam("user_id", type_=ReviewClaim.__table__.c.user_id.type)
    mine = aliased(ReviewClaim)
    latest_claim = (
        select(func.max(mine.id))
        .where(
            mine.review_item_id == ReviewItem.id,
            mine.user_id == user_id,
            col(mine.status).in_(("open", "expired")),
        )
        .correlate(ReviewItem)
        .scalar_subquery()
    )
    prior = (
        select(func.count())
        .select_from(Decision)
        .where(Decision.review_item_id == ReviewItem.id)
        .correlate(ReviewItem)
        .scalar_subquery()
    )
    reserved = func.nextval(func.pg_get_serial_sequence("decision", "id")) if postgres else null()
    return (
        select(ReviewItem, Prediction, ReviewClaim, prior, reserved, *_row_versions(postgres))
        .outerjoin(Prediction, col(Prediction.id) == ReviewItem.prediction_id)
        .outerjoin(ReviewClaim, col(ReviewClaim.id) == latest_claim)
        .where(ReviewItem.id == bindparam("item_id", type_=ReviewItem.__table__.c.id.type))
        .with_for_update(of=ReviewItem)  # type: ignore[arg-type]
        .execution_options(populate_existing=True)
    )


def _row_versions(postgres: bool) -> tuple[Any, Any]:
    """The locked row's version and the one this statement's snapshot saw. On PostgreSQL a
    statement that waited for the lock sees the new row but an older snapshot in its
    subqueries (another reviewer's decision may be missing); unequal versions mean: read
    again, now that the lock is ours. SQLite serialises writers: nothing to compare."""
    if not postgres:
        return null(), null()
    seen = "(SELECT r.xmin::text FROM review_item AS r WHERE r.id = review_item.id)"
    return literal_column("review_item.xmin::text"), literal_column(seen)


def _usable_claim(
    session: Session, *, item: ReviewItem, user: User, claim: ReviewClaim | None
) -> ReviewClaim:
    if claim is not None and claim.status == "open":
        return claim
    # The lease ran out, but nobody else took the slot: let the reviewer finish.
    if claim is not None and item.status == "pending" and not _has_answered(session, item, user):
        claim.status = "open"
        return claim
    raise ReviewError("you do not hold this item any more (its lease ran out); take the next one")


def _opinions_needed(
    session: Session, prediction: Prediction | None, action: str, item: ReviewItem
) -> list[FeedbackEvent] | None:
    """The end users' opinions, loaded once when the correction or the example needs them."""
    if prediction is None or action in ("reject", "skip"):
        return None
    return opinions(session, prediction)


def _votes_with(
    session: Session, item: ReviewItem, prior: int, decision: Decision
) -> dict[int, Decision]:
    earlier = [] if not prior else list(_decisions_of(session, item.id))  # type: ignore[arg-type]
    return standing_votes([*earlier, decision])


def _write_at_once(
    session: Session,
    item: ReviewItem,
    user: User,
    claim: ReviewClaim,
    decision: Decision,
    *,
    settle: bool,
    votes: dict[int, Decision],
) -> None:
    """PostgreSQL: decision, audit row, claim and (when settling) the item in one statement."""
    claim_update = (
        update(ReviewClaim)
        .where(ReviewClaim.id == claim.id)
        .values(status=claim.status, decided_at=claim.decided_at)
        .cte("claim_done")
    )
    audit = insert(AuditLog).values(**_audit_values(item, user, decision)).cte("audit_row")
    statement = insert(Decision).values(**_columns(decision)).add_cte(claim_update, audit)
    if settle:
        _mark_settled(item, votes)
        values = {k: getattr(item, k) for k in SETTLED_COLUMNS}
        statement = statement.add_cte(
            update(ReviewItem).where(ReviewItem.id == item.id).values(**values).cte("settled")
        )
    with session.no_autoflush:  # the changes on claim and item are in this statement
        session.execute(statement)
    for obj in (claim, item):
        for name in SETTLED_COLUMNS if obj is item else ("status", "decided_at"):
            set_committed_value(obj, name, getattr(obj, name))
    make_transient_to_detached(decision)
    session.add(decision)


SETTLED_COLUMNS = (
    "status",
    "settled_at",
    "claimed_by",
    "lease_expires_at",
    "needs_adjudication",
    "updated_at",
)


def _columns(obj: Any) -> dict[str, Any]:
    return {c.name: getattr(obj, c.name) for c in obj.__table__.columns}


def _audit_values(item: ReviewItem, user: User, decision: Decision) -> dict[str, Any]:
    """The row ``record_audit`` writes for a decision (same shape, no extra round trip)."""
    return {
        "project_id": item.project_id,
        "actor": user.email[:200],
        "action": f"review.{decision.action}",
        "object_type": "review_item",
        "object_id": str(item.id),
        "before": None,
        "after": {"decision_id": decision.id, "value": decision.value, "batch_id": None},
        "created_at": decision.created_at,
    }


def _write_stepwise(
    session: Session,
    item: ReviewItem,
    user: User,
    claim: ReviewClaim,
    decision: Decision,
    *,
    settle: bool,
    votes: dict[int, Decision],
) -> None:
    session.add(decision)
    session.flush()
    _audit_decision(session, item, user, decision)
    session.add(claim)
    if settle:
        _mark_settled(item, votes)
        session.add(item)
    session.flush()


def _has_answered(session: Session, item: ReviewItem, user: User) -> bool:
    statement = select(ReviewClaim.id).where(
        ReviewClaim.review_item_id == item.id,
        ReviewClaim.user_id == user.id,
        col(ReviewClaim.status).in_(("decided", "skipped")),
    )
    return session.exec(statement).first() is not None


def resolve_target(
    session: Session,
    project: Project,
    prediction: Prediction | None,
    action: str,
    value: Any,
    *,
    events: list[FeedbackEvent] | None = None,
) -> Any:
    """The training target a decision stands for (None for reject and skip). ``events``:
    the prediction's opinions when the caller has loaded them already."""
    if action in ("reject", "skip"):
        return None
    if prediction is None:
        raise ReviewError("this item has no prediction to decide on")
    if action == "keep_model":
        return prediction.output
    if action == "accept_correction":
        correction = user_correction(session, prediction, events=events)
        if correction is None:
            raise ReviewError("no end user corrected this prediction; choose a label instead")
        return correction
    return validate_label(project, value)


def validate_label(project: Project, value: Any) -> Any:
    """A relabel value checked against the project's task type and label set."""
    if project.task_type == "text":
        if not isinstance(value, str) or not value.strip():
            raise ReviewError("value: type the corrected text")
        return value
    if project.task_type == "multilabel":
        chosen = value if isinstance(value, list) else [value]
        unknown = [v for v in chosen if v not in project.labels]
        if unknown or not chosen:
            raise ReviewError(f"value: unknown labels {unknown}; use {', '.join(project.labels)}")
        return sorted(set(chosen))
    if value not in project.labels:
        raise ReviewError(f"value: {value!r} is not a label; use {', '.join(project.labels)}")
    return value


def user_correction(
    session: Session, prediction: Prediction, *, events: list[FeedbackEvent] | None = None
) -> Any:
    """The correction most end users gave (latest opinion per user counts once)."""
    latest: dict[str, FeedbackEvent] = {}
    for event in opinions(session, prediction) if events is None else events:
        latest[event.end_user or f"anon-{event.id}"] = event
    values = [e.value for e in latest.values() if e.kind == "correct" and e.value is not None]
    if not values:
        return None
    counts = Counter(_label_key(v) for v in values)
    best = counts.most_common(1)[0][0]
    return next(v for v in reversed(values) if _label_key(v) == best)


def opinions(session: Session, prediction: Prediction) -> list[FeedbackEvent]:
    """End-user opinions (not views) on a prediction, oldest first."""
    statement = (
        select(FeedbackEvent)
        .where(
            FeedbackEvent.prediction_id == prediction.id,
            col(FeedbackEvent.kind).in_(OPINION_KINDS),
        )
        .order_by(col(FeedbackEvent.received_at), col(FeedbackEvent.id))
    )
    return list(session.exec(statement))


def _record(
    session: Session,
    item: ReviewItem,
    user: User,
    action: str,
    target: Any,
    duration_ms: int | None,
    batch_id: int | None = None,
) -> Decision:
    decision = Decision(
        review_item_id=item.id,  # type: ignore[arg-type]
        reviewer_id=user.id,
        action=action,
        value=target,
        duration_ms=_clamp_duration(duration_ms),
        batch_id=batch_id,
    )
    session.add(decision)
    session.flush()
    _audit_decision(session, item, user, decision)
    return decision


def _audit_decision(session: Session, item: ReviewItem, user: User, decision: Decision) -> None:
    record_audit(
        session,
        actor=user.email,
        action=f"review.{decision.action}",
        object_type="review_item",
        object_id=item.id,
        project_id=item.project_id,
        after={"decision_id": decision.id, "value": decision.value, "batch_id": decision.batch_id},
    )


def _clamp_duration(duration_ms: int | None) -> int | None:
    if duration_ms is None:
        return None
    return max(0, min(int(duration_ms), 24 * 3600 * 1000))


def _after_decision(session: Session, item: ReviewItem, project: Project) -> None:
    if item.reason == "gold":
        return
    votes = effective_votes(session, item.id)  # type: ignore[arg-type]
    if len(votes) >= item.required_reviews:
        _settle(session, item, project, votes)
    else:
        _refresh_status(session, [item.id])  # type: ignore[list-item]


def effective_votes(session: Session, item_id: int) -> dict[int, Decision]:
    """Each reviewer's standing decision on the item (undone decisions and skips removed)."""
    return standing_votes(list(_decisions_of(session, item_id)))


def _decisions_of(session: Session, item_id: int) -> Any:
    return session.exec(
        select(Decision).where(Decision.review_item_id == item_id).order_by(col(Decision.id))
    )


def standing_votes(decisions: list[Decision]) -> dict[int, Decision]:
    """Latest non-undone deciding action per reviewer, from decisions in id order."""
    undone = {d.undoes_id for d in decisions if d.action == "undo"}
    votes: dict[int, Decision] = {}
    for d in decisions:
        if d.id in undone or d.action == "undo" or d.reviewer_id is None:
            continue
        if d.action == "skip":
            votes.pop(d.reviewer_id, None)
        else:
            votes[d.reviewer_id] = d
    return votes


def _label_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def vote_label(decision: Decision) -> str:
    """What agreement compares: rejects agree with rejects, labels with equal labels."""
    return "∅reject" if decision.action == "reject" else _label_key(decision.value)


def _settle(
    session: Session, item: ReviewItem, project: Project, votes: dict[int, Decision]
) -> None:
    _mark_settled(item, votes)
    session.add(item)
    session.flush()
    _write_settled(session, item, votes, None)


def _mark_settled(item: ReviewItem, votes: dict[int, Decision]) -> None:
    now = utcnow()
    item.status = "done"
    item.settled_at = now
    item.claimed_by = None
    item.lease_expires_at = None
    item.needs_adjudication = len({vote_label(d) for d in votes.values()}) > 1
    item.updated_at = now


def _write_settled(
    session: Session,
    item: ReviewItem,
    votes: dict[int, Decision],
    events: list[FeedbackEvent] | None,
) -> None:
    """Unanimous: write the example; a disagreement waits for an admin."""
    if not item.needs_adjudication:
        chosen = next(iter(votes.values()))
        agreement = 1.0 if len(votes) > 1 else None
        write_example(session, item, chosen, list(votes.values()), agreement, events=events)


def write_example(
    session: Session,
    item: ReviewItem,
    chosen: Decision,
    decisions: list[Decision],
    agreement: float | None,
    *,
    events: list[FeedbackEvent] | None = None,
) -> Example | None:
    """The training row a settled item stands for; a reject writes none."""
    if chosen.action == "reject" or item.prediction_id is None:
        return None
    prediction = session.get(Prediction, item.prediction_id)
    if events is None:
        events = opinions(session, prediction)  # type: ignore[arg-type]
    event_ids = [e.id for e in events]
    example = upsert_example(
        session,
        prediction=prediction,  # type: ignore[arg-type]
        target=chosen.value,
        source="reviewed",
        provenance={"decision_ids": sorted(d.id for d in decisions), "event_ids": event_ids},
        agreement=agreement,
    )
    return example


# ---------------------------------------------------------------- clusters


def apply_to_cluster(
    session: Session, *, origin: Decision, item: ReviewItem, prediction: Prediction, user: User
) -> int:
    """Apply ``origin``'s target to the near-duplicates of ``prediction``. Returns how many
    items were decided; predictions without an open item and without an example get one."""
    if prediction.cluster_id is None:
        return 0
    origin.batch_id = origin.id
    session.add(origin)
    siblings = _cluster_predictions(session, prediction)
    open_items = _open_items_for(session, [p.id for p in siblings])  # type: ignore[misc]
    decided = sum(
        _decide_sibling(session, sibling, origin, user)
        for sibling in open_items
        if sibling.id != item.id
    )
    covered = {i.prediction_id for i in open_items} | {prediction.id}
    for sibling_prediction in siblings:
        if sibling_prediction.id not in covered and not _has_example(session, sibling_prediction):
            _cluster_example(session, sibling_prediction, origin)
    return decided


def _cluster_predictions(session: Session, prediction: Prediction) -> list[Prediction]:
    statement = (
        select(Prediction)
        .where(
            Prediction.project_id == prediction.project_id,
            Prediction.cluster_id == prediction.cluster_id,
        )
        .order_by(col(Prediction.id))
        .limit(CLUSTER_LIMIT)
    )
    return list(session.exec(statement))


def _open_items_for(session: Session, prediction_ids: list[int]) -> list[ReviewItem]:
    statement = (
        select(ReviewItem)
        .where(
            col(ReviewItem.prediction_id).in_(prediction_ids),
            col(ReviewItem.status).in_(OPEN_STATUSES),
            ReviewItem.reason != "gold",
        )
        .order_by(col(ReviewItem.id))
        .with_for_update(skip_locked=True)
    )
    return list(session.exec(statement.execution_options(populate_existing=True)))


def _decide_sibling(session: Session, item: ReviewItem, origin: Decision, user: User) -> int:
    """Count the reviewer's cluster decision on a sibling if they may hold one of its slots."""
    mine = session.exec(
        select(ReviewClaim).where(
            ReviewClaim.review_item_id == item.id,
            ReviewClaim.user_id == user.id,
            col(ReviewClaim.status).in_(HOLDING_CLAIM_STATUSES + ("skipped",)),
        )
    ).first()
    if mine is not None and mine.status != "open":
        return 0
    if mine is None:
        if item.status != "pending":
            return 0  # all its slots are held by other reviewers
        mine = _take(session, item=item, user=user, lease_seconds=60)
    action = "reject" if origin.action == "reject" else "relabel"
    _record(session, item, user, action, origin.value, None, batch_id=origin.id)
    mine.status = "decided"
    mine.decided_at = utcnow()
    session.add(mine)
    session.flush()
    project = session.get(Project, item.project_id)
    _after_decision(session, item, project)  # type: ignore[arg-type]
    return 1


def _has_example(session: Session, prediction: Prediction) -> bool:
    statement = select(Example.id).where(
        Example.prediction_id == prediction.id, col(Example.deleted_at).is_(None)
    )
    return session.exec(statement).first() is not None


def _cluster_example(session: Session, prediction: Prediction, origin: Decision) -> None:
    if origin.action == "reject":
        return
    upsert_example(
        session,
        prediction=prediction,
        target=origin.value,
        source="reviewed",
        provenance={"decision_ids": [origin.id], "event_ids": [], "cluster_of": origin.id},
        agreement=None,
    )


def _retract(session: Session, example: Example) -> None:
    """Tombstone the example (it leaves datasets; the stream announces it once)."""
    example.deleted_at = utcnow()
    _bump(session, example)


def _bump(session: Session, example: Example) -> None:
    example.revision = (example.revision or 0) + 1
    example.updated_at = utcnow()
    example.seq = next_seq(session, example.project_id)
    session.add(example)
    session.flush()
