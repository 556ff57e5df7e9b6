"""The PostgreSQL fast path: the database builds each exported row, Python only routes,
writes and counts.

Reading typed columns through the driver costs about twice a raw ``COPY`` by itself, and
building a Python object per row several times more. Here PostgreSQL assembles either the
finished JSONL line (read by binary ``COPY``: no escaping on either side) or the typed
Parquet columns, read as Arrow record batches (``build.ArrowReader``: ADBC parses the
binary ``COPY`` in C++, so no Python runs per Parquet row). Most of the line is
stored with the example when it is written (generated columns, ``models/dataset.py``):
the split hash and the JSON of the example's own fields; the export adds the prediction's
fields, the id, revision and cluster, and compares the hash with the project's ratios
(``Splitter.sql_stored_position``).

Each JSONL row also carries a *statistics key*: the split's position as ``A`` + index, the
example's stored source/agreement/weight/gold fragment, its raw agreement, the model
version and the target, separated by ``\x1c`` (JSON text never holds a raw control
character: PostgreSQL escapes them); ``\x1d`` ends it in a JSONL row. Python counts the
keys (few distinct ones) and folds them into the manifest's statistics with the same rules
as the row-by-row path. Per JSONL row Python does a find, a dict increment and a write.
A Parquet pass that counts groups its columns by the same fields instead
(building the key cost the database more than grouping costs pyarrow).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..models.dataset import json_float_sql
from .filters import DatasetFilter
from .formats import (
    PARQUET_BATCH,
    ExportContext,
    _as_label,
    _split_order,
    hf_card,
    parquet_schema,
)
from .manifest import BuildStats
from .splits import Splitter

MAX_SPLITS = 60  # positions are single printable bytes after "A"

json_float = json_float_sql  # a float column as JSON text the way ``orjson`` writes it


def json_text(column: str) -> str:
    return f"coalesce(to_json({column})::text, 'null')"


def jsonl_args(split: str) -> list[str]:
    """The JSONL line of ``Record.jsonl`` (same keys, same order, same values) as the
    arguments of one SQL ``concat`` (one allocation per row; a chain of ``||`` copies the
    growing line at every step). ``split`` is SQL for the split's JSON text (the fast path
    passes a ``\\x1d`` mark where Python writes the name). The example's own fields come
    stored (``export_body``, ``export_tail``, ``export_times``)."""
    return [
        "'{\"id\":'",
        "e.id",
        "',\"revision\":'",
        "e.revision",
        "',\"split\":'",
        split,
        "e.export_body",  # text, input, target, model_output
        "',\"model_version\":'",
        json_text("p.model_version"),
        "e.export_tail",  # source, agreement, weight, is_gold
        "',\"cluster_id\":'",
        "coalesce(e.cluster_id::text, 'null')",
        "',\"segment\":'",
        "coalesce(p.segment::text, '{}')",
        "',\"client_id\":'",
        json_text("p.client_id"),
        "',\"confidence\":'",
        json_float("p.confidence"),
        "e.export_times",  # created_at, updated_at and the closing brace
    ]


def supports(splitter: Splitter) -> bool:
    return len(splitter.names) <= MAX_SPLITS


def filter_conditions(flt: DatasetFilter) -> tuple[list[str], dict[str, Any]]:
    """The filter's Python-side checks (labels, segments) as PostgreSQL conditions.

    Labels: ``?|`` matches a string target or a string element of an array target.
    Segments compare like ``str(value)`` in Python for strings, booleans, null and missing.
    The ``splits`` check is applied by the caller on the split position."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if flt.labels is not None:
        where.append("jsonb_typeof(e.target) IN ('string', 'array') AND e.target ?| :labels")
        params["labels"] = list(flt.labels)
    for index, (key, allowed) in enumerate((flt.segments or {}).items()):
        value = f"(p.segment -> :seg_key{index})"
        text = (
            f"CASE jsonb_typeof({value}) WHEN 'boolean' THEN initcap({value}::text) "
            f"WHEN 'string' THEN {value} #>> '{{}}' WHEN 'number' THEN {value}::text "
            f"WHEN 'null' THEN 'None' ELSE {value}::text END"
        )
        where.append(f"coalesce({text}, 'None') = ANY(:seg_values{index})")
        params[f"seg_key{index}"], params[f"seg_values{index}"] = key, list(allowed)
    return where, params


# --- statistics from keys ------------------------------------------------------------------

FIELD, END = "\x1c", "\x1d"
FOLD_AT = 50_000  # distinct keys held before folding them into BuildStats (bounded memory)


def stats_args(position: str, count_labels: bool) -> list[str]:
    """What the manifest counts about a row (see module docstring), as ``concat`` arguments."""
    parts = [
        f"chr(65 + {position})",
        "e.export_tail",
        "e.agreement",  # NaN stays NaN here (the JSON fragment says null)
        json_text("coalesce(p.model_version, '')"),
    ]
    if count_labels:
        parts.append("coalesce(e.target::text, 'null')")
    args = [parts[0]]
    for part in parts[1:]:
        args += [f"'{FIELD}'", part]
    return args


class KeyStats:
    """Counts of statistics keys, folded into a ``BuildStats`` with the same rules as the
    row-by-row path (``BuildStats.add``)."""

    def __init__(self, stats: BuildStats, names: list[str]) -> None:
        self.stats, self.names = stats, names
        self.counts: dict[Any, int] = {}  # a key's bytes, or a tuple of ``STAT_COLUMNS``

    def merge(self, counts: Iterable[tuple[Any, int]]) -> None:
        for key, n in counts:
            self.counts[key] = self.counts.get(key, 0) + n
        if len(self.counts) > FOLD_AT:
            self.fold()

    def fold(self) -> BuildStats:
        for key, n in self.counts.items():
            if isinstance(key, tuple):
                self._add_columns(key, n)
            else:
                self._add(key.decode().split(FIELD), n)
        self.counts.clear()
        return self.stats

    def merge_columns(self, batch: pa.RecordBatch) -> None:
        """Count a Parquet batch by the columns the manifest counts (``STAT_COLUMNS``)
        instead of a statistics key: the batch already holds every one of them, and building
        the key cost PostgreSQL ~0.2 s of CPU per 200,000 rows. Groups come in order of first
        appearance, like the keys."""
        names = STAT_COLUMNS if self.stats.count_labels else STAT_COLUMNS[:-2]
        columns = [batch.column(name) for name in names]
        first, counts = group_counts(columns)
        rows = pa.Array.from_buffers(pa.int64(), len(first), [None, pa.py_buffer(first)])
        values = [column.take(rows).to_pylist() for column in columns]
        self.merge(zip(zip(*values, strict=True), counts.tolist(), strict=True))

    def _add_columns(self, key: tuple[Any, ...], n: int) -> None:
        """``_add`` for a ``STAT_COLUMNS`` group (values as the Parquet columns carry them)."""
        stats = self.stats
        split, source, is_gold, agreement, model_version = key[:5]
        stats.total += n
        stats.splits[split] += n
        stats.sources[source] += n
        stats.add_model_version(model_version or "", n)
        stats.gold += n * is_gold
        if agreement is not None:
            stats.add_agreement(agreement, n)
        if stats.count_labels:
            label, raw = key[5:]
            stats.add_labels(split, orjson.loads(label) if raw else label, n)

    def _add(self, fields: list[str], n: int) -> None:
        stats = self.stats
        split = self.names[ord(fields[0]) - 65]
        tail = orjson.loads("{" + fields[1][1:] + "}")  # source, agreement, weight, is_gold
        stats.total += n
        stats.splits[split] += n
        stats.sources[tail["source"]] += n
        stats.add_model_version(orjson.loads(fields[3]), n)
        stats.gold += n * tail["is_gold"]
        if fields[2]:
            stats.add_agreement(float(fields[2]), n)
        if stats.count_labels:
            stats.add_labels(split, orjson.loads(fields[4]), n)


def group_counts(columns: list[pa.Array]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``columns``: the index of each one's first row and how many
    rows it has, in order of first appearance. Hash kernels and numpy only:
    ``Table.group_by`` imports ``pyarrow.acero``, which imports pandas (0.3-0.9 s and
    ~33 MiB in every build process), and so would ``to_numpy``/``pa.array`` of numpy
    arrays: the buffers are wrapped directly instead."""
    codes = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        encoded = pc.dictionary_encode(column, null_encoding="encode")
        indices = encoded.indices  # int32, no nulls
        start = indices.offset
        codes = (
            codes * len(encoded.dictionary)
            + np.frombuffer(indices.buffers()[1], dtype=np.int32)[start : start + len(indices)]
        )
        codes = np.unique(codes, return_inverse=True)[1]  # dense again: cannot overflow
    _, first, counts = np.unique(codes, return_index=True, return_counts=True)
    order = np.argsort(first)
    return np.ascontiguousarray(first[order], dtype=np.int64), counts[order]


# --- JSONL ---------------------------------------------------------------------------------

# Binary COPY sends each value as it is (CSV or text would scan and escape every byte):
# a row is a 2-byte field count, a 4-byte length and the value; the stream starts with a
# header (signature, flags, extension) and ends with a field count of -1.
COPY_BINARY = "(FORMAT binary)"
SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
ROW_PREFIX = 6


def jsonl_sql(from_where: str, splitter: Splitter, count_labels: bool) -> tuple[str, dict]:
    """``COPY`` of statistics key, ``\\x1d`` and JSONL line per row, in id order."""
    position, params = splitter.sql_stored_position()
    split = f"(:split_json::text[])[{position} + 1]"
    args = [*stats_args(position, count_labels), f"'{END}'", *jsonl_args(split), "E'\\n'"]
    line = f"concat({', '.join(args)})"
    sql = f"COPY (SELECT {line} FROM {from_where} ORDER BY e.id) TO STDOUT {COPY_BINARY}"
    return sql, {**params, "split_json": [orjson.dumps(n).decode() for n in splitter.names]}


def _without_header(rows: Iterator[Any]) -> bytes:
    """The first binary ``COPY`` row with the stream header cut off (then the row prefix)."""
    first = bytes(next(rows, b""))
    if not first.startswith(SIGNATURE):
        raise ValueError("not a binary COPY stream")
    extension = int.from_bytes(first[15:19], "big")
    return first[19 + extension :]


class HashingFile(io.RawIOBase):
    """A raw file that hashes (SHA-256) exactly the bytes it writes: under a 1 MiB
    ``BufferedWriter`` the checksum costs one ``update`` per block, from memory, instead
    of reading the finished file back."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        written = os.write(self.fd, data)
        view = memoryview(data)[:written]
        self.digest.update(view)
        self.size += written
        return written

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


class _SplitFiles(dict[int, BinaryIO]):
    def __init__(self, root: Path, names: list[str]) -> None:
        super().__init__()
        self.root, self.names = root, names
        self.raw: dict[int, HashingFile] = {}

    def __missing__(self, code: int) -> BinaryIO:
        path = self.root / "jsonl" / f"{self.names[code - 65]}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = self.raw[code] = HashingFile(path)
        handle = self[code] = io.BufferedWriter(raw, buffer_size=1 << 20)  # type: ignore[assignment]
        return handle


def write_jsonl(
    rows: Iterable[Any],
    root: Path,
    names: list[str],
    keys: KeyStats | None,
    tick: Callable[[int], None],
) -> dict[str, dict[str, Any]]:
    """Route binary ``COPY`` rows (key, ``\\x1d``, line) to ``jsonl/<split>.jsonl``.

    The per-row work is a find, a dict increment and one write (the split's row count is
    the sum of its keys' counts)."""
    if keys is None:
        keys = KeyStats(BuildStats(), names)  # counted by another pass: discarded
    files = _SplitFiles(root, names)
    counts: dict[bytes, int] = {}
    written: Counter[int] = Counter()
    rows = iter(rows)

    def count(counts: dict[bytes, int]) -> None:
        for key, n in counts.items():
            written[key[0]] += n
        keys.merge(counts.items())
        counts.clear()

    try:
        first = _without_header(rows)
        done = 0
        for done, row in enumerate(itertools.chain((first,), rows), 1):
            data = bytes(row)
            cut = data.find(29, ROW_PREFIX)
            if cut < 0:
                continue  # the trailer
            key = data[ROW_PREFIX:cut]
            counts[key] = counts.get(key, 0) + 1
            files[data[ROW_PREFIX]].write(data[cut + 1 :])
            if not done & 0x3FFF:
                tick(done)
                count(counts)
    finally:
        for handle in files.values():
            handle.close()
    count(counts)
    return {
        f"jsonl/{names[code - 65]}.jsonl": {
            "split": names[code - 65],
            "rows": written[code],
            "format": "jsonl",
            "bytes": files.raw[code].size,
            "sha256": files.raw[code].digest.hexdigest(),
        }
        for code in files
    }


# --- Parquet (and the Hugging Face layout) ---------------------------------------------------


def label_sql(column: str) -> tuple[str, str]:
    """A target/output for the label column: a string as itself, anything else as its JSON
    text with a flag, so Python applies ``formats._as_label`` to just those rows."""
    kind = f"jsonb_typeof({column})"
    value = (
        f"CASE WHEN {column} IS NULL OR {kind} = 'null' THEN NULL "
        f"WHEN {kind} = 'string' THEN {column} #>> '{{}}' ELSE {column}::text END"
    )
    return value, f"coalesce({kind} NOT IN ('string', 'null'), false)"


# created_at from the stored fragment ',"created_at":"<32 characters>"…'
CREATED_AT = "substr(e.export_times, 16, 32)"
TEXT_VALUE = (
    "CASE WHEN jsonb_typeof(e.input -> 'text') = 'string' THEN e.input ->> 'text' "
    "WHEN jsonb_typeof(e.input -> 'prompt') = 'string' THEN e.input ->> 'prompt' END"
)


COPY_COLUMNS = [
    ("id", pa.int64()),
    ("split", pa.string()),
    ("text", pa.string()),
    ("label", pa.string()),
    ("_label_raw", pa.bool_()),
    ("model_output", pa.string()),
    ("_model_output_raw", pa.bool_()),
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
COPY_SCHEMA = pa.schema(COPY_COLUMNS)
# What the manifest counts of a Parquet row (the label pair only when it counts labels).
STAT_COLUMNS = ("split", "source", "is_gold", "agreement", "model_version", "label", "_label_raw")


def parquet_sql(from_where: str, splitter: Splitter) -> tuple[str, dict]:
    """The Parquet columns (``formats.parquet_schema``) and the label flags, in id order,
    named as ``COPY_COLUMNS``; the manifest's counts come from these columns
    (``KeyStats.merge_columns``)."""
    position, params = splitter.sql_stored_position()
    values = [
        "e.id",
        f"(:split_names::text[])[{position} + 1]",
        TEXT_VALUE,
        *label_sql("e.target"),
        *label_sql("e.model_output"),
        "p.model_version::text",
        "e.source::text",
        "e.agreement::float8",
        "e.weight::float8",
        "coalesce(e.is_gold, false)",
        "e.cluster_id::int8",
        "e.revision::int8",
        CREATED_AT,
        "e.input::text",
        "coalesce(p.segment::text, '{}')",
    ]
    names = [name for name, _ in COPY_COLUMNS]
    columns = [f'{value} AS "{name}"' for value, name in zip(values, names, strict=True)]
    sql = f"SELECT {', '.join(columns)} FROM {from_where} ORDER BY e.id"
    return sql, {**params, "split_names": splitter.names}


def typed(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch as ``COPY_SCHEMA`` (the driver's field metadata dropped, types checked)."""
    arrays = [batch.column(name) for name, _ in COPY_COLUMNS]
    return pa.RecordBatch.from_arrays(arrays, schema=COPY_SCHEMA)


def parquet_table(batch: pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """The Parquet columns of a batch; labels that were not plain strings (and every label
    of a multilabel project) go through ``formats._as_label`` like in the general path."""
    multilabel = pa.types.is_list(schema.field("label").type)
    arrays = []
    for f in schema:
        column = batch.column(f.name)
        if f.name in ("label", "model_output"):
            raw = batch.column(f"_{f.name}_raw")
            if multilabel or pc.any(raw).as_py():
                values = zip(column.to_pylist(), raw.to_pylist(), strict=True)
                fixed = [_as_label(orjson.loads(v) if r else v, multilabel) for v, r in values]
                column = pa.array(fixed, type=f.type)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema)


UNIQUE_COLUMNS = ("id", "text", "cluster_id", "created_at", "input")


class ParquetSplits:
    """One Parquet file (zstd) per split, written in row groups of ~``PARQUET_BATCH`` rows."""

    def __init__(self, root: Path, schema: pa.Schema, name_for: Callable[[str], str]) -> None:
        self.root, self.schema, self.name_for = root, schema, name_for
        # Dictionary pages only where values repeat: for ids, texts and times pyarrow
        # builds a dictionary per row group and then falls back to plain (~0.15 s per
        # 1,000,000 rows for nothing); the values read back the same either way.
        self.dictionary = [f.name for f in schema if f.name not in UNIQUE_COLUMNS]
        self.pending: dict[str, list[pa.Table]] = {}
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.rows: Counter[str] = Counter()

    def add(self, split: str, table: pa.Table) -> None:
        buffered = self.pending.setdefault(split, [])
        buffered.append(table)
        self.rows[split] += table.num_rows
        if sum(t.num_rows for t in buffered) >= PARQUET_BATCH:
            self._flush(split)

    def _flush(self, split: str) -> None:
        tables = self.pending.pop(split, [])
        if not tables:
            return
        writer = self.writers.get(split)
        if writer is None:
            path = self.root / self.name_for(split)
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = self.writers[split] = pq.ParquetWriter(
                path, self.schema, compression="zstd", use_dictionary=self.dictionary
            )
        table = pa.concat_tables(tables).combine_chunks()  # one chunk per column
        writer.write_table(table, row_group_size=max(table.num_rows, 1))

    def close(self, folder: str) -> dict[str, dict[str, Any]]:
        for split in list(self.pending):
            self._flush(split)
        for writer in self.writers.values():
            writer.close()
        return {
            self.name_for(s): {"split": s, "rows": self.rows[s], "format": folder}
            for s in self.writers
        }


def write_parquet(
    batches: Iterable[pa.RecordBatch],
    root: Path,
    context: ExportContext,
    folder: str,
    keys: KeyStats | None,
    tick: Callable[[int], None],
) -> dict[str, dict[str, Any]]:
    """Route ``parquet_sql`` batches by split into Parquet files; count the manifest."""
    schema = parquet_schema(context.task_type)
    if folder == "hf":
        out = ParquetSplits(root, schema, lambda s: f"hf/data/{s}-00000-of-00001.parquet")
    else:
        out = ParquetSplits(root, schema, lambda s: f"{folder}/{s}.parquet")
    done = 0
    for batch in map(typed, batches):
        if keys is not None:
            keys.merge_columns(batch)
        table = parquet_table(batch, schema)
        column = table.column("split")
        for split in pc.unique(column):
            # compared as the pyarrow scalar: converting a Python value imports pandas (0.3 s)
            out.add(split.as_py(), pc.filter(table, pc.equal(column, split)))
        done += batch.num_rows
        tick(done)
    files = out.close(folder)
    if folder == "hf":
        ordered = sorted(files.values(), key=_split_order)
        card = root / "hf" / "README.md"
        card.parent.mkdir(parents=True, exist_ok=True)
        card.write_text(hf_card(context, ordered))
        files["hf/README.md"] = {"split": None, "rows": None, "format": "hf"}
    return files


# --- one build -------------------------------------------------------------------------------

FAST_FORMATS = ("jsonl", "parquet", "hf")
Copy = Callable[..., Iterator[Any]]  # (sql, params) -> ``COPY`` rows: build.snapshot
Read = Callable[..., Iterator[pa.RecordBatch]]  # (sql, params) -> batches: build.ArrowReader


def from_where(
    tables: str, where: str, params: dict[str, Any], flt: DatasetFilter, splitter: Splitter
) -> tuple[str, dict[str, Any]]:
    """``<tables> WHERE …`` with the whole filter in SQL (the ``splits`` check on the split
    position, so only exports filtered by split pay for a second hash per row)."""
    extra, extra_params = filter_conditions(flt)
    conditions = [where, *extra]
    params = {**params, **extra_params}
    if flt.splits is not None:
        position, split_sql_params = splitter.sql_stored_position()
        wanted = [i for i, name in enumerate(splitter.names) if name in flt.splits]
        conditions.append(f"{position} = ANY(:wanted_positions)")
        params.update(split_sql_params, wanted_positions=wanted)
    return f"{tables} WHERE {' AND '.join(f'({c})' for c in conditions)}", params


def export(
    copy: Copy,
    read: Read,
    source: tuple[str, dict[str, Any]],
    splitter: Splitter,
    context: ExportContext,
    root: Path,
    formats: list[str],
    stats: BuildStats,
    tick: Callable[[int, int], None],
) -> dict[str, dict[str, Any]]:
    """Write every fast format, one query each; the first pass fills ``stats``."""
    sql_source, params = source
    count_labels = stats.count_labels
    keys: KeyStats | None = KeyStats(stats, splitter.names)
    files: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(formats):

        def progress(done: int, index: int = index) -> None:
            tick(index, done)

        if name == "jsonl":
            sql, extra = jsonl_sql(sql_source, splitter, count_labels)
            files |= write_jsonl(
                copy(sql, {**params, **extra}), root, splitter.names, keys, progress
            )
        else:
            sql, extra = parquet_sql(sql_source, splitter)
            batches = read(sql, {**params, **extra})
            files |= write_parquet(batches, root, context, name, keys, progress)
        if keys is not None:
            keys.fold()
            keys = None
    return files
