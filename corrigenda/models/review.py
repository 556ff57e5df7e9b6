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
        Index("ix_review_item_queue", "project_id", "status", "priority"),
        # One open item per prediction: the queue never holds duplicates.
        Index(
            "uq_review_item_open_prediction",
            "prediction_id",
            unique=True,
            postgresql_where=Column("status").in_(OPEN_STATUSES),
            sqlite_where=Column("status").in_(OPEN_STATUSES),
        ),
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
    created_at: datetime = time_field(nullable=False, default_now=True)
    updated_at: datetime = time_field(nullable=False, default_now=True)


class Decision(SQLModel, table=True):
    """Append-only: undo is a new decision with action ``undo`` naming the one it undoes."""

    __table_args__ = (one_of("action", DECISION_ACTIONS, "ck_decision_action"),)

    id: int | None = id_field()
    review_item_id: int = fk_field("review_item.id", ondelete="CASCADE")
    reviewer_id: int | None = fk_field("user_account.id", ondelete="SET NULL", nullable=True)
    action: str = Field(max_length=20)
    value: Any = json_field()
    undoes_id: int | None = fk_field("decision.id", nullable=True, index=False)
    duration_ms: int | None = None
    created_at: datetime = time_field(nullable=False, default_now=True)
