"""Which examples a dataset version takes: the filter, as SQL where it can be and as a
Python check for what differs between databases (labels, segments, splits)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .records import Record

Source = Literal["reviewed", "consensus", "implicit"]


class DatasetFilter(BaseModel):
    """Every field is optional; an empty filter takes every live example."""

    model_config = ConfigDict(extra="forbid")

    created_after: datetime | None = Field(None, description="example created at or after")
    created_before: datetime | None = Field(None, description="example created before")
    model_versions: list[str] | None = Field(None, max_length=100)
    sources: list[Source] | None = None
    min_agreement: float | None = Field(None, ge=0.0, le=1.0)
    labels: list[str] | None = Field(None, max_length=1000, description="target has any of these")
    segments: dict[str, list[str]] | None = Field(
        None, description="segment attribute -> allowed values; all attributes must match"
    )
    splits: list[str] | None = Field(None, description="keep only these splits")
    include_gold: bool = True

    @field_validator("created_after", "created_before")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)


def _time_param(value: datetime, dialect: str) -> Any:
    # SQLite keeps timestamps as UTC text "YYYY-MM-DD HH:MM:SS.ffffff": compare as text.
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else utc


def sql_conditions(flt: DatasetFilter, dialect: str) -> tuple[list[str], dict[str, Any]]:
    """WHERE fragments (on ``e`` = example, ``p`` = prediction) and their parameters."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if flt.created_after is not None:
        where.append("e.created_at >= :created_after")
        params["created_after"] = _time_param(flt.created_after, dialect)
    if flt.created_before is not None:
        where.append("e.created_at < :created_before")
        params["created_before"] = _time_param(flt.created_before, dialect)
    if flt.min_agreement is not None:
        where.append("e.agreement >= :min_agreement")
        params["min_agreement"] = flt.min_agreement
    if not flt.include_gold:
        where.append("e.is_gold = :no_gold")
        params["no_gold"] = False
    for column, name, values in (
        ("p.model_version", "mv", flt.model_versions),
        ("e.source", "src", flt.sources),
    ):
        if values is not None:
            names = [f"{name}{i}" for i in range(len(values))]
            where.append(f"{column} IN ({', '.join(':' + n for n in names) or 'NULL'})")
            params.update(zip(names, values, strict=True))
    return where, params


def matches(flt: DatasetFilter, record: Record) -> bool:
    """The part of the filter applied in Python (after the split is known)."""
    if flt.splits is not None and record.split not in flt.splits:
        return False
    if flt.labels is not None:
        target = record.target if isinstance(record.target, list) else [record.target]
        if not set(flt.labels).intersection(t for t in target if isinstance(t, str)):
            return False
    if flt.segments:
        segment = record.segment
        for key, allowed in flt.segments.items():
            if str(segment.get(key)) not in allowed:
                return False
    return True
