"""Admin side of review: settling disagreements, and gold items every reviewer answers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from .audit import record_audit
from .decisions import (
    DECIDING_ACTIONS,
    _record,
    effective_votes,
    resolve_target,
    vote_label,
    write_example,
)
from .models import Decision, Example, Prediction, Project, ReviewItem, User, utcnow
from .models.review import OPEN_STATUSES
from .review import ReviewError, _lock_items


def adjudicate(
    session: Session, *, item_id: int, admin: User, action: str, value: Any = None
) -> Decision:
    """An admin settles a disagreement; the example records how many reviewers agreed."""
    if action not in DECIDING_ACTIONS:
        raise ReviewError(f"action must be one of {', '.join(DECIDING_ACTIONS)}")
    (item,) = _lock_items(session, [item_id]) or [None]
    if item is None or not item.needs_adjudication:
        raise ReviewError(f"review item {item_id} is not waiting for adjudication")
    project = session.get(Project, item.project_id)
    prediction = session.get(Prediction, item.prediction_id) if item.prediction_id else None
    target = resolve_target(session, project, prediction, action, value)  # type: ignore[arg-type]
    decision = _record(session, item, admin, action, target, None)
    votes = list(effective_votes(session, item.id).values())  # type: ignore[arg-type]
    agreeing = sum(vote_label(v) == vote_label(decision) for v in votes if v.id != decision.id)
    reviewers = [v for v in votes if v.id != decision.id]
    item.needs_adjudication = False
    session.add(item)
    write_example(session, item, decision, votes, agreeing / max(len(reviewers), 1))
    return decision


def mark_gold(session: Session, *, example: Example, actor: User) -> ReviewItem:
    """Make an example gold: a hidden item every reviewer answers once, scored on the target."""
    if example.prediction_id is None:
        raise ReviewError("only examples that come from a prediction can be gold")
    open_item = session.exec(
        select(ReviewItem).where(
            ReviewItem.prediction_id == example.prediction_id,
            col(ReviewItem.status).in_(OPEN_STATUSES),
        )
    ).first()
    if open_item is not None and open_item.reason != "gold":
        raise ReviewError("this prediction is still in review; settle it before making it gold")
    example.is_gold = True
    session.add(example)
    item = open_item or ReviewItem(
        project_id=example.project_id,
        prediction_id=example.prediction_id,
        cluster_id=example.cluster_id,
        reason="gold",
        required_reviews=0,
    )
    session.add(item)
    session.flush()
    record_audit(
        session,
        actor=actor.email,
        action="example.gold",
        object_type="example",
        object_id=example.id,
        project_id=example.project_id,
        after={"is_gold": True, "review_item_id": item.id},
    )
    return item


def unmark_gold(session: Session, *, example: Example, actor: User) -> None:
    example.is_gold = False
    session.add(example)
    session.execute(
        update(ReviewItem)
        .where(
            ReviewItem.prediction_id == example.prediction_id,
            ReviewItem.reason == "gold",
            col(ReviewItem.status).in_(OPEN_STATUSES),
        )
        .values(status="skipped", updated_at=utcnow())
    )
    record_audit(
        session,
        actor=actor.email,
        action="example.ungold",
        object_type="example",
        object_id=example.id,
        project_id=example.project_id,
        after={"is_gold": False},
    )
