"""The review queue: claiming items with a lease, deciding, undoing, settling.

Invariants, for every item with ``required_reviews`` N:

* at most N claims hold it (status ``open`` or ``decided``) — so it is never served to more
  than N people; each claimer first locks the item row (PostgreSQL ``FOR UPDATE SKIP
  LOCKED``; on SQLite the whole write transaction is serialised by ``BEGIN IMMEDIATE``);
* it settles (status ``done``) when N decisions are in: unanimous decisions write the
  Example, disagreements wait for an admin (``needs_adjudication``);
* decisions are append-only: undo is a new decision naming the one it undoes.

Gold items (reason ``gold``) never settle: every reviewer answers each one once, unaware.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import bindparam, case, cast, exists, func, insert, literal, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from .models import (
    Prediction,
    Project,
    ReviewClaim,
    ReviewItem,
    User,
    utcnow,
)
from .models.review import HOLDING_CLAIM_STATUSES, OPEN_STATUSES

OPINION_KINDS = ("accept", "reject", "correct", "flag")


class ReviewError(ValueError):
    """A review request that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class QueueFilter:
    """Which pending items a reviewer wants; empty fields match everything."""

    reason: str | None = None
    model_version: str | None = None
    predicted_label: str | None = None
    segment: dict[str, str] = field(default_factory=dict)

    def as_query(self) -> dict[str, str]:
        values = {
            "reason": self.reason,
            "model_version": self.model_version,
            "label": self.predicted_label,
        }
        values.update({f"segment.{k}": v for k, v in self.segment.items()})
        return {k: v for k, v in values.items() if v}


# ---------------------------------------------------------------- claiming


def claim_next_item(
    session: Session,
    *,
    project: Project,
    user: User,
    filters: QueueFilter | None = None,
    lease_seconds: int = 300,
) -> ReviewItem | None:
    """The item this reviewer should look at now: the one they hold, else a fresh claim."""
    filters = filters or QueueFilter()
    gold = _wants_gold(project)
    if not gold and session.get_bind().dialect.name == "postgresql":
        # The hot path: one statement picks, claims and marks the item (nothing held yet).
        item = _claim_at_once(
            session, project=project, user=user, filters=filters, lease=lease_seconds
        )
        if item is not None:
            return item
    held = _held_item(session, project=project, user=user, filters=filters)
    if held is not None:
        renew_lease(session, item_id=held.id, user=user, lease_seconds=lease_seconds)  # type: ignore[arg-type]
        return held
    if filters != QueueFilter():
        # Held items outside the new filters go back; unfiltered, nothing can be held here.
        release_open_claims(session, project=project, user=user)
    item = _pick_gold(session, project=project, user=user) if gold else None
    if item is None:
        item = _pick_pending(session, project=project, user=user, filters=filters)
    if item is None:
        return None
    _take(session, item=item, user=user, lease_seconds=lease_seconds)
    return item


def _held_item(
    session: Session, *, project: Project, user: User, filters: QueueFilter
) -> ReviewItem | None:
    statement = (
        select(ReviewItem)
        .join(ReviewClaim, col(ReviewClaim.review_item_id) == ReviewItem.id)
        .where(
            ReviewClaim.user_id == user.id,
            ReviewClaim.project_id == project.id,
            ReviewClaim.status == "open",
        )
        .order_by(col(ReviewClaim.id).desc())
        .limit(1)
    )
    return session.exec(_filtered(statement, filters, session)).first()


def _pick_pending(
    session: Session, *, project: Project, user: User, filters: QueueFilter
) -> ReviewItem | None:
    statement = (
        select(ReviewItem)
        .where(
            ReviewItem.project_id == project.id,
            ReviewItem.status == "pending",
            ReviewItem.reason != "gold",
            ~exists(_claims_of(user.id, ("open", "decided", "skipped"))),
        )
        .order_by(col(ReviewItem.priority).desc(), col(ReviewItem.id))
        .limit(1)
        .with_for_update(skip_locked=True, of=ReviewItem)  # type: ignore[arg-type]
    )
    return session.exec(_filtered(statement, filters, session)).first()


def _claim_at_once(
    session: Session, *, project: Project, user: User, filters: QueueFilter, lease: int
) -> ReviewItem | None:
    """PostgreSQL: pick (``FOR UPDATE SKIP LOCKED``), insert the claim and mark the item in
    one statement. None when the reviewer holds an open item here or nothing is pending.

    The statement's snapshot predates the row lock, so it may miss a claim another reviewer
    committed meanwhile; the holder count is therefore only trusted for N = 1, and items
    with N > 1 are recounted by a second statement (which sees every committed claim).
    """
    now = utcnow()
    expires = now + timedelta(seconds=lease)
    statement = _claim_statement() if filters == QueueFilter() else _build_claim(filters, session)
    params = {"b_project_id": project.id, "b_user_id": user.id, "b_now": now, "b_expires": expires}
    item = session.scalars(statement, params).first()
    if item is not None and item.required_reviews > 1:
        _refresh_status(session, [item.id], holder=(user.id, expires))  # type: ignore[list-item]
    return item


@cache
def _claim_statement() -> Any:
    """The unfiltered claim statement, built once (building it costs more than running it)."""
    return _build_claim(QueueFilter(), None)


def _build_claim(filters: QueueFilter, session: Session | None) -> Any:
    project_id = bindparam("b_project_id", type_=ReviewClaim.__table__.c.project_id.type)
    user_id = bindparam("b_user_id", type_=ReviewClaim.__table__.c.user_id.type)
    now = bindparam("b_now", type_=ReviewClaim.__table__.c.created_at.type)
    expires = bindparam("b_expires", type_=ReviewClaim.__table__.c.lease_expires_at.type)
    holds_open = select(ReviewClaim.id).where(
        ReviewClaim.user_id == user_id,
        ReviewClaim.project_id == project_id,
        ReviewClaim.status == "open",
    )
    pending = _pending_for(project_id, user_id).where(~exists(holds_open))
    pick = _filtered(pending, filters, session).cte("pick")  # type: ignore[arg-type]
    claim = (
        insert(ReviewClaim)
        .from_select(
            ["review_item_id", "project_id", "user_id", "status", "lease_expires_at", "created_at"],
            select(pick.c.id, project_id, user_id, literal("open"), expires, now),
        )
        .returning(ReviewClaim.review_item_id)
        .cte("new_claim")
    )
    return (
        update(ReviewItem)
        .where(ReviewItem.id == claim.c.review_item_id)
        .values(
            status=case((ReviewItem.required_reviews <= 1, "claimed"), else_="pending"),
            claimed_by=user_id,
            lease_expires_at=expires,
            updated_at=now,
        )
        .returning(ReviewItem)
        .execution_options(synchronize_session=False, populate_existing=True)
    )


def _pending_for(project_id: Any, user_id: Any) -> Any:
    """Pending items of the project the reviewer has not held, best first, locked."""
    return (
        select(ReviewItem.id)
        .where(
            ReviewItem.project_id == project_id,
            ReviewItem.status == "pending",
            ReviewItem.reason != "gold",
            ~exists(_claims_of(user_id, ("open", "decided", "skipped"))),
        )
        .order_by(col(ReviewItem.priority).desc(), col(ReviewItem.id))
        .limit(1)
        .with_for_update(skip_locked=True, of=ReviewItem)  # type: ignore[arg-type]
    )


def _wants_gold(project: Project) -> bool:
    rate = float(project.policy.get("gold_rate", 0.1))
    return rate > 0 and random.random() < rate  # noqa: S311 - mixing, not security


def _pick_gold(session: Session, *, project: Project, user: User) -> ReviewItem | None:
    statement = (
        select(ReviewItem)
        .where(
            ReviewItem.project_id == project.id,
            ReviewItem.reason == "gold",
            ReviewItem.status == "pending",
            ~exists(_claims_of(user.id, ("open", "decided", "skipped"))),
        )
        .order_by(func.random())
        .limit(1)
    )
    return session.exec(statement).first()


def _claims_of(user_id: Any, statuses: tuple[str, ...]) -> Any:
    return select(ReviewClaim.id).where(
        ReviewClaim.review_item_id == ReviewItem.id,
        ReviewClaim.user_id == user_id,
        col(ReviewClaim.status).in_(statuses),
    )


def _filtered(statement: Any, filters: QueueFilter, session: Session) -> Any:
    if filters.reason:
        statement = statement.where(ReviewItem.reason == filters.reason)
    if not (filters.model_version or filters.predicted_label or filters.segment):
        return statement
    statement = statement.join(Prediction, col(Prediction.id) == ReviewItem.prediction_id)
    if filters.model_version:
        statement = statement.where(Prediction.model_version == filters.model_version)
    if filters.predicted_label:
        statement = statement.where(_output_is(session, filters.predicted_label))
    for key, value in filters.segment.items():
        statement = statement.where(col(Prediction.segment)[key].as_string() == value)
    return statement


def _output_is(session: Session, label: str) -> Any:
    """``prediction.output`` equals the JSON string ``label`` (dialects compare JSON apart)."""
    if session.get_bind().dialect.name == "sqlite":
        return func.json_extract(Prediction.output, "$") == label
    return col(Prediction.output) == cast(literal(json.dumps(label)), JSONB)


def _take(session: Session, *, item: ReviewItem, user: User, lease_seconds: int) -> ReviewClaim:
    lease = utcnow() + timedelta(seconds=lease_seconds)
    claim = ReviewClaim(
        review_item_id=item.id,  # type: ignore[arg-type]
        project_id=item.project_id,
        user_id=user.id,  # type: ignore[arg-type]
        lease_expires_at=lease,
    )
    session.add(claim)
    session.flush()
    if item.reason != "gold":
        _refresh_status(session, [item.id], holder=(user.id, lease))  # type: ignore[list-item]
    return claim


def _holding_count() -> Any:
    return (
        select(func.count())
        .select_from(ReviewClaim)
        .where(
            ReviewClaim.review_item_id == ReviewItem.id,
            col(ReviewClaim.status).in_(HOLDING_CLAIM_STATUSES),
        )
        .scalar_subquery()
    )


def _refresh_status(
    session: Session, item_ids: list[int], holder: tuple[int | None, datetime | None] = (None, None)
) -> None:
    """Recount holders of open items (rows already locked by the caller): full → claimed."""
    full = _holding_count() >= ReviewItem.required_reviews
    rows = session.execute(
        update(ReviewItem)
        .where(
            col(ReviewItem.id).in_(item_ids),
            col(ReviewItem.status).in_(OPEN_STATUSES),
            ReviewItem.reason != "gold",
        )
        .values(
            status=case((full, "claimed"), else_="pending"),
            claimed_by=holder[0],
            lease_expires_at=holder[1],
            updated_at=utcnow(),
        )
        .returning(ReviewItem.id, ReviewItem.status)
        .execution_options(synchronize_session=False)
    ).all()
    # Keep loaded objects truthful without another round trip.
    for item_id, status in rows:
        cached = session.identity_map.get(session.identity_key(ReviewItem, item_id))
        if cached is not None:
            for name, value in (("status", status), ("claimed_by", holder[0])):
                set_committed_value(cached, name, value)
            set_committed_value(cached, "lease_expires_at", holder[1])


def renew_lease(session: Session, *, item_id: int, user: User, lease_seconds: int = 300) -> bool:
    """Extend the reviewer's open claim on the item; False if they no longer hold it."""
    lease = utcnow() + timedelta(seconds=lease_seconds)
    result = session.execute(
        update(ReviewClaim)
        .where(
            ReviewClaim.review_item_id == item_id,
            ReviewClaim.user_id == user.id,
            ReviewClaim.status == "open",
        )
        .values(lease_expires_at=lease)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release_open_claims(session: Session, *, project: Project, user: User) -> int:
    """Give back every item the reviewer holds open in the project (they move on)."""
    claims = list(
        session.exec(
            select(ReviewClaim).where(
                ReviewClaim.user_id == user.id,
                ReviewClaim.project_id == project.id,
                ReviewClaim.status == "open",
            )
        )
    )
    return _expire_claims(session, claims)


def _expire_claims(session: Session, claims: list[ReviewClaim]) -> int:
    if not claims:
        return 0
    item_ids = sorted({c.review_item_id for c in claims})
    _lock_items(session, item_ids)
    for claim in claims:
        claim.status = "expired"
        session.add(claim)
    session.flush()
    _refresh_status(session, item_ids)
    return len(claims)


def _lock_items(session: Session, item_ids: list[int]) -> list[ReviewItem]:
    statement = (
        select(ReviewItem)
        .where(col(ReviewItem.id).in_(item_ids))
        .order_by(col(ReviewItem.id))
        .with_for_update()
    )
    return list(session.exec(statement.execution_options(populate_existing=True)))


def expire_leases(*, session: Session) -> int:
    """Put claims whose lease ran out back in the queue. Returns how many claims expired.

    Items someone is deciding right now are locked; they are skipped and retried next sweep.
    """
    now = utcnow()
    stale = select(ReviewClaim.review_item_id).where(
        ReviewClaim.status == "open", col(ReviewClaim.lease_expires_at) < now
    )
    locked = (
        select(ReviewItem.id)
        .where(col(ReviewItem.id).in_(stale))
        .order_by(col(ReviewItem.id))
        .with_for_update(skip_locked=True)
    )
    item_ids = list(session.exec(locked))
    if not item_ids:
        return 0
    result = session.execute(
        update(ReviewClaim)
        .where(
            col(ReviewClaim.review_item_id).in_(item_ids),
            ReviewClaim.status == "open",
            col(ReviewClaim.lease_expires_at) < now,
        )
        .values(status="expired")
        .execution_options(synchronize_session=False)
    )
    _refresh_status(session, item_ids)  # type: ignore[arg-type]
    return result.rowcount or 0  # type: ignore[attr-defined]


def pending_counts(session: Session, project_ids: list[int]) -> dict[int, int]:
    """Open (pending or claimed, not gold) items per project."""
    if not project_ids:
        return {}
    statement = (
        select(ReviewItem.project_id, func.count())
        .where(
            col(ReviewItem.project_id).in_(project_ids),
            col(ReviewItem.status).in_(OPEN_STATUSES),
            ReviewItem.reason != "gold",
        )
        .group_by(col(ReviewItem.project_id))
    )
    return {int(pid): int(n) for pid, n in session.exec(statement).all()}
