"""Labeled examples and the immutable dataset versions cut from them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Computed, Float, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import BigId, fk_field, id_field, json_field, one_of, time_field

EXAMPLE_SOURCES = ("reviewed", "consensus", "implicit")
DATASET_STATUSES = ("pending", "building", "ready", "failed", "deleted")


# --- what the dataset export reads, stored with the example ---------------------------------
# PostgreSQL computes these generated columns whenever the row is written (any path: ORM,
# bulk upsert, raw SQL), so they can never disagree with the columns they come from. The
# export (``corrigenda/datasets/pgcopy.py``) then copies them instead of hashing and
# formatting every row on every build. Only immutable functions are allowed here. On
# SQLite they are plain columns that stay NULL (``base.py``): nothing there reads them.

# ``splits.hash64`` of the split key, minus 2**63 so it fits a signed BIGINT in order.
SPLIT_HASH_SQL = (
    "('x' || encode(substring(sha256((project_id::text || ':' || "
    "coalesce('c' || cluster_id::text, 'e' || id::text))::bytea) from 1 for 8), 'hex'))"
    "::bit(64)::bigint # (-9223372036854775808)::bigint"
)


def json_float_sql(column: str) -> str:
    """A float column as JSON text the way ``orjson`` writes it (``1.0``, not ``1``;
    ``null`` for NaN and infinities, which JSON cannot hold: ``x - x`` is NaN for them)."""
    return (
        f"CASE WHEN {column} IS NULL THEN 'null' "
        f"WHEN {column} = trunc({column}) AND abs({column}) < 1e15 THEN {column}::text || '.0' "
        f"WHEN {column} - {column} = 0 THEN {column}::text ELSE 'null' END"
    )


def _iso(column: str) -> str:
    """ISO 8601 UTC with microseconds (what ``to_char`` gives the stream), from immutable
    parts: ``to_char`` and timestamp output depend on settings, so PostgreSQL calls them
    stable. ``extract(second …)`` is numeric with 6 decimals."""
    utc = f"timezone('UTC', {column})"
    parts = [
        f"lpad(extract({f} from {utc})::int::text, {n}, '0')"
        for f, n in (("year", 4), ("month", 2), ("day", 2), ("hour", 2), ("minute", 2))
    ]
    second = f"lpad(extract(second from {utc})::text, 9, '0')"
    return (
        f"{parts[0]} || '-' || {parts[1]} || '-' || {parts[2]} || 'T' || {parts[3]} || ':' || "
        f"{parts[4]} || ':' || {second} || '+00:00'"
    )


# The JSONL line's keys text, input, target, model_output (as ``Record.jsonl`` writes them).
EXPORT_BODY_SQL = (
    "',\"text\":' || CASE "
    "WHEN jsonb_typeof(input -> 'text') = 'string' THEN (input -> 'text')::text "
    "WHEN jsonb_typeof(input -> 'prompt') = 'string' THEN (input -> 'prompt')::text "
    "ELSE 'null' END || ',\"input\":' || input::text || "
    "',\"target\":' || coalesce(target::text, 'null') || "
    "',\"model_output\":' || coalesce(model_output::text, 'null')"
)
# Keys source, agreement, weight, is_gold (``source`` is one of EXAMPLE_SOURCES: plain
# words, nothing to escape). Also what the manifest counts of an example, so the export
# uses it as part of its statistics key.
EXPORT_TAIL_SQL = (
    '\',"source":"\' || source::text || \'","agreement":\' || '
    + json_float_sql("agreement")
    + " || ',\"weight\":' || "
    + json_float_sql("weight")
    + " || ',\"is_gold\":' || CASE WHEN is_gold THEN 'true' ELSE 'false' END"
)
# Keys created_at and updated_at, and the end of the line.
EXPORT_TIMES_SQL = (
    f'\',"created_at":"\' || {_iso("created_at")} || '
    f'\'","updated_at":"\' || {_iso("updated_at")} || \'"}}\''
)


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
    # Generated by PostgreSQL (see above); never set them.
    split_hash: int | None = Field(
        default=None, sa_column=Column(BigInteger, Computed(SPLIT_HASH_SQL, persisted=True))
    )
    export_body: str | None = Field(
        default=None, sa_column=Column(Text, Computed(EXPORT_BODY_SQL, persisted=True))
    )
    export_tail: str | None = Field(
        default=None, sa_column=Column(Text, Computed(EXPORT_TAIL_SQL, persisted=True))
    )
    export_times: str | None = Field(
        default=None, sa_column=Column(Text, Computed(EXPORT_TIMES_SQL, persisted=True))
    )


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
