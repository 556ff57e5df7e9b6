"""Requests and answers of the dataset and example-stream endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..datasets.filters import DatasetFilter
from ..datasets.formats import FORMATS

DEFAULT_FORMATS = ["jsonl", "parquet"]


class DatasetCreate(BaseModel):
    """``POST /api/v1/projects/<slug>/datasets``."""

    model_config = ConfigDict(extra="forbid")

    filter: DatasetFilter = Field(default_factory=DatasetFilter)
    formats: list[str] = Field(
        default_factory=lambda: list(DEFAULT_FORMATS),
        min_length=1,
        max_length=len(FORMATS),
        description=f"any of {', '.join(FORMATS)}; chat and preference need a text project",
    )


class DatasetFile(BaseModel):
    path: str
    format: str
    split: str | None
    rows: int | None
    bytes: int
    sha256: str
    url: str


class DatasetPublic(BaseModel):
    number: int
    status: str
    progress: float
    formats: list[str]
    filter: dict[str, Any]
    split_counts: dict[str, int]
    created_at: datetime
    finished_at: datetime | None
    error: str | None
    superseded: dict[str, Any] | None = None
    url: str
    files: list[DatasetFile] | None = None
    manifest_url: str | None = None
    datasheet_url: str | None = None


class DatasetList(BaseModel):
    datasets: list[DatasetPublic]
