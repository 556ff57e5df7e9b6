"""What needs a human, and what the human decided."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Float, Index
from sqlmodel import Field, SQLModel

from .base import BigId, fk_field, id_field, json_field, one_of, time_field

REVIEW_REASONS = (
    "conflict",
    "single_correction",
    "low_agreement",
    "high_cost",
    "audit",
    "flagged",
    "gold",
)
REVIEW_STATUSES = ("pending", "claimed", "done", "skipped")
DECISION_ACTIONS = ("accept_correction", "keep_model", "relabel", "reject", "skip", "undo")
OPEN_STATUSES = ("pending", "claimed")


class ReviewItem(SQLModel, table=True):
    __tablename__ = "review_item"
    __table_args__ = (
        one_of("reason", REVIEW_REASONS, "ck_review_item_reason"),
        one_of("status", REVIEW_STATUSES, "ck_review_item_status"),
        # The claim query walks this index: highest priority first, oldest first among equals.
        Index(
            "ix_review_item_queue",
            "project_id",
            "status",
            Column("priority").desc(),
            "id",
        ),
        # One open item per prediction: the queue never holds duplicates.
        Index(
            "uq_review_item_open_prediction",
            "prediction_id",
            unique=True,
            postgresql_where=Column("status").in_(OPEN_STATUSES),
            sqlite_where=Column("status").in_(OPEN_STATUSES),
        ),
        # Every item of a prediction, whatever its status (metrics look up settled audits).
        Index("ix_review_item_prediction", "prediction_id"),
    )

    id: int | None = id_field()
    project_id: int = fk_field("project.id", ondelete="CASCADE", index=False)
    prediction_id: int | None = fk_field(
        "prediction.id", ondelete="CASCADE", nullable=True, index=False
    )
    cluster_id: int | None = Field(default=None, sa_column=Column(BigId, nullable=True))
    reason: str = Field(max_length=20)
    priority: float = Field(default=0.0, sa_column=Column(Float, nullable=False))
    status: str = Field(default="pending", max_length=10)
    required_reviews: int = Field(default=1)
    claimed_by: int | None = fk_field(
        "user_account.id", ondelete="SET NULL", nullable=True, index=False
    )
    lease_expires_at: datetime | None = time_field()
    # Settled with reviewers disagreeing: waits for an admin in the adjudication view.
    needs_adjudication: bool = Field(default=False)
    settled_at: datetime | None = time_field()
    created_at: datetime = time_field(nullable=False, default_now=True)
    updated_at: datetime = time_field(nullable=False, default_now=True)


CLAIM_STATUSES = ("open", "decided", "skipped", "expired")
HOLDING_CLAIM_STATUSES = ("open", "decided")


class ReviewClaim(SQLModel, table=True):
    """One reviewer's hold on one item. An item with ``required_reviews`` N is never held by
    more than N open-or-decided claims; claim rows are kept as history (expired, skipped)."""

    __tablename__ = "review_claim"
    __table_args__ = (
        one_of("status", CLAIM_STATUSES, "ck_review_claim_status"),
        Index("ix_review_claim_item_user", "review_item_id", "user_id"),
        Index("ix_review_claim_user_open", "user_id", "project_id", "status"),
        Index(
            "uq_review_claim_holding",
            "review_item_id",
            "user_id",
            unique=True,
            postgresql_where=Column("status").in_(HOLDING_CLAIM_STATUSES),
            sqlite_where=Column("status").in_(HOLDING_CLAIM_STATUSES),
        ),
    )

    id: int | None = id_field()
    review_item_id: int = fk_field("review_item.id", ondelete="CASCADE", index=False)
    project_id: int = fk_field("project.id", ondelete="CASCADE", index=False)
    user_id: int = fk_field("user_account.id", ondelete="CASCADE", index=False)
    status: str = Field(default="open", max_length=10)
    lease_expires_at: datetime | None = time_field()
    created_at: datetime = time_field(nullable=False, default_now=True)
    decided_at: datetime | None = time_field()


class Decision(SQLModel, table=True):
    """Append-only: undo is a new decision with action ``undo`` naming the one it undoes."""

    __table_args__ = (one_of("action", DECISION_ACTIONS, "ck_decision_action"),)

    id: int | None = id_field()
    review_item_id: int = fk_field("review_item.id", ondelete="CASCADE")
    reviewer_id: int | None = fk_field("user_account.id", ondelete="SET NULL", nullable=True)
    action: str = Field(max_length=20)
    value: Any = json_field()
    undoes_id: int | None = fk_field("decision.id", nullable=True)
    # A cluster action writes one decision per item; they share the first one's id here.
    batch_id: int | None = Field(default=None, sa_column=Column(BigId, nullable=True))
    duration_ms: int | None = None
    created_at: datetime = time_field(nullable=False, default_now=True)
