"""Every export format, read back by the tool that consumes it."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import orjson
import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sqlalchemy.engine import Engine

from corrigenda.db import transaction
from corrigenda.models import Project
from tests.datasets.conftest import add_examples, create_and_build, new_project, version_dir
from tests.datasets.trl_shapes import preference_errors, sft_conversational_errors

ALL_TABULAR = ["jsonl", "csv", "parquet", "hf", "label_studio"]


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture
def classification(engine: Engine, tmp_path: Path):
    project_id = new_project(engine)
    add_examples(engine, project_id, 60)
    version = create_and_build(engine, tmp_path, project_id, ALL_TABULAR)
    return version, version_dir(tmp_path, version)


def test_manifest_checksums_sizes_and_counts_match_the_files(classification) -> None:
    version, root = classification
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest == version.manifest
    assert manifest["counts"]["total"] == 60
    assert sum(manifest["counts"]["splits"].values()) == 60
    for entry in manifest["files"]:
        data = (root / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["bytes"]
    jsonl_rows = {f["split"]: f["rows"] for f in manifest["files"] if f["format"] == "jsonl"}
    assert jsonl_rows == manifest["counts"]["splits"]
    assert manifest["leakage"]["cross_split_pairs"] == 0
    assert manifest["software"]["corrigenda"]
    assert manifest["high_water_mark"]
    assert "## Label distribution per split" in (root / "datasheet.md").read_text()


def test_parquet_reads_in_pyarrow_and_pandas(classification) -> None:
    version, root = classification
    for split, count in version.manifest["counts"]["splits"].items():
        table = pq.read_table(root / "parquet" / f"{split}.parquet")
        assert table.num_rows == count
        frame = table.to_pandas()
        assert set(frame["split"]) == {split}
        assert frame["label"].isin(["billing", "bug", "feature", "other"]).all()
        assert (
            pq.ParquetFile(root / "parquet" / f"{split}.parquet")
            .metadata.row_group(0)
            .column(0)
            .compression
            == "ZSTD"
        )


def test_csv_is_strictly_quoted_for_pandas_pyarrow_and_csv(classification) -> None:
    version, root = classification
    jsonl = {
        r["id"]: r
        for s in version.manifest["counts"]["splits"]
        for r in read_jsonl(root / "jsonl" / f"{s}.jsonl")
    }
    for split in version.manifest["counts"]["splits"]:
        path = root / "csv" / f"{split}.csv"
        frame = pd.read_csv(path, keep_default_na=False)
        strict = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True))
        rows = list(csv.DictReader(path.open(newline="")))
        assert (
            len(frame)
            == strict.num_rows
            == len(rows)
            == version.manifest["counts"]["splits"][split]
        )
        for row in rows:
            assert row["text"] == jsonl[int(row["id"])]["text"]  # quotes, commas, newlines intact
            assert json.loads(row["input"]) == jsonl[int(row["id"])]["input"]
        assert any("\n" in text for text in frame["text"]) or split != "train"


def test_hf_layout_loads_with_datasets_offline(classification, tmp_path: Path) -> None:
    from datasets import load_dataset

    version, root = classification
    loaded = load_dataset(str(root / "hf"), cache_dir=str(tmp_path / "hf-cache"))
    assert {name: len(split) for name, split in loaded.items()} == version.manifest["counts"][
        "splits"
    ]
    assert "label" in loaded["train"].column_names


def test_empty_split_gets_no_file_and_hf_still_loads(engine: Engine, tmp_path: Path) -> None:
    from datasets import load_dataset

    project_id = new_project(engine)
    with transaction(engine) as session:
        project = session.get(Project, project_id)
        project.policy = {
            **project.policy,
            "split_ratios": {"train": 1, "validation": 0, "test": 0},
        }
    add_examples(engine, project_id, 5)
    version = create_and_build(engine, tmp_path, project_id, ["hf", "jsonl"])
    root = version_dir(tmp_path, version)
    assert sorted(f["path"] for f in version.manifest["files"]) == [
        "hf/README.md",
        "hf/data/train-00000-of-00001.parquet",
        "jsonl/train.jsonl",
    ]
    loaded = load_dataset(str(root / "hf"), cache_dir=str(tmp_path / "hf-cache"))
    assert list(loaded) == ["train"] and len(loaded["train"]) == 5


def test_label_studio_tasks_have_the_documented_shape(classification) -> None:
    version, root = classification
    for split, count in version.manifest["counts"]["splits"].items():
        tasks = json.loads((root / "label_studio" / f"{split}.json").read_text())
        assert len(tasks) == count
        for task in tasks:
            assert set(task) <= {"data", "annotations", "predictions"}
            assert isinstance(task["data"]["text"], str)
            (annotation,) = task["annotations"]
            assert "completed_by" not in annotation
            (result,) = annotation["result"]
            assert result["from_name"] == "label" and result["to_name"] == "text"
            assert result["type"] == "choices" and len(result["value"]["choices"]) == 1
            assert task["predictions"][0]["result"][0]["type"] == "choices"
    config = (root / "label_studio" / "config.xml").read_text()
    assert '<Text name="text" value="$text"/>' in config and 'name="label"' in config


def test_chat_and_preference_rows_are_what_trl_accepts(engine: Engine, tmp_path: Path) -> None:
    project_id = new_project(engine, task_type="text")
    add_examples(
        engine,
        project_id,
        30,
        target_of=lambda i: f"Corrected answer {i}",
        output_of=lambda i: f"Corrected answer {i}" if i % 7 == 0 else f"Model answer {i}",
    )
    version = create_and_build(engine, tmp_path, project_id, ["chat", "preference"])
    root = version_dir(tmp_path, version)
    chat = [r for f in root.glob("chat/*.jsonl") for r in read_jsonl(f)]
    prefs = [r for f in root.glob("preference/*.jsonl") for r in read_jsonl(f)]
    assert len(chat) == 30
    assert all(sft_conversational_errors(r) == [] for r in chat)
    assert chat[0]["messages"][-1]["content"].startswith("Corrected answer")
    same = sum(1 for i in range(30) if i % 7 == 0)
    assert len(prefs) == 30 - same
    assert version.manifest["refused"]["preference"] == {"chosen_equals_rejected": same}
    for row in prefs:
        assert preference_errors({k: row[k] for k in ("prompt", "chosen", "rejected")}) == []
        assert row["prompt"][0]["content"]  # explicit prompt, never inferred by TRL


def test_validators_catch_what_trl_lets_through() -> None:
    turn = {"role": "assistant", "content": "x"}
    bad = {"prompt": [{"role": "user", "content": "q"}], "chosen": [turn], "rejected": [turn]}
    assert preference_errors(bad) == ["chosen equals rejected"]
    swapped = {"messages": [turn, {"role": "user", "content": "q"}]}
    assert sft_conversational_errors(swapped)


def test_chat_format_is_refused_for_classification_projects(engine: Engine) -> None:
    from corrigenda.datasets import DatasetFilter, DatasetRequestError, create_version

    project_id = new_project(engine)
    with transaction(engine) as session:
        project = session.get(Project, project_id)
        with pytest.raises(DatasetRequestError) as caught:
            create_version(session, project=project, flt=DatasetFilter(), formats=["jsonl", "chat"])
    assert caught.value.field == "/formats/1"
