"""Turning raw feedback events into review items and examples (walking-skeleton version).

The workers issue deepens this: dedupe, clustering, aggregation and policy routing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from .models import FeedbackEvent, ReviewItem, utcnow
from .models.review import OPEN_STATUSES

OVERRIDE_KINDS = ("reject", "correct", "flag")


@dataclass
class ProcessResult:
    processed: int = 0
    review_items: int = 0


def pending_event_ids(*, session: Session, limit: int) -> list[int]:
    """Ids of committed events not processed yet and not set aside, oldest first."""
    query = (
        select(FeedbackEvent.id)
        .where(col(FeedbackEvent.processed_at).is_(None), col(FeedbackEvent.error).is_(None))
        .order_by(col(FeedbackEvent.id))
        .limit(limit)
    )
    return [event_id for event_id in session.exec(query) if event_id is not None]


def process_events(session: Session, *, event_ids: list[int]) -> ProcessResult:
    """Process the given events; events already processed are skipped, so re-runs are no-ops."""
    result = ProcessResult()
    events = session.exec(
        select(FeedbackEvent)
        .where(col(FeedbackEvent.id).in_(event_ids), col(FeedbackEvent.processed_at).is_(None))
        .order_by(col(FeedbackEvent.id))
    ).all()
    for event in events:
        if event.kind in OVERRIDE_KINDS and _open_review_item(session, event) is None:
            session.add(_review_item_for(event))
            session.flush()
            result.review_items += 1
        event.processed_at = utcnow()
        result.processed += 1
    return result


def _open_review_item(session: Session, event: FeedbackEvent) -> ReviewItem | None:
    query = select(ReviewItem).where(
        ReviewItem.prediction_id == event.prediction_id, col(ReviewItem.status).in_(OPEN_STATUSES)
    )
    return session.exec(query).first()


def _review_item_for(event: FeedbackEvent) -> ReviewItem:
    reason = "flagged" if event.kind == "flag" else "single_correction"
    return ReviewItem(
        project_id=event.project_id, prediction_id=event.prediction_id, reason=reason, priority=1.0
    )
