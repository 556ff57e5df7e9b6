"""Durability: with the broker unreachable, ingest still answers 202 and loses nothing; once
Redis is back, the sweeper gets every committed event processed exactly once."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from corrigenda.db import make_engine
from corrigenda.models import FeedbackEvent, PendingEvent
from tests.conftest import make_test_settings
from tests.factories import setup_project_with_keys
from tests.services import wait_for
from webapp import create_app
from workers.celery_app import make_celery

from .conftest import event, log, pk

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def _unprocessed(engine) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(PendingEvent)).one()[0]


def _processed_in_log(log_path) -> int:  # type: ignore[no-untyped-def]
    pattern = re.compile(r"corrigenda\.process_events\[[^\]]+\] succeeded in [0-9.]+s: (\d+)")
    return sum(int(n) for n in pattern.findall(log_path.read_text()))


class _Sweeper:
    """Stands in for celery beat: sends the sweep task every couple of seconds while polled."""

    def __init__(self, celery) -> None:  # type: ignore[no-untyped-def]
        self.celery = celery
        self.last = 0.0

    def tick(self) -> bool:
        if time.monotonic() - self.last > 2.0:
            self.celery.send_task("corrigenda.sweep_outbox")
            self.last = time.monotonic()
        return True


@pytest.mark.redis
@pytest.mark.postgres
def test_broker_down_then_back_every_event_processed_once(
    pg_url, redis_url, celery_queue, celery_worker, tmp_path
) -> None:
    engine = make_engine(pg_url)
    keys = setup_project_with_keys(engine)
    down = create_app(
        make_test_settings(pg_url, tmp_path, redis_url=DEAD_REDIS, celery_queue=celery_queue)
    )
    client = down.test_client()
    tokens = [log(client, keys, f"p-{i}") for i in range(20)]
    batch = {"events": [event(token=t, kind="reject") for t in tokens]}
    response = client.post("/api/v1/feedback", json=batch, headers=pk(keys))
    assert response.status_code == 202
    assert {r["status"] for r in response.json["results"]} == {"accepted"}
    singles = [
        client.post("/api/v1/feedback", json=event(token=t), headers=pk(keys)) for t in tokens[:5]
    ]
    assert {s.status_code for s in singles} == {202}
    assert _unprocessed(engine) == 25  # committed, waiting in the outbox

    # Redis is back: the periodic sweeper (a beat task) enqueues what is still pending.
    celery = make_celery(
        make_test_settings(pg_url, tmp_path, redis_url=redis_url, celery_queue=celery_queue)
    )
    sweeps = _Sweeper(celery)
    wait_for(lambda: sweeps.tick() and _unprocessed(engine) == 0, timeout=90, message="not swept")

    # New events on the healthy broker are enqueued straight after commit.
    up = create_app(
        make_test_settings(pg_url, tmp_path, redis_url=redis_url, celery_queue=celery_queue)
    )
    more = up.test_client().post(
        "/api/v1/feedback",
        json={"events": [event(token=t, kind="flag") for t in tokens[:3]]},
        headers=pk(keys),
    )
    assert more.status_code == 202
    wait_for(lambda: _unprocessed(engine) == 0, timeout=30, message="new events not processed")

    # Exactly once: every event stored once, and the processing tasks together report each
    # event processed once (a re-run of process_events skips processed events and says 0).
    celery.send_task("corrigenda.sweep_outbox")
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(FeedbackEvent)).one()[0] == 28
    wait_for(lambda: _processed_in_log(celery_worker.log_path) == 28, timeout=30)
    for app in (down, up):
        app.extensions["corrigenda.engine"].dispose()
    engine.dispose()
