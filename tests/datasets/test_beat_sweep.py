"""In Redis mode, beat sweeps pending dataset versions: one whose message was lost is built."""

from __future__ import annotations

from pathlib import Path

from corrigenda.datasets import DatasetFilter, create_version
from corrigenda.db import make_engine, transaction
from corrigenda.models import DatasetVersion, Project
from tests.conftest import make_test_settings, worker_env
from tests.datasets.conftest import add_examples, new_project
from tests.services import CeleryWorkerProcess, wait_for
from workers.celery_app import beat_schedule, make_celery


def test_beat_builds_a_version_whose_message_was_lost(
    pg_url: str, redis_url: str, celery_queue: str, tmp_path: Path
) -> None:
    settings = make_test_settings(pg_url, tmp_path, redis_url=redis_url, celery_queue=celery_queue)
    entries = [e for e in beat_schedule(settings).values() if "dataset" in str(e["task"])]
    assert [e["task"] for e in entries] == ["corrigenda.build_pending_datasets"]
    engine = make_engine(pg_url)
    project_id = new_project(engine)
    add_examples(engine, project_id, 6)
    with transaction(engine) as session:  # committed, never enqueued: the message is "lost"
        project = session.get(Project, project_id)
        version_id = create_version(
            session, project=project, flt=DatasetFilter(), formats=["jsonl"]
        ).id
    worker = CeleryWorkerProcess(
        worker_env(pg_url, redis_url, celery_queue, tmp_path), "beat-ds"
    ).start()
    try:
        make_celery(settings).send_task(str(entries[0]["task"]))  # what beat sends

        def built() -> bool:
            with transaction(engine) as session:
                return session.get(DatasetVersion, version_id).status == "ready"

        wait_for(built, timeout=60, message="the sweep did not build the pending version")
    finally:
        worker.stop()
        engine.dispose()
    assert (tmp_path / "worker-data" / "datasets" / "demo" / "v1" / "manifest.json").exists()
