"""Processing state: content clusters, effective opinions, end-user standing.

Everything the workers derive from raw feedback lives here, so it survives restarts and is
shared by every worker process.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Float, Index, LargeBinary, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import BigId, fk_field, id_field, json_field, time_field


class Cluster(SQLModel, table=True):
    """Inputs that are the same after normalisation or near-duplicates of each other.

    ``signature`` is the MinHash signature of the first member (uint32 little-endian); new
    texts are verified against it, and its LSH band keys follow from its first values
    (``corrigenda.clustering.band_keys``; each worker process keeps the buckets in memory).
    ``touched_at`` is set when the cluster needs re-routing that processing did not do
    right away (a user's weight changed); the periodic re-aggregation routes the clusters
    touched after their ``aggregated_at``.
    """

    __table_args__ = (Index("ix_cluster_project_touched", "project_id", "touched_at"),)

    id: int | None = id_field()
    # No foreign key (as in ``cluster_content``): clusters are only created under the
    # project's processing lock for a project just read, and the per-row check took
    # 20-50 % of the bulk insert's time (docs/benchmarks.md).
    project_id: int = Field(sa_column=Column(BigId, nullable=False))
    content_hash: str = Field(sa_column=Column(String(64), nullable=False))
    signature: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    touched_at: datetime | None = time_field()
    aggregated_at: datetime | None = time_field()
    created_at: datetime = time_field(nullable=False, default_now=True)


class ClusterContent(SQLModel, table=True):
    """Exact level: one normalised content hash belongs to exactly one cluster."""

    __tablename__ = "cluster_content"

    project_id: int = Field(sa_column=Column(BigId, primary_key=True))
    content_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    cluster_id: int = Field(sa_column=Column(BigId, nullable=False))


class EffectiveOpinion(SQLModel, table=True):
    """One opinion per (prediction, end user): the latest by client time, then received time,
    then event id. The raw events stay in ``feedback_event`` for audit."""

    __tablename__ = "effective_opinion"
    __table_args__ = (
        UniqueConstraint("prediction_id", "end_user", name="uq_effective_opinion_user"),
        Index("ix_effective_opinion_cluster", "project_id", "cluster_id"),
    )

    id: int | None = id_field()
    project_id: int = fk_field("project.id", ondelete="CASCADE", index=False)
    # No foreign key to prediction: its check locked the prediction row for every new
    # opinion (~15 us each, the largest part of the opinion upsert). Processing writes
    # opinions only for predictions it has just read in the same project under the
    # project's lock, and predictions are only ever deleted with their project, whose key
    # above removes the opinions too.
    prediction_id: int = Field(sa_column=Column(BigId, nullable=False))
    cluster_id: int | None = Field(default=None, sa_column=Column(BigId, nullable=True))
    end_user: str = Field(max_length=200)
    event_id: int = Field(sa_column=Column(BigId, nullable=False))
    order_key: str = Field(max_length=120)
    kind: str = Field(max_length=10)
    value: Any = json_field()
    events_seen: int = Field(default=1)
    updated_at: datetime = time_field(nullable=False, default_now=True)


class EndUserStatus(SQLModel, table=True):
    """Per-project standing of one end user: rate-limit window, reliability, quarantine."""

    __tablename__ = "end_user_status"

    project_id: int = Field(sa_column=Column(BigId, primary_key=True))
    end_user: str = Field(sa_column=Column(String(200), primary_key=True))
    window_start: datetime | None = time_field()
    window_count: int = Field(default=0)
    capped_events: int = Field(default=0)
    settled: int = Field(default=0)
    disagreements: int = Field(default=0)
    reliability: float = Field(default=1.0, sa_column=Column(Float, nullable=False))
    quarantined_at: datetime | None = time_field()
    quarantine_reason: str | None = Field(default=None, max_length=300)
    updated_at: datetime = time_field(nullable=False, default_now=True)
