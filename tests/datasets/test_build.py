"""Building versions: consistent snapshots, stable leak-free splits, filters, idempotence."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import select

from corrigenda.datasets import DatasetFilter, LocalStorage, Splitter, build_version, snapshot
from corrigenda.db import transaction
from corrigenda.models import DatasetVersion
from tests.datasets.conftest import add_examples, create_and_build, new_project, version_dir


def splits_of(root: Path) -> dict[int, str]:
    return {
        row["id"]: row["split"]
        for path in root.glob("jsonl/*.jsonl")
        for row in map(orjson.loads, path.read_bytes().splitlines())
    }


def test_writes_during_a_build_do_not_change_its_snapshot(engine: Engine) -> None:
    project_id = new_project(engine)
    add_examples(engine, project_id, 10)
    with snapshot(engine) as snap:
        before = snap.count(project_id, DatasetFilter())
        add_examples(engine, project_id, 5, start=10)  # committed by another transaction
        records = list(snap.records(project_id, DatasetFilter()))
        after = snap.count(project_id, DatasetFilter())
    assert before == after == len(records) == 10
    with snapshot(engine) as snap:
        assert snap.count(project_id, DatasetFilter()) == 15


def test_work_alongside_reads_the_snapshot_and_reports_errors(engine: Engine) -> None:
    """Work run beside the build (the leakage check; on PostgreSQL a second connection in a
    thread) sees the snapshot's state, not rows committed after it began, and its error
    reaches the build."""
    project_id = new_project(engine)
    add_examples(engine, project_id, 4)
    with snapshot(engine) as snap:
        assert snap.count(project_id, DatasetFilter()) == 4
        add_examples(engine, project_id, 3, start=4)  # committed after the snapshot began
        with snap.alongside(type(snap).count, project_id, DatasetFilter()) as count:
            assert snap.count(project_id, DatasetFilter()) == 4
        assert count.result() == 4
        with snap.alongside(type(snap).count, project_id, "not a filter") as failed:
            pass
        with pytest.raises(AttributeError):
            failed.result()
    with snapshot(engine) as snap:
        assert snap.count(project_id, DatasetFilter()) == 7


def test_splits_stay_put_as_data_grows_and_clusters_never_straddle(
    engine: Engine, tmp_path: Path
) -> None:
    project_id = new_project(engine)
    add_examples(engine, project_id, 200, cluster_of=lambda i: i // 4)
    first = create_and_build(engine, tmp_path, project_id, ["jsonl"])
    add_examples(engine, project_id, 200, start=200, cluster_of=lambda i: i // 4)
    second = create_and_build(engine, tmp_path, project_id, ["jsonl"])
    old, new = splits_of(version_dir(tmp_path, first)), splits_of(version_dir(tmp_path, second))
    assert len(old) == 200 and len(new) == 400
    assert all(new[i] == split for i, split in old.items())
    by_cluster: dict[int, set[str]] = {}
    for example_id, split in new.items():
        by_cluster.setdefault((example_id - 1) // 4, set()).add(split)
    assert all(len(splits) == 1 for splits in by_cluster.values())
    assert set(new.values()) == {"train", "validation", "test"}
    assert second.manifest["leakage"]["cross_split_pairs"] == 0


def test_splitter_follows_the_ratios() -> None:
    splitter = Splitter(1, {"train": 0.5, "test": 0.5})
    counts = {"train": 0, "test": 0}
    for cluster in range(4000):
        counts[splitter(cluster, 0)] += 1
    assert abs(counts["train"] - 2000) < 150
    assert splitter(7, 1) == splitter(7, 999)  # the cluster decides, not the example


def test_leakage_check_counts_exact_duplicates_split_across_clusters(
    engine: Engine, tmp_path: Path
) -> None:
    project_id = new_project(engine)
    # Same content hash, different clusters (clustering missed them): must be reported.
    add_examples(engine, project_id, 40, content_hash="same")
    version = create_and_build(engine, tmp_path, project_id, ["jsonl"])
    counts = list(version.manifest["counts"]["splits"].values())
    expected = (sum(counts) ** 2 - sum(c * c for c in counts)) // 2
    assert version.manifest["leakage"]["cross_split_pairs"] == expected > 0


def test_leakage_check_counts_duplicates_without_a_cluster_one_by_one(
    engine: Engine, tmp_path: Path
) -> None:
    """An example without a cluster is its own split key: duplicates of it in other splits
    are pairs too (they were once counted as if all sat in the first one's split)."""
    project_id = new_project(engine)
    same = add_examples(engine, project_id, 30, cluster_of=lambda i: None, content_hash="same")
    add_examples(engine, project_id, 10, start=30, cluster_of=lambda i: 7, content_hash="x")
    version = create_and_build(engine, tmp_path, project_id, ["jsonl"])
    splits = splits_of(version_dir(tmp_path, version))
    per_split = [sum(splits[i] == s for i in same) for s in ("train", "validation", "test")]
    expected = (sum(per_split) ** 2 - sum(c * c for c in per_split)) // 2
    assert version.manifest["leakage"]["cross_split_pairs"] == expected > 0
    assert version.manifest["leakage"]["duplicate_groups_across_clusters"] == 1


def test_filters(engine: Engine, tmp_path: Path) -> None:
    project_id = new_project(engine)
    add_examples(engine, project_id, 240)
    version = create_and_build(
        engine,
        tmp_path,
        project_id,
        ["jsonl"],
        sources=["reviewed"],
        min_agreement=0.5,
        labels=["billing", "bug"],
        segments={"locale": ["en"]},
        splits=["train"],
    )
    rows = [
        orjson.loads(line)
        for path in version_dir(tmp_path, version).glob("jsonl/*.jsonl")
        for line in path.read_bytes().splitlines()
    ]
    assert rows and all(
        r["source"] == "reviewed"
        and r["agreement"] >= 0.5
        and r["target"] in ("billing", "bug")
        and r["segment"]["locale"] == "en"
        and r["split"] == "train"
        for r in rows
    )
    assert version.manifest["filter"]["sources"] == ["reviewed"]


def test_a_second_build_of_the_same_version_does_nothing(engine: Engine, tmp_path: Path) -> None:
    project_id = new_project(engine)
    add_examples(engine, project_id, 3)
    version = create_and_build(engine, tmp_path, project_id, ["jsonl"])
    storage = LocalStorage.for_data_dir(tmp_path)
    assert build_version(engine, storage, version.id) is None
    files = sorted(p.name for p in version_dir(tmp_path, version).rglob("*"))
    assert "manifest.json" in files
    with transaction(engine) as session:
        numbers = session.exec(select(DatasetVersion.number)).all()
    assert numbers == [1]


def test_a_failed_build_is_reported_and_leaves_no_files(engine: Engine, tmp_path: Path) -> None:
    from corrigenda.datasets import create_version
    from corrigenda.models import Project

    project_id = new_project(engine)
    add_examples(engine, project_id, 3)
    with transaction(engine) as session:
        project = session.get(Project, project_id)
        project.policy = {**project.policy, "split_ratios": {"train": -1}}
        version = create_version(session, project=project, flt=DatasetFilter(), formats=["jsonl"])
    outcome = build_version(engine, LocalStorage.for_data_dir(tmp_path), version.id)
    assert outcome is not None and outcome.status == "failed"
    assert outcome.event["type"] == "dataset.failed"
    with transaction(engine) as session:
        failed = session.get(DatasetVersion, version.id)
    assert failed.status == "failed" and "split ratios" in failed.error
    assert not (tmp_path / "datasets" / "demo").exists()


def test_an_agreement_of_nan_is_exported_as_null_and_left_out_of_the_manifest(
    engine: Engine, tmp_path: Path
) -> None:
    project_id = new_project(engine)
    ids = add_examples(engine, project_id, 3)
    with transaction(engine) as session:
        session.execute(
            sa.text("UPDATE example SET agreement = :nan WHERE id = :id"),
            {"nan": float("nan"), "id": ids[0]},
        )
    version = create_and_build(engine, tmp_path, project_id, ["jsonl", "parquet"])
    rows = {
        row["id"]: row
        for path in version_dir(tmp_path, version).glob("jsonl/*.jsonl")
        for row in map(orjson.loads, path.read_bytes().splitlines())
    }
    assert rows[ids[0]]["agreement"] is None
    agreement = version.manifest["agreement"]
    assert agreement["with_agreement"] == 2
    assert agreement["without_agreement"] == 1
