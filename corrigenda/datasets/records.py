"""One example as the exporters see it, built from a raw stream/snapshot row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from ..examples import Cursor


def iso(value: Any) -> str | None:
    """A UTC ISO 8601 string from a driver value (datetime on PostgreSQL, text on SQLite)."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.endswith("+00:00") and value[10] == "T":
            return value  # already ISO UTC (PostgreSQL formats it in the query)
        if len(value) == 26 and value[10] == " ":
            return f"{value[:10]}T{value[11:]}+00:00"  # SQLite's UTC text
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat()
    moment = datetime.fromisoformat(str(value))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def load_json(raw: Any) -> Any:
    if raw is None:
        return None
    if isinstance(raw, str | bytes):
        return orjson.loads(raw)
    return raw


def raw_json(raw: Any) -> str:
    """JSON text of a column that arrives as text (or, from some drivers, decoded)."""
    if raw is None:
        return "null"
    if isinstance(raw, str):
        return raw
    return orjson.dumps(raw).decode()


class Record:
    """An example with its split; JSON columns are kept as text until someone needs them."""

    __slots__ = (
        "id",
        "seq",
        "revision",
        "deleted",
        "cluster_id",
        "source",
        "weight",
        "agreement",
        "is_gold",
        "input_json",
        "input",
        "target",
        "model_output",
        "created_at",
        "updated_at",
        "client_id",
        "model_version",
        "segment_json",
        "confidence",
        "split",
    )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Record:
        record = cls()
        (
            record.id,
            record.seq,
            record.revision,
            deleted_at,
            record.cluster_id,
            record.source,
            record.weight,
            record.agreement,
            is_gold,
            record.input_json,
            target,
            model_output,
            created_at,
            updated_at,
            record.client_id,
            record.model_version,
            segment,
            record.confidence,
        ) = row
        record.deleted = deleted_at is not None
        record.is_gold = bool(is_gold)
        record.input_json = raw_json(record.input_json)
        record.input = orjson.loads(record.input_json)
        record.target = load_json(target)
        record.model_output = load_json(model_output)
        record.segment_json = raw_json(segment) if segment is not None else "{}"
        record.created_at = iso(created_at)
        record.updated_at = iso(updated_at)
        record.split = None
        return record

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.seq, self.id)

    @property
    def text(self) -> str | None:
        """The input text (``input.text``, else ``input.prompt``), if the input has one."""
        for key in ("text", "prompt"):
            value = self.input.get(key) if isinstance(self.input, dict) else None
            if isinstance(value, str):
                return value
        return None

    @property
    def segment(self) -> dict[str, Any]:
        return orjson.loads(self.segment_json)

    def jsonl(self, **extra: Any) -> bytes:
        """The JSONL line (with newline) shared by the JSONL export and the stream."""
        row = {
            "id": self.id,
            "revision": self.revision,
            "split": self.split,
            "text": self.text,
            "input": orjson.Fragment(self.input_json),
            "target": self.target,
            "model_output": self.model_output,
            "model_version": self.model_version,
            "source": self.source,
            "agreement": self.agreement,
            "weight": self.weight,
            "is_gold": self.is_gold,
            "cluster_id": self.cluster_id,
            "segment": orjson.Fragment(self.segment_json),
            "client_id": self.client_id,
            "confidence": self.confidence,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            **extra,
        }
        return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)

    def tombstone(self) -> bytes:
        row = {
            "id": self.id,
            "revision": self.revision,
            "deleted": True,
            "cursor": str(self.cursor),
            "updated_at": self.updated_at,
        }
        return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
