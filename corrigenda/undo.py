"""Undo: a new decision naming the one it takes back; the item returns to the reviewer."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import exists
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, or_, select

from .audit import record_audit
from .decisions import (
    _retract,
)
from .models import Decision, Example, Prediction, Project, ReviewClaim, ReviewItem, User, utcnow
from .review import _lock_items, _refresh_status, release_open_claims


def undo_last(session: Session, *, project: Project, user: User) -> ReviewItem | None:
    """Undo the reviewer's most recent standing decision in the project (and its cluster
    batch). The item comes back to them; whatever they held open goes back to the queue."""
    decision = _last_undoable(session, project=project, user=user)
    if decision is None:
        return None
    release_open_claims(session, project=project, user=user)
    batch = _batch_of(session, decision)
    for undone in batch:
        _undo_one(session, undone, user, reopen=undone.id == decision.id)
    return session.get(ReviewItem, decision.review_item_id)


def _last_undoable(session: Session, *, project: Project, user: User) -> Decision | None:
    undo = aliased(Decision)
    statement = (
        select(Decision)
        .join(ReviewItem, col(ReviewItem.id) == Decision.review_item_id)
        .where(
            ReviewItem.project_id == project.id,
            Decision.reviewer_id == user.id,
            Decision.action != "undo",
            # a cluster batch is undone through its first decision
            or_(col(Decision.batch_id).is_(None), Decision.batch_id == Decision.id),
            ~exists(select(undo.id).where(undo.undoes_id == Decision.id)),
        )
        .order_by(col(Decision.id).desc())
        .limit(1)
    )
    return session.exec(statement).first()


def _batch_of(session: Session, decision: Decision) -> list[Decision]:
    if decision.batch_id is None:
        return [decision]
    statement = select(Decision).where(
        Decision.batch_id == decision.batch_id, Decision.action != "undo"
    )
    return sorted(session.exec(statement), key=lambda d: d.id or 0)


def _undo_one(session: Session, decision: Decision, user: User, *, reopen: bool) -> None:
    (item,) = _lock_items(session, [decision.review_item_id])
    undo = Decision(
        review_item_id=item.id,  # type: ignore[arg-type]
        reviewer_id=user.id,
        action="undo",
        undoes_id=decision.id,
    )
    session.add(undo)
    session.flush()
    record_audit(
        session,
        actor=user.email,
        action="review.undo",
        object_type="review_item",
        object_id=item.id,
        project_id=item.project_id,
        before={"decision_id": decision.id, "action": decision.action, "value": decision.value},
    )
    if item.status == "done":
        _unsettle(session, item, decision)
    _reopen_claim(session, item, user, reopen=reopen)
    _forget_cluster_examples(session, item, decision)


def _unsettle(session: Session, item: ReviewItem, decision: Decision) -> None:
    item.status = "claimed"
    item.settled_at = None
    item.needs_adjudication = False
    session.add(item)
    example = session.exec(
        select(Example).where(
            Example.prediction_id == item.prediction_id, col(Example.deleted_at).is_(None)
        )
    ).first()
    if example is not None and decision.id in example.provenance.get("decision_ids", []):
        _retract(session, example)


def _reopen_claim(session: Session, item: ReviewItem, user: User, *, reopen: bool) -> None:
    claim = session.exec(
        select(ReviewClaim)
        .where(
            ReviewClaim.review_item_id == item.id,
            ReviewClaim.user_id == user.id,
            col(ReviewClaim.status).in_(("decided", "skipped")),
        )
        .order_by(col(ReviewClaim.id).desc())
    ).first()
    if claim is not None:
        holding = claim.status == "decided" or item.status == "pending"
        claim.status = "open" if reopen and holding else "expired"
        claim.decided_at = None
        claim.lease_expires_at = utcnow() + timedelta(minutes=5)
        session.add(claim)
        session.flush()
    _refresh_status(session, [item.id])  # type: ignore[list-item]


def _forget_cluster_examples(session: Session, item: ReviewItem, decision: Decision) -> None:
    prediction = session.get(Prediction, item.prediction_id) if item.prediction_id else None
    if decision.batch_id != decision.id or prediction is None or prediction.cluster_id is None:
        return
    statement = select(Example).where(
        Example.project_id == item.project_id,
        Example.cluster_id == prediction.cluster_id,
        col(Example.deleted_at).is_(None),
        Example.source == "reviewed",
    )
    for example in session.exec(statement):
        if example.provenance.get("cluster_of") == decision.id:
            _retract(session, example)
