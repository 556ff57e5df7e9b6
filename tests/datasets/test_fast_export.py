"""The PostgreSQL COPY path writes what the row-by-row path writes: same splits, same rows,
same Parquet tables, same manifest counts (the general path stays for SQLite and the other
formats)."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import adbc_driver_manager
import orjson
import psycopg
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import select

from corrigenda.datasets import LocalStorage, Splitter, build_version, create_version
from corrigenda.datasets.build import _pyformat, copy_rows, snapshot
from corrigenda.datasets.filters import DatasetFilter
from corrigenda.datasets.splits import hash64, split_key
from corrigenda.db import make_engine, transaction
from corrigenda.examples import delete_examples, upsert_example, upsert_examples
from corrigenda.models import DatasetVersion, Example, Prediction, Project
from tests.datasets.conftest import add_examples, new_project, version_dir

FAST = ["jsonl", "parquet", "hf"]
# The first format's pass counts the manifest: JSONL by its statistics key, Parquet by its columns.
PARQUET_FIRST = ["parquet", "hf", "jsonl"]


@pytest.fixture
def pg_engine(pg_url: str):
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.mark.parametrize(
    "ratios",
    [None, {"train": 0.5, "test": 0.5}, {"train": 1, "validation": 0, "test": 0}, {"a": 1, "b": 3}],
)
def test_the_sql_split_is_the_python_split(pg_engine: Engine, ratios: Any) -> None:
    splitter = Splitter(7, ratios)
    position, params = splitter.sql_position("c", "i")
    rng = random.Random(4)
    rows = [
        (rng.choice([None, rng.randrange(-5, 10**12)]), rng.randrange(1, 10**9))
        for _ in range(5000)
    ]
    sql = f"SELECT {position} FROM unnest(:cs::bigint[], :ids::bigint[]) AS t(c, i)"
    clusters, ids = [c for c, _ in rows], [i for _, i in rows]
    raw = pg_engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(_pyformat(sql), {**params, "cs": clusters, "ids": ids})
        got = [splitter.names[p] for (p,) in cursor.fetchall()]
    finally:
        raw.close()
    assert got == [splitter(c, i) for c, i in rows]


def _seed(engine: Engine, project_id: int, count: int, **kwargs: Any) -> None:
    add_examples(
        engine, project_id, count, cluster_of=lambda i: None if i % 7 == 0 else i // 3, **kwargs
    )
    with transaction(engine) as session:  # the columns the factory leaves uniform
        session.execute(text("UPDATE example SET agreement = NULL WHERE id % 4 = 0"))
        session.execute(text("UPDATE example SET is_gold = true, weight = 2.5 WHERE id % 5 = 0"))
        session.execute(
            text(
                "UPDATE prediction SET segment = '{}', model_version = '', confidence = NULL "
                "WHERE id % 6 = 0"
            )
        )


def _build(
    engine: Engine,
    data_dir: Path,
    project_id: int,
    fast: bool,
    formats: list[str] = FAST,
    **flt: Any,
) -> DatasetVersion:
    with transaction(engine) as session:
        project = session.get(Project, project_id)
        version = create_version(
            session, project=project, flt=DatasetFilter(**flt), formats=formats
        )
    outcome = build_version(engine, LocalStorage.for_data_dir(data_dir), version.id, fast=fast)
    assert outcome is not None and outcome.status == "ready"
    with transaction(engine) as session:
        return session.get(DatasetVersion, version.id)


def _jsonl(root: Path) -> dict[str, list[dict]]:
    return {
        p.stem: [orjson.loads(line) for line in p.read_bytes().splitlines()]
        for p in sorted(root.glob("jsonl/*.jsonl"))
    }


def _same_version(
    engine: Engine, data_dir: Path, project_id: int, formats: list[str] = FAST, **flt: Any
) -> dict:
    fast = _build(engine, data_dir, project_id, True, formats, **flt)
    slow = _build(engine, data_dir, project_id, False, formats, **flt)
    fast_root, slow_root = version_dir(data_dir, fast), version_dir(data_dir, slow)
    fast_rows, slow_rows = _jsonl(fast_root), _jsonl(slow_root)
    assert {k: len(v) for k, v in fast_rows.items()} == {k: len(v) for k, v in slow_rows.items()}
    for split, rows in fast_rows.items():
        for a, b in zip(rows, slow_rows[split], strict=True):
            assert {k: (v, b.get(k)) for k, v in a.items() if b.get(k) != v} == {}
    for split, rows in fast_rows.items():  # same JSON types too (1.0 stays a float)
        for a, b in zip(rows, slow_rows[split], strict=True):
            assert {k: type(v) for k, v in a.items()} == {k: type(v) for k, v in b.items()}
    for pattern in ("parquet/*.parquet", "hf/data/*.parquet"):
        fast_files = sorted(p.relative_to(fast_root) for p in fast_root.glob(pattern))
        assert fast_files == sorted(p.relative_to(slow_root) for p in slow_root.glob(pattern))
        for name in fast_files:
            fast_table, slow_table = (
                pq.read_table(fast_root / name),
                pq.read_table(slow_root / name),
            )
            assert fast_table.schema == slow_table.schema
            assert fast_table.to_pylist() == slow_table.to_pylist()
    cards = [
        (r / "hf" / "README.md").read_text().split("# demo")[0] for r in (fast_root, slow_root)
    ]
    assert cards[0] == cards[1]
    fast_manifest, slow_manifest = fast.manifest, slow.manifest
    assert fast_manifest["counts"] == slow_manifest["counts"]
    fast_agreement, slow_agreement = fast_manifest["agreement"], slow_manifest["agreement"]
    assert fast_agreement.pop("mean") == pytest.approx(slow_agreement.pop("mean"))
    assert fast_agreement == slow_agreement
    assert [(f["path"], f["rows"]) for f in fast_manifest["files"]] == [
        (f["path"], f["rows"]) for f in slow_manifest["files"]
    ]
    for version, root in ((fast, fast_root), (slow, slow_root)):  # hashed while written
        for entry in version.manifest["files"]:
            data = (root / entry["path"]).read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            assert (entry["bytes"], entry["sha256"]) == (len(data), digest)
    return fast_rows


@pytest.mark.parametrize("formats", [FAST, PARQUET_FIRST])
def test_classification_rows_parquet_and_manifest_match(
    pg_engine: Engine, tmp_path: Path, formats: list[str]
) -> None:
    project_id = new_project(pg_engine)
    _seed(pg_engine, project_id, 90, output_of=lambda i: None if i % 9 == 0 else "bug")
    with transaction(pg_engine) as session:  # a JSON-null and an object target
        session.execute(text("UPDATE example SET target = 'null' WHERE id % 13 = 0"))
        session.execute(text("""UPDATE example SET target = '{"k": 1}' WHERE id % 17 = 0"""))
    rows = _same_version(pg_engine, tmp_path, project_id, formats)
    assert sum(map(len, rows.values())) == 90 and len(rows) == 3


def test_multilabel_and_filters_match(pg_engine: Engine, tmp_path: Path) -> None:
    project_id = new_project(pg_engine, task_type="multilabel")
    labels = ["billing", "bug", "feature", "other"]
    _seed(
        pg_engine,
        project_id,
        80,
        target_of=lambda i: [labels[i % 4], labels[(i + 1) % 4]] if i % 3 else labels[i % 4],
        output_of=lambda i: [labels[i % 4]] if i % 2 else {"odd": i},
    )
    _same_version(pg_engine, tmp_path, project_id)
    _same_version(pg_engine, tmp_path, project_id, PARQUET_FIRST)
    rows = _same_version(
        pg_engine,
        tmp_path,
        project_id,
        PARQUET_FIRST,
        labels=["bug"],
        segments={"locale": ["en", "None"]},
        splits=["train", "test"],
        sources=["reviewed", "consensus"],
    )
    assert rows and set(rows) <= {"train", "test"}


def test_text_project_matches(pg_engine: Engine, tmp_path: Path) -> None:
    project_id = new_project(pg_engine, task_type="text")
    _seed(
        pg_engine,
        project_id,
        40,
        target_of=lambda i: f'Answer\t{i} \u00e9 "q"\n',
        output_of=lambda i: f"model {i}",
    )
    _same_version(pg_engine, tmp_path, project_id)
    _same_version(pg_engine, tmp_path, project_id, PARQUET_FIRST)


def test_the_stored_split_hash_is_the_python_hash(pg_engine: Engine) -> None:
    """``example.split_hash`` (generated by PostgreSQL on every write) is ``hash64`` of the
    split key, and the stored-hash split is the Python split for several ratio sets."""
    project_id = new_project(pg_engine)
    rng = random.Random(9)
    clusters = [rng.choice([None, rng.randrange(-5, 10**12)]) for _ in range(400)]
    add_examples(pg_engine, project_id, len(clusters), cluster_of=lambda i: clusters[i])
    with transaction(pg_engine) as session:  # a raw write path moves some clusters
        session.execute(
            text("UPDATE example SET cluster_id = NULL WHERE id % 11 = 0"),
        )
        session.execute(text("UPDATE example SET cluster_id = id * 7 WHERE id % 13 = 0"))
    for ratios in [None, {"train": 0.5, "test": 0.5}, {"train": 1, "test": 0}, {"a": 1, "b": 3}]:
        splitter = Splitter(project_id, ratios)
        position, params = splitter.sql_stored_position()
        sql = f"SELECT e.id, e.cluster_id, e.split_hash, {position} FROM example e"
        raw = pg_engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(_pyformat(sql + " WHERE e.project_id = :p"), {**params, "p": project_id})
            rows = cursor.fetchall()
        finally:
            raw.close()
        assert len(rows) == len(clusters)
        for ident, cluster, stored, got in rows:
            assert stored == hash64(split_key(cluster, ident), project_id) - 2**63
            assert splitter.names[got] == splitter(cluster, ident)


def test_stored_fragments_follow_every_write_path(pg_engine: Engine, tmp_path: Path) -> None:
    """The stored JSON fragments are regenerated by revisions through ``upsert_example``,
    the bulk ``upsert_examples``, deletion and revival, and raw SQL: the fast export still
    equals the row-by-row path afterwards."""
    project_id = new_project(pg_engine)
    ids = add_examples(pg_engine, project_id, 60, cluster_of=lambda i: i // 2)
    _same_version(pg_engine, tmp_path, project_id)
    with transaction(pg_engine) as session:
        examples = session.exec(select(Example).where(Example.id.in_(ids[:20]))).all()
        for example in examples[:10]:  # one at a time
            prediction = session.get(Prediction, example.prediction_id)
            prediction.cluster_id = None
            upsert_example(
                session,
                prediction=prediction,
                target={"odd": [1, 2.5]},
                source="consensus",
                provenance={"event_ids": [0]},
                agreement=0.125,
            )
        rows = [  # in bulk
            {
                "prediction_id": e.prediction_id,
                "input": {"prompt": f'revised {e.id} \u00e9\t"q"'},
                "model_output": None,
                "cluster_id": 10**9 + e.id,
                "target": "bug",
                "source": "implicit",
                "provenance": {"event_ids": [1]},
                "agreement": None,
            }
            for e in examples[10:]
        ]
        upsert_examples(session, project_id=project_id, rows=rows)
        delete_examples(session, project_id=project_id, example_ids=ids[20:25])
    with transaction(pg_engine) as session:
        session.execute(
            text(
                "UPDATE example SET weight = 0.1, is_gold = true, updated_at = :t "
                "WHERE id = ANY(:ids)"
            ),
            {"t": datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC), "ids": ids[25:30]},
        )
        revived = session.exec(select(Example).where(Example.id == ids[20])).one()
        prediction = session.get(Prediction, revived.prediction_id)
        upsert_example(  # a tombstone brought back
            session,
            prediction=prediction,
            target="feature",
            source="reviewed",
            provenance={"event_ids": [2]},
        )
    rows = _same_version(pg_engine, tmp_path, project_id)
    by_id = {row["id"]: row for split in rows.values() for row in split}
    assert len(by_id) == 56 and ids[20] in by_id and ids[21] not in by_id
    assert by_id[ids[0]]["target"] == {"odd": [1, 2.5]} and by_id[ids[0]]["cluster_id"] is None
    assert by_id[ids[15]]["text"] == f'revised {ids[15]} \u00e9\t"q"'
    assert by_id[ids[26]]["updated_at"] == "2031-05-06T07:08:09.000000+00:00"
    assert by_id[ids[26]]["weight"] == 0.1 and by_id[ids[26]]["is_gold"] is True


def test_unicode_and_escapes_round_trip_through_both_formats(
    pg_engine: Engine, tmp_path: Path
) -> None:
    """Texts with backslashes, tabs, newlines, quotes, control characters, RTL, combining
    characters and emoji come back from the JSONL and Parquet files exactly as stored."""
    texts = [
        "back\\slash \\n not a newline \\\\ two",
        "tab\tquote \"double\" 'single' comma, semicolon;",
        "line one\nline two\r\nwindows\u2028sep",
        "\u05e9\u05dc\u05d5\u05dd \u0639\u0631\u0628\u064a \u202bembedded\u202c RTL",
        "e\u0301 a\u0308 combining \u0915\u094d\u0937",
        "emoji \U0001f600 \U0001f468\u200d\U0001f469\u200d\U0001f467 flag \U0001f1eb\U0001f1f7",
        "control \x01\x1c\x1d\x1e\x7f bell",
        "",
    ]
    project_id = new_project(pg_engine, task_type="text")
    add_examples(
        pg_engine,
        project_id,
        len(texts) * 3,
        target_of=lambda i: texts[i % len(texts)] + f" target {i}",
        output_of=lambda i: None if i % 4 == 0 else texts[-1 - i % len(texts)],
    )
    with transaction(pg_engine) as session:  # the inputs themselves, and a JSON-null field
        for i, text_value in enumerate(texts * 3):
            session.execute(
                text(
                    "UPDATE prediction SET input = CAST(:input AS jsonb), model_version = :mv "
                    "WHERE project_id = :p AND client_id = :c"
                ),
                {
                    "input": orjson.dumps({"text": text_value, "n": None}).decode(),
                    "mv": texts[i % len(texts)],
                    "p": project_id,
                    "c": f"p-{i}",
                },
            )
            session.execute(
                text(
                    "UPDATE example SET input = prediction.input FROM prediction "
                    "WHERE example.prediction_id = prediction.id AND prediction.client_id = :c "
                    "AND prediction.project_id = :p"
                ),
                {"p": project_id, "c": f"p-{i}"},
            )
    rows = _same_version(pg_engine, tmp_path, project_id)
    got = sorted(row["text"] for split in rows.values() for row in split)
    assert got == sorted(texts * 3)
    version = _build(pg_engine, tmp_path, project_id, True, ["parquet"])
    tables = [pq.read_table(f) for f in version_dir(tmp_path, version).glob("parquet/*.parquet")]
    values = [v for t in tables for v in t.column("text").to_pylist()]
    assert sorted(values) == sorted(texts * 3)
    inputs = [orjson.loads(v) for t in tables for v in t.column("input").to_pylist()]
    assert sorted(i["text"] for i in inputs) == sorted(texts * 3)


def test_the_arrow_reader_sees_the_snapshot_and_reports_errors(pg_engine: Engine) -> None:
    """The second connection reads the snapshot's own state (not a row committed after it
    began), a reader stopped early leaves the snapshot usable, and a failing query raises."""
    project_id = new_project(pg_engine)
    add_examples(pg_engine, project_id, 3)
    sql = "SELECT id FROM example WHERE project_id = :p ORDER BY id"
    with snapshot(pg_engine) as snap:
        assert snap.read is not None
        before = snap.count(project_id, DatasetFilter())
        add_examples(pg_engine, project_id, 2, start=3)  # committed after the snapshot began
        ids = [i for b in snap.read(sql, {"p": project_id}) for i in b.column(0).to_pylist()]
        assert len(ids) == before == 3 and ids == sorted(ids)
        batches = snap.read("SELECT i FROM generate_series(1, :n) AS i", {"n": 10**6})
        assert next(batches).column(0)[0].as_py() == 1
        batches.close()  # a writer failing mid-export
        with pytest.raises((adbc_driver_manager.Error, OSError), match="division by zero"):
            list(snap.read("SELECT 1 / (i - 2) FROM generate_series(1, 5) AS i", {}))
    with snapshot(pg_engine) as snap:
        assert snap.count(project_id, DatasetFilter()) == 5


def test_copy_rows_stops_cleanly_and_reports_errors(pg_engine: Engine) -> None:
    """The libpq ``COPY`` reader: all rows in order; stopping early cancels the query and
    leaves the connection usable; a failing query raises the database's error."""
    raw = pg_engine.raw_connection()
    try:
        driver = raw.driver_connection
        sql = "COPY (SELECT i FROM generate_series(1, :n) AS i) TO STDOUT"
        assert [bytes(r) for r in copy_rows(driver, sql, {"n": 3})] == [b"1\n", b"2\n", b"3\n"]
        rows = copy_rows(driver, sql, {"n": 10**7})
        assert bytes(next(rows)) == b"1\n"
        rows.close()  # a writer failing mid-export
        assert driver.execute("SELECT 41 + 1").fetchone() == (42,)
        with pytest.raises(psycopg.errors.DivisionByZero):
            list(
                copy_rows(
                    driver, "COPY (SELECT 1 / (i - 2) FROM generate_series(1, 5) i) TO STDOUT", {}
                )
            )
        driver.rollback()
        with pytest.raises(psycopg.errors.UndefinedTable):
            list(copy_rows(driver, "COPY (SELECT * FROM no_such_table) TO STDOUT", {}))
        driver.rollback()
        assert driver.execute("SELECT 1").fetchone() == (1,)
    finally:
        raw.close()
