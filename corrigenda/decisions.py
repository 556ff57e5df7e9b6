"""Decisions on review items: deciding, settling, cluster actions, undo, adjudication, gold.

Every function takes the session and flushes; the caller's transaction commits. Each one
locks the item rows it changes first (see :mod:`corrigenda.review` for the invariants).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sqlmodel import Session, col, select

from .audit import record_audit
from .examples import next_seq, upsert_example
from .models import (
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
from .review import ReviewError, _lock_items, _refresh_status, _take

DECIDING_ACTIONS = ("accept_correction", "keep_model", "relabel", "reject")
CLUSTER_LIMIT = 500
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
) -> Decision:
    """Record the reviewer's decision on an item they hold; settle it when N are in."""
    if action not in (*DECIDING_ACTIONS, "skip"):
        raise ReviewError(f"action must be one of {', '.join((*DECIDING_ACTIONS, 'skip'))}")
    (item,) = _lock_items(session, [item_id]) or [None]
    if item is None:
        raise ReviewError(f"review item {item_id} does not exist")
    claim = _open_claim(session, item=item, user=user)
    project = session.get(Project, item.project_id)
    prediction = session.get(Prediction, item.prediction_id) if item.prediction_id else None
    target = resolve_target(session, project, prediction, action, value)  # type: ignore[arg-type]
    decision = _record(session, item, user, action, target, duration_ms)
    claim.status = "skipped" if action == "skip" else "decided"
    claim.decided_at = utcnow()
    session.add(claim)
    session.flush()
    _after_decision(session, item, project)  # type: ignore[arg-type]
    if cluster and action in DECIDING_ACTIONS and prediction is not None:
        apply_to_cluster(session, origin=decision, item=item, prediction=prediction, user=user)
    return decision


def _open_claim(session: Session, *, item: ReviewItem, user: User) -> ReviewClaim:
    claim = session.exec(
        select(ReviewClaim)
        .where(
            ReviewClaim.review_item_id == item.id,
            ReviewClaim.user_id == user.id,
            col(ReviewClaim.status).in_(("open", "expired")),
        )
        .order_by(col(ReviewClaim.id).desc())
    ).first()
    if claim is not None and claim.status == "open":
        return claim
    # The lease ran out, but nobody else took the slot: let the reviewer finish.
    if claim is not None and item.status == "pending" and not _has_answered(session, item, user):
        claim.status = "open"
        return claim
    raise ReviewError("you do not hold this item any more (its lease ran out); take the next one")


def _has_answered(session: Session, item: ReviewItem, user: User) -> bool:
    statement = select(ReviewClaim.id).where(
        ReviewClaim.review_item_id == item.id,
        ReviewClaim.user_id == user.id,
        col(ReviewClaim.status).in_(("decided", "skipped")),
    )
    return session.exec(statement).first() is not None


def resolve_target(
    session: Session, project: Project, prediction: Prediction | None, action: str, value: Any
) -> Any:
    """The training target a decision stands for (None for reject and skip)."""
    if action in ("reject", "skip"):
        return None
    if prediction is None:
        raise ReviewError("this item has no prediction to decide on")
    if action == "keep_model":
        return prediction.output
    if action == "accept_correction":
        correction = user_correction(session, prediction)
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


def user_correction(session: Session, prediction: Prediction) -> Any:
    """The correction most end users gave (latest opinion per user counts once)."""
    latest: dict[str, FeedbackEvent] = {}
    for event in opinions(session, prediction):
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
    record_audit(
        session,
        actor=user.email,
        action=f"review.{action}",
        object_type="review_item",
        object_id=item.id,
        project_id=item.project_id,
        after={"decision_id": decision.id, "value": target, "batch_id": batch_id},
    )
    return decision


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
    decisions = list(
        session.exec(
            select(Decision).where(Decision.review_item_id == item_id).order_by(col(Decision.id))
        )
    )
    return standing_votes(decisions)


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
    labels = Counter(vote_label(d) for d in votes.values())
    item.status = "done"
    item.settled_at = utcnow()
    item.claimed_by = None
    item.lease_expires_at = None
    item.needs_adjudication = len(labels) > 1
    item.updated_at = utcnow()
    session.add(item)
    session.flush()
    if not item.needs_adjudication:
        chosen = next(iter(votes.values()))
        agreement = 1.0 if len(votes) > 1 else None
        write_example(session, item, chosen, list(votes.values()), agreement)


def write_example(
    session: Session,
    item: ReviewItem,
    chosen: Decision,
    decisions: list[Decision],
    agreement: float | None,
) -> Example | None:
    """The training row a settled item stands for; a reject writes none."""
    if chosen.action == "reject" or item.prediction_id is None:
        return None
    prediction = session.get(Prediction, item.prediction_id)
    event_ids = [e.id for e in opinions(session, prediction)]  # type: ignore[arg-type]
    example = upsert_example(
        session,
        prediction=prediction,  # type: ignore[arg-type]
        target=chosen.value,
        source="reviewed",
        provenance={"decision_ids": sorted(d.id for d in decisions), "event_ids": event_ids},
        agreement=agreement,
    )
    return _revived(session, example)


def _revived(session: Session, example: Example) -> Example:
    """A decision re-made after an undo brings a tombstoned example back, as a new revision."""
    if example.deleted_at is not None:
        example.deleted_at = None
        _bump(session, example)
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
    example = upsert_example(
        session,
        prediction=prediction,
        target=origin.value,
        source="reviewed",
        provenance={"decision_ids": [origin.id], "event_ids": [], "cluster_of": origin.id},
        agreement=None,
    )
    _revived(session, example)


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
