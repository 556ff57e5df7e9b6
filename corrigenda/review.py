"""The review queue: claiming items with a lease and recording decisions."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col

from .models import ReviewItem, utcnow


def expire_leases(*, session: Session) -> int:
    """Put claimed items whose lease has run out back in the queue. Returns how many."""
    statement = (
        update(ReviewItem)
        .where(col(ReviewItem.status) == "claimed", col(ReviewItem.lease_expires_at) < utcnow())
        .values(status="pending", claimed_by=None, lease_expires_at=None)
    )
    return session.execute(statement).rowcount or 0
