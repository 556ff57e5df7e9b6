"""The rollup task on a real Celery worker, the embedded job, the CLI and Prometheus /metrics."""

from __future__ import annotations

from click.testing import CliRunner
from sqlmodel import Session, select

from corrigenda.db import make_engine, transaction
from corrigenda.metrics.jobs import update_metrics
from corrigenda.models import MetricRollup
from tests.conftest import make_test_settings
from tests.services import wait_for
from workers import jobs
from workers.celery_app import make_celery

from .conftest import build_known_dataset, rollup_snapshot


def all_traffic_shown(engine) -> float:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        rows = session.exec(select(MetricRollup).where(MetricRollup.seg_key == "")).all()
        return sum(r.shown for r in rows)


def test_celery_worker_rolls_up(pg_url, redis_url, celery_queue, celery_worker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(pg_url)
    build_known_dataset(engine)
    settings = make_test_settings(pg_url, tmp_path, redis_url=redis_url, celery_queue=celery_queue)
    celery = make_celery(settings)
    celery.send_task("corrigenda.update_metrics", queue=celery_queue)
    wait_for(lambda: all_traffic_shown(engine) == 5, timeout=60, message="worker rolled up")
    engine.dispose()


def test_embedded_worker_runs_the_metrics_job() -> None:
    assert update_metrics in jobs.EMBEDDED_PERIODIC_JOBS


def test_rebuild_command(engine, db_url, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from corrigenda.cli import main

    build_known_dataset(engine)
    update_metrics(engine)
    expected = rollup_snapshot(engine)
    with transaction(engine) as session:  # corrupt the rollups: the rebuild must repair them
        for row in session.exec(select(MetricRollup)):
            row.shown += 7
            session.add(row)
    monkeypatch.setenv("CORRIGENDA_DATABASE_URL", db_url)
    monkeypatch.setenv("CORRIGENDA_DATA_DIR", str(tmp_path / "cli"))
    result = CliRunner().invoke(main, ["metrics", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "rebuilt metrics: 9 predictions" in result.output
    assert rollup_snapshot(engine) == expected
    result = CliRunner().invoke(main, ["metrics", "rebuild", "--project", "nope"])
    assert result.exit_code != 0 and "no project 'nope'" in result.output


def test_prometheus_endpoint(client, engine) -> None:  # type: ignore[no-untyped-def]
    build_known_dataset(engine)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    assert "corrigenda_feedback_events_ingested_total 8.0" in text
    assert "corrigenda_metrics_rollup_pending_events 8.0" in text
    assert 'corrigenda_queue_depth{queue="embedded"}' in text
    for name in ("processing_lag_seconds", "review_backlog", "dataset_builds"):
        assert f"# TYPE corrigenda_{name} gauge" in text
    update_metrics(engine)
    text = client.get("/metrics").get_data(as_text=True)
    assert "corrigenda_metrics_rollup_pending_events 0.0" in text
    assert "corrigenda_feedback_events_ingested_total 8.0" in text  # counted incrementally
