"""Fixtures for dataset tests: projects with examples on both databases."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from corrigenda.datasets import LocalStorage, build_version, create_version
from corrigenda.datasets.filters import DatasetFilter
from corrigenda.db import transaction
from corrigenda.examples import upsert_example
from corrigenda.models import DatasetVersion, Project
from tests.factories import make_prediction, make_project

TEXTS = [
    "My invoice is wrong",
    'Quote "inside", comma, and\nnewline',
    "App crashes on start",
    "Please add dark mode",
    "Cancel my plan",
]


@pytest.fixture(autouse=True)
def _offline_hub() -> Iterator[None]:
    """``datasets`` must never reach for a hub in these tests."""
    old = {k: os.environ.get(k) for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")}
    os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def add_examples(
    engine: Engine,
    project_id: int,
    count: int,
    *,
    start: int = 0,
    cluster_of: Any = None,
    target_of: Any = None,
    output_of: Any = None,
    **prediction_fields: Any,
) -> list[int]:
    """Commit ``count`` predictions with an example each; returns the example ids."""
    ids = []
    with transaction(engine) as session:
        project = session.get(Project, project_id)
        for i in range(start, start + count):
            labels = project.labels or ["bug"]
            prediction = make_prediction(
                session,
                project,
                client_id=f"p-{i}",
                input={"text": f"{TEXTS[i % len(TEXTS)]} #{i}"},
                output=output_of(i) if output_of else labels[(i + 1) % len(labels)],
                cluster_id=cluster_of(i) if cluster_of else i,
                **{
                    "content_hash": f"h{i}",
                    "segment": {"locale": "en" if i % 2 else "de"},
                    **prediction_fields,
                },
            )
            example = upsert_example(
                session,
                prediction=prediction,
                target=target_of(i) if target_of else labels[i % len(labels)],
                source=("reviewed", "consensus", "implicit")[i % 3],
                provenance={"event_ids": [i]},
                agreement=(i % 5) / 4,
            )
            ids.append(example.id)
    return ids


def new_project(engine: Engine, slug: str = "demo", **kwargs: Any) -> int:
    with transaction(engine) as session:
        return make_project(session, slug, **kwargs).id


def create_and_build(
    engine: Engine, data_dir: Path, project_id: int, formats: list[str], **flt: Any
) -> DatasetVersion:
    with transaction(engine) as session:
        project = session.get(Project, project_id)
        version = create_version(
            session, project=project, flt=DatasetFilter(**flt), formats=formats
        )
    outcome = build_version(engine, LocalStorage.for_data_dir(data_dir), version.id)
    assert outcome is not None
    with transaction(engine) as session:
        version = session.get(DatasetVersion, version.id)
    assert version.status == "ready", version.error
    return version


def version_dir(data_dir: Path, version: DatasetVersion, slug: str = "demo") -> Path:
    return LocalStorage.for_data_dir(data_dir).path(f"{slug}/v{version.number}", "")
