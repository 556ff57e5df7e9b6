"""The export formats. Each writer streams records into one file per split (a split with no
rows gets no file: ``datasets.load_dataset`` fails on an empty split file) and refuses rows
its consumers would silently mis-train on, counting why."""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from .records import Record

FORMATS = ("jsonl", "csv", "parquet", "hf", "chat", "preference", "label_studio")
TEXT_ONLY_FORMATS = ("chat", "preference")
PARQUET_BATCH = 20_000


@dataclass
class ExportContext:
    task_type: str
    labels: list[str]
    project_slug: str
    number: int


@dataclass
class FormatWriter:
    """Base: lazily opened per-split binary files under ``root/<folder>``."""

    root: Path
    context: ExportContext
    folder: str = ""
    extension: str = ""
    rows: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    _files: dict[str, BinaryIO] = field(default_factory=dict)

    def name_for(self, split: str) -> str:
        return f"{self.folder}/{split}.{self.extension}"

    def file_for(self, split: str) -> BinaryIO:
        handle = self._files.get(split)
        if handle is None:
            path = self.root / self.name_for(split)
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = self._files[split] = path.open("wb", buffering=1 << 20)
            self.opened(split, handle)
        return handle

    def opened(self, split: str, handle: BinaryIO) -> None:
        pass

    def add(self, record: Record) -> None:
        line = self.encode(record)
        if line is not None:
            self.file_for(record.split or "train").write(line)
            self.rows[record.split or "train"] += 1

    def encode(self, record: Record) -> bytes | None:
        raise NotImplementedError

    def close(self) -> dict[str, dict[str, Any]]:
        """Finish every file; returns ``{name: {"split", "rows", "format"}}``."""
        for split, handle in self._files.items():
            self.closing(split, handle)
            handle.close()
        return {
            self.name_for(s): {"split": s, "rows": self.rows[s], "format": self.folder}
            for s in self._files
        }

    def closing(self, split: str, handle: BinaryIO) -> None:
        pass


class JsonlWriter(FormatWriter):
    def __init__(self, root: Path, context: ExportContext) -> None:
        super().__init__(root, context, "jsonl", "jsonl")

    def encode(self, record: Record) -> bytes:
        return record.jsonl()


CSV_COLUMNS = (
    "id",
    "split",
    "text",
    "label",
    "model_output",
    "model_version",
    "source",
    "agreement",
    "weight",
    "is_gold",
    "cluster_id",
    "revision",
    "created_at",
    "input",
)


def _cell(value: Any) -> Any:
    """Strings and numbers as they are; lists/objects as JSON; None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return value
    return orjson.dumps(value).decode()


class CsvWriter(FormatWriter):
    """RFC 4180: every text field quoted, quotes doubled, so an embedded comma, quote or
    newline can never shift a column (pandas would silently misread an extra field)."""

    def __init__(self, root: Path, context: ExportContext) -> None:
        super().__init__(root, context, "csv", "csv")
        self._buffer = io.StringIO()
        self._csv = csv.writer(
            self._buffer, quoting=csv.QUOTE_NONNUMERIC, doublequote=True, lineterminator="\r\n"
        )

    def opened(self, split: str, handle: BinaryIO) -> None:
        handle.write(self._line(CSV_COLUMNS))

    def _line(self, values: Any) -> bytes:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._csv.writerow(values)
        return self._buffer.getvalue().encode()

    def encode(self, record: Record) -> bytes:
        values = (
            record.id,
            record.split,
            record.text,
            record.target,
            record.model_output,
            record.model_version,
            record.source,
            record.agreement,
            record.weight,
            record.is_gold,
            record.cluster_id,
            record.revision,
            record.created_at,
            record.input_json,
        )
        return self._line([_cell(v) for v in values])


def label_type(task_type: str) -> pa.DataType:
    return pa.list_(pa.string()) if task_type == "multilabel" else pa.string()


def parquet_schema(task_type: str) -> pa.Schema:
    label = label_type(task_type)
    return pa.schema(
        [
            ("id", pa.int64()),
            ("split", pa.string()),
            ("text", pa.string()),
            ("label", label),
            ("model_output", label),
            ("model_version", pa.string()),
            ("source", pa.string()),
            ("agreement", pa.float64()),
            ("weight", pa.float64()),
            ("is_gold", pa.bool_()),
            ("cluster_id", pa.int64()),
            ("revision", pa.int64()),
            ("created_at", pa.string()),
            ("input", pa.string()),
            ("segment", pa.string()),
        ]
    )


def _as_label(value: Any, multilabel: bool) -> Any:
    """Fit a target/output into the label column's type; anything else as JSON text."""
    if value is None:
        return None
    if multilabel:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        return [value] if isinstance(value, str) else [orjson.dumps(value).decode()]
    return value if isinstance(value, str) else orjson.dumps(value).decode()


class ParquetWriter(FormatWriter):
    """Parquet (zstd), written in row groups of ``PARQUET_BATCH`` rows: memory stays bounded."""

    def __init__(self, root: Path, context: ExportContext, folder: str = "parquet") -> None:
        super().__init__(root, context, folder, "parquet")
        self.schema = parquet_schema(context.task_type)
        self._multilabel = context.task_type == "multilabel"
        self._rows: dict[str, list[tuple[Any, ...]]] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}

    def add(self, record: Record) -> None:
        split = record.split or "train"
        rows = self._rows.get(split)
        if rows is None:
            rows = self._rows[split] = []
        multilabel = self._multilabel
        rows.append(
            (
                record.id,
                split,
                record.text,
                _as_label(record.target, multilabel),
                _as_label(record.model_output, multilabel),
                record.model_version,
                record.source,
                record.agreement,
                record.weight,
                record.is_gold,
                record.cluster_id,
                record.revision,
                record.created_at,
                record.input_json,
                record.segment_json,
            )
        )
        self.rows[split] += 1
        if len(rows) >= PARQUET_BATCH:
            self._flush(split)

    def _flush(self, split: str) -> None:
        """Write the buffered rows as one row group (columns built once per batch)."""
        rows = self._rows[split]
        if not rows:
            return
        writer = self._writers.get(split)
        if writer is None:
            path = self.root / self.name_for(split)
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = self._writers[split] = pq.ParquetWriter(path, self.schema, compression="zstd")
        columns = zip(*rows, strict=True)
        arrays = [pa.array(c, type=f.type) for c, f in zip(columns, self.schema, strict=True)]
        writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        rows.clear()

    def close(self) -> dict[str, dict[str, Any]]:
        for split in list(self._rows):
            self._flush(split)
        for writer in self._writers.values():
            writer.close()
        return {
            self.name_for(s): {"split": s, "rows": self.rows[s], "format": self.folder}
            for s in self._writers
        }


class HfWriter(ParquetWriter):
    """A Hugging Face ``datasets`` folder: ``data/<split>-00000-of-00001.parquet`` plus a
    ``README.md`` whose YAML ``configs`` maps each non-empty split to its file, so
    ``load_dataset("<folder>")`` gives the splits as splits."""

    def __init__(self, root: Path, context: ExportContext) -> None:
        super().__init__(root, context, folder="hf")

    def name_for(self, split: str) -> str:
        return f"hf/data/{split}-00000-of-00001.parquet"

    def close(self) -> dict[str, dict[str, Any]]:
        files = super().close()
        card = self.root / "hf" / "README.md"
        card.parent.mkdir(parents=True, exist_ok=True)
        card.write_text(hf_card(self.context, sorted(files.values(), key=_split_order)))
        files["hf/README.md"] = {"split": None, "rows": None, "format": "hf"}
        return files


def _split_order(entry: dict[str, Any]) -> tuple[int, str]:
    order = {"train": 0, "validation": 1, "test": 2}
    return order.get(entry["split"], 3), entry["split"]


def hf_card(context: ExportContext, files: list[dict[str, Any]]) -> str:
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for entry in files:
        split = entry["split"]
        lines += [f"  - split: {split}", f"    path: data/{split}-00000-of-00001.parquet"]
    lines += ["---", "", f"# {context.project_slug} v{context.number}", ""]
    lines.append("Exported by Corrigenda. See `datasheet.md` next to this folder.")
    return "\n".join(lines) + "\n"


def _prompt(record: Record) -> str | None:
    text = record.text
    return text if text is not None and text.strip() else None


def _answer(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


class ChatWriter(FormatWriter):
    """TRL/OpenAI conversational SFT rows: ``{"messages": [system?, user, assistant]}``,
    with the human-corrected answer as the assistant turn."""

    def __init__(self, root: Path, context: ExportContext) -> None:
        super().__init__(root, context, "chat", "jsonl")

    def encode(self, record: Record) -> bytes | None:
        prompt, answer = _prompt(record), _answer(record.target)
        if prompt is None:
            self.refused["no_prompt"] += 1
            return None
        if answer is None:
            self.refused["no_answer"] += 1
            return None
        messages = _system(record) + [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": answer},
        ]
        return orjson.dumps({"messages": messages}, option=orjson.OPT_APPEND_NEWLINE)


def _system(record: Record) -> list[dict[str, str]]:
    system = record.input.get("system") if isinstance(record.input, dict) else None
    return [{"role": "system", "content": system}] if isinstance(system, str) and system else []


class PreferenceWriter(FormatWriter):
    """TRL conversational preference rows with an *explicit* prompt:
    ``{"prompt": [...], "chosen": [assistant: correction], "rejected": [assistant: model]}``.
    Rows where chosen equals rejected (or either is empty) are refused: TRL would accept
    them silently and learn nothing, or the wrong thing."""

    def __init__(self, root: Path, context: ExportContext) -> None:
        super().__init__(root, context, "preference", "jsonl")

    def encode(self, record: Record) -> bytes | None:
        prompt = _prompt(record)
        chosen, rejected = _answer(record.target), _answer(record.model_output)
        reason = _preference_problem(prompt, chosen, rejected)
        if reason is not None:
            self.refused[reason] += 1
            return None
        row = {
            "prompt": _system(record) + [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "id": record.id,
        }
        return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)


def _preference_problem(prompt: str | None, chosen: str | None, rejected: str | None) -> str | None:
    if prompt is None:
        return "no_prompt"
    if chosen is None:
        return "no_chosen"
    if rejected is None:
        return "no_rejected"
    if chosen.strip() == rejected.strip():
        return "chosen_equals_rejected"
    return None


class LabelStudioWriter(FormatWriter):
    """Label Studio task JSON (one array per split) plus the matching labeling config.

    Every task keeps its fields under ``data`` (without it Label Studio drops the
    annotations while answering 201) and no ``completed_by`` (an unknown user id fails the
    whole import)."""

    def __init__(self, root: Path, context: ExportContext) -> None:
        super().__init__(root, context, "label_studio", "json")

    def opened(self, split: str, handle: BinaryIO) -> None:
        handle.write(b"[\n")

    def add(self, record: Record) -> None:
        split = record.split or "train"
        handle = self.file_for(split)
        if self.rows[split]:
            handle.write(b",\n")
        handle.write(orjson.dumps(label_studio_task(record, self.context.task_type)))
        self.rows[split] += 1

    def closing(self, split: str, handle: BinaryIO) -> None:
        handle.write(b"\n]\n")

    def close(self) -> dict[str, dict[str, Any]]:
        files = super().close()
        if files:
            config = self.root / "label_studio" / "config.xml"
            config.write_text(label_studio_config(self.context))
            files["label_studio/config.xml"] = {"split": None, "rows": None, "format": self.folder}
        return files


def _ls_result(task_type: str, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if task_type == "text":
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        return [
            {
                "from_name": "answer",
                "to_name": "text",
                "type": "textarea",
                "value": {"text": [text]},
            }
        ]
    choices = value if isinstance(value, list) else [value]
    choices = [c if isinstance(c, str) else orjson.dumps(c).decode() for c in choices]
    result = {"from_name": "label", "to_name": "text", "type": "choices"}
    return [{**result, "value": {"choices": choices}}]


def label_studio_task(record: Record, task_type: str) -> dict[str, Any]:
    data = dict(record.input) if isinstance(record.input, dict) else {}
    if not isinstance(data.get("text"), str):
        data["text"] = record.text if record.text is not None else record.input_json
    data.update(corrigenda_id=record.id, split=record.split)
    task: dict[str, Any] = {
        "data": data,
        "annotations": [
            {"result": _ls_result(task_type, record.target), "ground_truth": record.is_gold}
        ],
    }
    if record.model_output is not None:
        prediction: dict[str, Any] = {
            "model_version": record.model_version or "",
            "result": _ls_result(task_type, record.model_output),
        }
        if record.confidence is not None:
            prediction["score"] = record.confidence
        task["predictions"] = [prediction]
    return task


def label_studio_config(context: ExportContext) -> str:
    if context.task_type == "text":
        control = '  <TextArea name="answer" toName="text"/>'
    else:
        choice = "multiple" if context.task_type == "multilabel" else "single"
        options = "\n".join(f'    <Choice value="{_xml(label)}"/>' for label in context.labels)
        opening = f'  <Choices name="label" toName="text" choice="{choice}">'
        control = f"{opening}\n{options}\n  </Choices>"
    return f'<View>\n  <Text name="text" value="$text"/>\n{control}\n</View>\n'


def _xml(value: str) -> str:
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


WRITERS: dict[str, type[FormatWriter]] = {
    "jsonl": JsonlWriter,
    "csv": CsvWriter,
    "parquet": ParquetWriter,
    "hf": HfWriter,
    "chat": ChatWriter,
    "preference": PreferenceWriter,
    "label_studio": LabelStudioWriter,
}
