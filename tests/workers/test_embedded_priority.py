"""The embedded worker lets ingest go first, but never defers without bound."""

from __future__ import annotations

import time

import pytest

from corrigenda.db import make_engine
from workers import embedded, jobs


@pytest.fixture
def worker():
    engine = make_engine("sqlite://")
    saved = dict(embedded._ingest)
    yield embedded.EmbeddedWorker(engine)
    embedded._ingest.update(saved)
    engine.dispose()


def test_a_full_batch_is_processed_while_ingest_is_busy(worker) -> None:
    embedded._ingest["backlog"] = 0
    embedded.ingested(jobs.SQLITE_BATCH)
    started = time.monotonic()
    assert worker._before_batch() == jobs.SQLITE_BATCH  # go on with the batch
    assert time.monotonic() - started < embedded.MAX_DEFER_SECONDS / 2


def test_a_partial_batch_waits_while_ingest_is_busy(worker, monkeypatch) -> None:
    monkeypatch.setattr(embedded, "MAX_DEFER_SECONDS", 0.3)
    embedded._ingest["backlog"] = 0
    # One event, far from a full batch: an earlier test's web app may still report a few
    # committed events from its outbox thread while this one waits.
    embedded.ingested(1)
    started = time.monotonic()
    assert worker._before_batch() == jobs.SQLITE_BATCH  # the deferral ends: none is left
    assert time.monotonic() - started >= 0.3


def test_a_worker_behind_takes_larger_batches_up_to_a_bound(worker) -> None:
    embedded._ingest["backlog"] = 0
    embedded.ingested(6 * jobs.SQLITE_BATCH)
    assert worker._before_batch() == 3 * jobs.SQLITE_BATCH
    embedded.ingested(10 * jobs.SQLITE_MAX_BATCH)
    assert worker._before_batch() == jobs.SQLITE_MAX_BATCH


def test_processed_events_leave_the_backlog(worker) -> None:
    embedded._ingest["backlog"] = 0
    embedded.ingested(jobs.SQLITE_BATCH + 5)
    worker._limit = jobs.SQLITE_BATCH + 5
    worker._processed(jobs.SQLITE_BATCH)
    assert embedded._ingest["backlog"] == 5  # the next batch waits to fill up again


def test_after_a_full_batch_the_next_goes_without_waiting(worker) -> None:
    embedded._ingest["backlog"] = 0
    embedded.ingested(1)  # ingest is busy; older events (before a restart) are not counted
    worker._limit = jobs.SQLITE_BATCH
    worker._processed(jobs.SQLITE_BATCH)
    started = time.monotonic()
    assert worker._before_batch() == jobs.SQLITE_BATCH
    assert time.monotonic() - started < embedded.MAX_DEFER_SECONDS / 2


def test_stopping_ends_a_deferral(worker) -> None:
    embedded._ingest["backlog"] = 0
    embedded.ingested(1)
    worker.stop()
    assert worker._before_batch() == 0


def test_no_deferral_when_ingest_is_quiet(worker) -> None:
    embedded._ingest.update(last=float("-inf"), backlog=0)
    started = time.monotonic()
    assert worker._before_batch() == jobs.SQLITE_BATCH
    assert time.monotonic() - started < embedded.QUIET_SECONDS
