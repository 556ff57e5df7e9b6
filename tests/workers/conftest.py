"""Fixtures for the worker tests: a Celery client on this session's queue, a baseline run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from corrigenda.db import make_engine
from corrigenda.models import metadata
from tests.conftest import make_test_settings
from tests.workers.helpers import snapshot
from workers.celery_app import make_celery
from workers.jobs import drain_events


@pytest.fixture
def celery_client(pg_url: str, redis_url: str, celery_queue: str, tmp_path: Path) -> Celery:
    """A Celery app that publishes to this test session's queue (what the web app uses)."""
    settings = make_test_settings(pg_url, tmp_path, redis_url=redis_url, celery_queue=celery_queue)
    return make_celery(settings)


@pytest.fixture
def undisturbed(tmp_path: Path) -> Iterator[Callable[[Callable[[Any], Any]], dict[str, Any]]]:
    """Run a workload builder on a fresh SQLite database in-process: the expected outcome."""
    engines = []

    def run(build: Callable[[Any], Any]) -> dict[str, Any]:
        engine = make_engine(f"sqlite:///{tmp_path / f'baseline{len(engines)}.db'}")
        engines.append(engine)
        metadata.create_all(engine)
        build(engine)
        drain_events(engine)
        return snapshot(engine)

    yield run
    for engine in engines:
        engine.dispose()
