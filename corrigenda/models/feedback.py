"""Predictions a product logged, and the raw, append-only feedback on them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Float, Index, String, Text, UniqueConstraint, Uuid
from sqlmodel import Field, SQLModel

from .base import BigId, fk_field, id_field, json_field, one_of, time_field

EVENT_KINDS = ("view", "accept", "reject", "correct", "flag")
EVENT_SOURCES = ("widget", "api", "review")


class Prediction(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("project_id", "client_id", name="uq_prediction_project_client"),
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
    except for the processing bookkeeping columns (``error``, ``ignored_reason``); whether
    it still waits for processing is a ``PendingEvent`` row."""

    __tablename__ = "feedback_event"
    __table_args__ = (
        one_of("kind", EVENT_KINDS, "ck_feedback_event_kind"),
        one_of("source", EVENT_SOURCES, "ck_feedback_event_source"),
        Index("ix_feedback_event_prediction_user", "prediction_id", "end_user"),
    )

    id: int | None = id_field()
    event_id: uuid.UUID = Field(sa_column=Column(Uuid, unique=True, nullable=False))
    # No foreign key and no index of its own (as cluster.project_id): it is the prediction's
    # project, set by ingestion from the prediction it resolved in the key's project, and
    # project deletion cascades through prediction. Per ingested row the project key was
    # one more RI check and the index one more B-tree insert, and no query needs either:
    # erasure reaches events through the project's predictions.
    project_id: int = Field(sa_column=Column(BigId, nullable=False))
    prediction_id: int = fk_field("prediction.id", ondelete="CASCADE", index=False)
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
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Why a processed event did not count (e.g. "cap", "quarantined", "superseded").
    ignored_reason: str | None = Field(default=None, max_length=40)


class PendingEvent(SQLModel, table=True):
    """A feedback event not processed yet: the work queue, one narrow row per event.

    Ingestion inserts it with the event, in the same statement or transaction; processing
    deletes it when it claims the event (a batch that fails rolls back, so the row comes
    back); setting an event aside deletes it and replay inserts it again. An event is
    processed iff it has neither a pending row nor an error. Claiming and finishing thus
    touch this table only, not the wide event row with its four indexes.

    No foreign key (one more check per ingested event): a pending row whose event was
    deleted (erasure, a deleted project) is an orphan that the claim deletes and skips."""

    __tablename__ = "pending_event"

    id: int = Field(sa_column=Column(BigId, primary_key=True, autoincrement=False))
