"""Metric facts (one row per prediction), additive rollups, the rollup watermark and alerts.

The dashboard reads only ``metric_rollup``; the worker keeps it current from the facts, and
``corrigenda metrics rebuild`` recomputes both from the raw tables.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Column, Date, Float, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import BigId, fk_field, id_field, json_field, time_field

# Every additive counter a rollup row carries; a fact contributes to each of them.
ROLLUP_COUNTERS = (
    "predictions",
    "shown",
    "accepted",
    "overridden",
    "confident",
    "opinions",
    "audited",
    "audited_correct",
    "settled",
    "settled_correct",
    "cost_sum",
    "ttd_n",
    "shadow_pairs",
    "shadow_agree",
    "shadow_both_right",
    "shadow_prod_only",
    "shadow_cand_only",
)


def _counter() -> Any:
    return Field(default=0.0, sa_column=Column(Float, nullable=False, default=0.0))


class MetricFact(SQLModel, table=True):
    """What one prediction contributes to the metrics, as last computed."""

    __tablename__ = "metric_fact"
    # Both partial: most facts are unsettled production predictions that neither index
    # serves, and a rebuild writes a million facts — maintaining them for all would double
    # its write cost.
    __table_args__ = (
        Index(
            "ix_metric_fact_confusion",
            "project_id",
            "output_key",
            "label_key",
            postgresql_where=Column("label_key").isnot(None),
            sqlite_where=Column("label_key").isnot(None),
        ),
        Index(
            "ix_metric_fact_shadow_of",
            "project_id",
            "shadow_of",
            postgresql_where=Column("shadow_of").isnot(None),
            sqlite_where=Column("shadow_of").isnot(None),
        ),
    )

    id: int | None = id_field()
    project_id: int = fk_field("project.id", ondelete="CASCADE")
    prediction_id: int = Field(sa_column=Column(BigId, unique=True, nullable=False))
    # For a candidate model's shadow prediction: the client id of its production twin.
    shadow_of: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    model_version: str = Field(default="", max_length=100)
    day: date = Field(sa_column=Column(Date, nullable=False))
    segment: dict[str, str] = json_field(default=dict, nullable=False)
    output_key: str | None = Field(default=None, sa_column=Column(String(120), nullable=True))
    label_key: str | None = Field(default=None, sa_column=Column(String(120), nullable=True))
    contribution: dict[str, float] = json_field(default=dict, nullable=False)
    updated_at: datetime = time_field(nullable=False, default_now=True)


class MetricRollup(SQLModel, table=True):
    """Sums of fact contributions per project, model version, day and segment value.

    ``seg_key``/``seg_value`` are empty strings on the all-traffic row."""

    __tablename__ = "metric_rollup"
    __table_args__ = (
        UniqueConstraint(
            "project_id", "seg_key", "seg_value", "day", "model_version", name="uq_metric_rollup"
        ),
    )

    id: int | None = id_field()
    project_id: int = fk_field("project.id", ondelete="CASCADE", index=False)
    model_version: str = Field(default="", max_length=100)
    day: date = Field(sa_column=Column(Date, nullable=False))
    seg_key: str = Field(default="", max_length=100)
    seg_value: str = Field(default="", max_length=100)
    predictions: float = _counter()
    shown: float = _counter()
    accepted: float = _counter()
    overridden: float = _counter()
    confident: float = _counter()
    opinions: float = _counter()
    audited: float = _counter()
    audited_correct: float = _counter()
    settled: float = _counter()
    settled_correct: float = _counter()
    cost_sum: float = _counter()
    ttd_n: float = _counter()
    shadow_pairs: float = _counter()
    shadow_agree: float = _counter()
    shadow_both_right: float = _counter()
    shadow_prod_only: float = _counter()
    shadow_cand_only: float = _counter()
    ttd_hist: dict[str, float] = json_field(default=dict, nullable=False)
    confusion: dict[str, float] = json_field(default=dict, nullable=False)


class MetricWatermark(SQLModel, table=True):
    """How far the rollup worker has read. One row; locked while a round runs."""

    __tablename__ = "metric_watermark"

    id: int | None = id_field()
    name: str = Field(sa_column=Column(String(40), unique=True, nullable=False))
    last_event_id: int = Field(default=0, sa_column=Column(BigId, nullable=False, default=0))
    last_prediction_id: int = Field(default=0, sa_column=Column(BigId, nullable=False, default=0))
    # Id ranges skipped by a scan (transactions not committed yet, or ids never used):
    # [[low, high, first_seen_epoch], ...], rechecked until older than the settle window.
    event_gaps: list[list[float]] = json_field(default=list, nullable=False)
    prediction_gaps: list[list[float]] = json_field(default=list, nullable=False)
    example_seqs: dict[str, int] = json_field(default=dict, nullable=False)
    # Per project id: the last day the degradation checks have judged (each day once).
    alert_days: dict[str, str] = json_field(default=dict, nullable=False)
    updated_at: datetime = time_field(nullable=False, default_now=True)


class MetricAlert(SQLModel, table=True):
    """A significant degradation found by the alert checks; acknowledged by a user."""

    __tablename__ = "metric_alert"
    __table_args__ = (
        UniqueConstraint(
            "project_id", "kind", "model_version", "segment", "day", name="uq_metric_alert"
        ),
    )

    id: int | None = id_field()
    project_id: int = fk_field("project.id", ondelete="CASCADE")
    kind: str = Field(max_length=30)
    model_version: str = Field(default="", max_length=100)
    segment: str = Field(default="", max_length=200)
    day: date = Field(sa_column=Column(Date, nullable=False))
    observed: float = Field(default=0.0, sa_column=Column(Float, nullable=False))
    baseline: float = Field(default=0.0, sa_column=Column(Float, nullable=False))
    p_value: float = Field(default=1.0, sa_column=Column(Float, nullable=False))
    message: str = Field(default="", max_length=500)
    details: dict[str, Any] = json_field(default=dict, nullable=False)
    created_at: datetime = time_field(nullable=False, default_now=True)
    webhook_sent_at: datetime | None = time_field()
    webhook_error: str | None = Field(default=None, max_length=500)
    acknowledged_at: datetime | None = time_field()
    acknowledged_by: int | None = fk_field(
        "user_account.id", ondelete="SET NULL", nullable=True, index=False
    )
