"""Labeled examples and the immutable dataset versions cut from them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Float, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import BigId, fk_field, id_field, json_field, one_of, time_field

EXAMPLE_SOURCES = ("reviewed", "consensus", "implicit")
DATASET_STATUSES = ("pending", "building", "ready", "failed", "deleted")


class Example(SQLModel, table=True):
    """A training row. ``seq`` grows on every change so the stream can resume by cursor."""

    __table_args__ = (
        one_of("source", EXAMPLE_SOURCES, "ck_example_source"),
        UniqueConstraint("project_id", "prediction_id", name="uq_example_project_prediction"),
        Index("ix_example_project_seq", "project_id", "seq"),
    )

    id: int | None = id_field()
    project_id: int = fk_field("project.id", ondelete="CASCADE", index=False)
    prediction_id: int | None = fk_field(
        "prediction.id", ondelete="SET NULL", nullable=True, index=False
    )
    input: dict[str, Any] = json_field(default=dict, nullable=False)
    target: Any = json_field()
    model_output: Any = json_field()
    source: str = Field(max_length=12)
    weight: float = Field(default=1.0, sa_column=Column(Float, nullable=False))
    agreement: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    split: str | None = Field(default=None, max_length=12)
    cluster_id: int | None = Field(default=None, sa_column=Column(BigId, nullable=True))
    provenance: dict[str, Any] = json_field(default=dict, nullable=False)
    is_gold: bool = Field(default=False)
    revision: int = Field(default=1)
    seq: int = Field(default=0, sa_column=Column(BigId, nullable=False))
    deleted_at: datetime | None = time_field()
    created_at: datetime = time_field(nullable=False, default_now=True)
    updated_at: datetime = time_field(nullable=False, default_now=True)


class DatasetVersion(SQLModel, table=True):
    __tablename__ = "dataset_version"
    __table_args__ = (
        UniqueConstraint("project_id", "number", name="uq_dataset_version_number"),
        one_of("status", DATASET_STATUSES, "ck_dataset_version_status"),
    )

    id: int | None = id_field()
    project_id: int = fk_field("project.id", ondelete="CASCADE", index=False)
    number: int
    status: str = Field(default="pending", max_length=10)
    filter: dict[str, Any] = json_field(default=dict, nullable=False)
    formats: list[str] = json_field(default=list, nullable=False)
    progress: float = Field(default=0.0, sa_column=Column(Float, nullable=False))
    split_counts: dict[str, Any] = json_field(default=dict, nullable=False)
    manifest: dict[str, Any] | None = json_field()
    datasheet: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = time_field(nullable=False, default_now=True)
    # Set by the building worker as it goes; a stale one means the worker died.
    heartbeat_at: datetime | None = time_field()
    finished_at: datetime | None = time_field()


class AuditLog(SQLModel, table=True):
    """Who did what to which object, with the state before and after."""

    __tablename__ = "audit_log"

    id: int | None = id_field()
    project_id: int | None = fk_field("project.id", ondelete="SET NULL", nullable=True)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=100)
    object_type: str = Field(max_length=50)
    object_id: str | None = Field(default=None, max_length=100)
    before: dict[str, Any] | None = json_field()
    after: dict[str, Any] | None = json_field()
    created_at: datetime = time_field(nullable=False, default_now=True, index=True)
