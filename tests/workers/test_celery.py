"""Real Celery workers on PostgreSQL + Redis: processing, sweeping, kill -9, two workers."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from celery import Celery
from sqlmodel import Session, select

from corrigenda.bulk import PROCESSING_LOCK_CLASS
from corrigenda.db import make_engine, transaction
from corrigenda.models import Prediction, Project, ReviewItem, utcnow
from tests.conftest import worker_env
from tests.services import CeleryWorkerProcess, wait_for
from tests.workers.helpers import build_workload, set_policy, snapshot
from workers.celery_app import beat_schedule, make_celery
from workers.enqueue import enqueue_events

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def processed_all(engine) -> bool:  # type: ignore[no-untyped-def]
    return snapshot(engine)["pending"] == 0


def build_two_projects(engine) -> list[int]:  # type: ignore[no-untyped-def]
    first = build_workload(engine, slug="alpha", events=80, seed=1)
    return first + build_workload(engine, slug="beta", events=80, seed=2)


def test_enqueued_batches_are_processed_like_an_in_process_run(
    celery_worker: CeleryWorkerProcess, celery_client: Celery, pg_url: str, undisturbed
) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(pg_url)
    ids = build_two_projects(engine)
    for start in range(0, len(ids), 40):
        assert enqueue_events(celery_client, ids[start : start + 40])
    wait_for(lambda: processed_all(engine), timeout=90, message="events not processed")
    state = snapshot(engine)
    assert state == undisturbed(build_two_projects)
    assert state["examples"] and state["items"]
    engine.dispose()


def test_the_outbox_sweeper_enqueues_events_nobody_enqueued(
    celery_worker: CeleryWorkerProcess, celery_client: Celery, pg_url: str
) -> None:
    engine = make_engine(pg_url)
    build_workload(engine, events=30)
    celery_client.send_task("corrigenda.sweep_outbox")
    wait_for(lambda: processed_all(engine), timeout=60, message="sweeper did not catch up")
    engine.dispose()


def test_beat_reaggregation_audits_predictions_shown_without_feedback(
    celery_worker: CeleryWorkerProcess, celery_client: Celery, pg_url: str
) -> None:
    assert {"sweep-outbox", "expire-leases", "reaggregate"} <= set(
        beat_schedule(celery_client.conf["corrigenda_settings"] and _settings(celery_client))
    )
    engine = make_engine(pg_url)
    build_workload(engine, predictions=5, events=0)
    with transaction(engine) as session:
        for prediction in session.exec(select(Prediction)):
            prediction.shown_at = utcnow()
        project_id = session.exec(select(Project.id)).one()
    set_policy(engine, project_id, audit_rate=1.0)
    celery_client.send_task("corrigenda.reaggregate")

    def audited() -> bool:
        with Session(engine) as session:
            return (
                len(session.exec(select(ReviewItem).where(ReviewItem.reason == "audit")).all()) == 5
            )

    wait_for(audited, timeout=60, message="re-aggregation did not draw the audit sample")
    engine.dispose()


def _settings(celery: Celery):  # type: ignore[no-untyped-def]
    from corrigenda.settings import Settings

    return Settings(**celery.conf["corrigenda_settings"])


def waiting_on_processing_lock(admin: psycopg.Connection) -> int:
    row = admin.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND classid = %s",
        (PROCESSING_LOCK_CLASS,),
    ).fetchone()
    return int(row[0]) if row else 0


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(
    pg_url: str,
    redis_url: str,
    celery_queue: str,
    celery_client: Celery,
    tmp_path: Path,
    undisturbed,  # type: ignore[no-untyped-def]
) -> None:
    engine = make_engine(pg_url)
    ids = build_two_projects(engine)
    with Session(engine) as session:
        beta = session.exec(select(Project.id).where(Project.slug == "beta")).one()
    env = worker_env(pg_url, redis_url, celery_queue, tmp_path)
    admin = psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True)
    # Hold beta's processing lock: the worker writes alpha's outcome, then blocks mid-batch.
    admin.execute("SELECT pg_advisory_lock(%s, %s)", (PROCESSING_LOCK_CLASS, beta))
    doomed = CeleryWorkerProcess(env, "doomed").start()
    try:
        enqueue_events(celery_client, ids)
        wait_for(lambda: waiting_on_processing_lock(admin) == 1, timeout=60, message="no batch")
        doomed.kill()
    finally:
        admin.execute("SELECT pg_advisory_unlock(%s, %s)", (PROCESSING_LOCK_CLASS, beta))
        doomed.kill()
    assert snapshot(engine)["pending"] == len(ids)  # the killed batch committed nothing
    successor = CeleryWorkerProcess(env, "successor").start()
    try:

        def recovered() -> bool:
            celery_client.send_task("corrigenda.sweep_outbox")
            return processed_all(engine)

        wait_for(recovered, timeout=90, interval=1.0, message="events lost after kill -9")
    finally:
        successor.stop()
        admin.close()
    assert snapshot(engine) == undisturbed(build_two_projects)
    engine.dispose()


def test_two_workers_share_the_stream_without_double_work(
    celery_worker: CeleryWorkerProcess,
    pg_url: str,
    redis_url: str,
    celery_queue: str,
    celery_client: Celery,
    tmp_path: Path,
    undisturbed,  # type: ignore[no-untyped-def]
) -> None:
    engine = make_engine(pg_url)

    def three_projects(target) -> list[int]:  # type: ignore[no-untyped-def]
        return [
            i
            for n, slug in enumerate(("one", "two", "three"))
            for i in build_workload(target, slug=slug, events=100, seed=10 + n)
        ]

    ids = three_projects(engine)
    second = CeleryWorkerProcess(worker_env(pg_url, redis_url, celery_queue, tmp_path), "w2")
    second.start()
    try:
        for start in range(0, len(ids), 20):
            enqueue_events(celery_client, ids[start : start + 20])
        # overlapping redeliveries: both workers see the same ids again
        for start in range(0, len(ids), 50):
            enqueue_events(celery_client, ids[start : start + 50])
        wait_for(lambda: processed_all(engine), timeout=120, message="events not processed")
    finally:
        second.stop()
    state = snapshot(engine)
    assert state == undisturbed(three_projects)
    open_items = [i for i in state["items"] if i[3] in ("pending", "claimed")]
    assert len({i[0] for i in open_items}) == len(open_items)
    for worker in (celery_worker, second):
        assert "succeeded" in worker.log_path.read_text(), f"{worker.name} did no work"
    engine.dispose()


def test_make_celery_sets_late_acks_and_reject_on_worker_lost(tmp_path: Path) -> None:
    from tests.conftest import make_test_settings

    celery = make_celery(make_test_settings("sqlite://", tmp_path, redis_url="redis://127.0.0.1"))
    assert celery.conf.task_acks_late and celery.conf.task_reject_on_worker_lost
    celery.loader.import_default_modules()
    task = celery.tasks["corrigenda.process_events"]
    assert task.acks_late and task.reject_on_worker_lost and task.autoretry_for
