"""Predictions a product logged, and the raw, append-only feedback on them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    ForeignKeyConstraint,
    Index,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlmodel import Field, SQLModel

from .base import BigId, fk_field, id_field, json_field, one_of, time_field

EVENT_KINDS = ("view", "accept", "reject", "correct", "flag")
EVENT_SOURCES = ("widget", "api", "review")


class Prediction(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("project_id", "client_id", name="uq_prediction_project_client"),
        # The target of feedback_event's (project_id, prediction_id) foreign key.
        UniqueConstraint("project_id", "id", name="uq_prediction_project_id"),
        Index("ix_prediction_project_cluster", "project_id", "cluster_id"),
        Index("ix_prediction_project_created", "project_id", "created_at"),
    )

    id: int | None = id_field()
    project_id: int = fk_field("project.id", ondelete="CASCADE", index=False)
    client_id: str = Field(max_length=200)
    model_version: str = Field(default="", max_length=100)
    input: dict[str, Any] = json_field(default=dict, nullable=False)
    output: Any = json_field()
    confidence: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    alternatives: list[dict[str, Any]] | None = json_field()
    segment: dict[str, Any] = json_field(default=dict, nullable=False)
    explanation: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    shadow_of: str | None = Field(default=None, max_length=200)
    content_hash: str | None = Field(default=None, sa_column=Column(String(64), index=True))
    cluster_id: int | None = Field(default=None, sa_column=Column(BigId, nullable=True))
    # Set once by processing: True if chosen for the audit sample (deterministic from the id).
    audit_sample: bool | None = Field(default=None)
    shown_at: datetime | None = time_field()
    created_at: datetime = time_field(nullable=False, default_now=True)


class FeedbackEvent(SQLModel, table=True):
    """One thing an end user (or an API caller) said about a prediction. Never updated
    except for the processing bookkeeping columns (``processed_at``, ``error``)."""

    __tablename__ = "feedback_event"
    __table_args__ = (
        one_of("kind", EVENT_KINDS, "ck_feedback_event_kind"),
        one_of("source", EVENT_SOURCES, "ck_feedback_event_source"),
        # One key for both ids: the event's prediction exists AND is in the event's project.
        # (Two single-column keys checked each row twice, and neither checked that they
        # agree; the checks were ~20 % of PostgreSQL's work per ingested batch.)
        ForeignKeyConstraint(
            ["project_id", "prediction_id"],
            ["prediction.project_id", "prediction.id"],
            name="fk_feedback_event_prediction",
            ondelete="CASCADE",
        ),
        Index(
            "ix_feedback_event_unprocessed",
            "id",
            postgresql_where=Column("processed_at").is_(None),
            sqlite_where=Column("processed_at").is_(None),
        ),
        Index("ix_feedback_event_prediction_user", "prediction_id", "end_user"),
    )

    id: int | None = id_field()
    event_id: uuid.UUID = Field(sa_column=Column(Uuid, unique=True, nullable=False))
    # No index of its own: every query on events by project also names predictions or ids
    # (erasure goes through the project's predictions), and a project-only index is one
    # more B-tree insert per event.
    project_id: int = Field(sa_column=Column(BigId, nullable=False))
    prediction_id: int = Field(sa_column=Column(BigId, nullable=False))
    kind: str = Field(max_length=10)
    value: Any = json_field()
    comment: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    end_user: str | None = Field(default=None, max_length=200)
    session_id: str | None = Field(default=None, max_length=200)
    source: str = Field(default="api", max_length=10)
    origin: str | None = Field(default=None, max_length=300)
    client_time: datetime | None = time_field()
    received_at: datetime = time_field(nullable=False, default_now=True)
    time_to_decision_ms: int | None = None
    processed_at: datetime | None = time_field()
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Why a processed event did not count (e.g. "cap", "quarantined", "superseded").
    ignored_reason: str | None = Field(default=None, max_length=40)
