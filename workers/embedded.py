"""The in-process worker of the embedded default (no Redis): a background thread.

It never runs inside a request. The web app wakes it after a commit; it also wakes on a
timer, so events committed before a restart are picked up (the same outbox contract as
the Celery sweeper). Periodic jobs come from ``workers.jobs``.

Ingest has priority over processing (SQLite has one writer): while events keep arriving
the worker waits for a full batch (``jobs.SQLITE_BATCH`` events), at most
``MAX_DEFER_SECONDS``. A batch has a fixed cost (each touched cluster's opinions are read
again, a commit) that a handful of events cannot carry: a worker that took whatever was
pending under sustained load ran batches of 8 events back to back and fell behind. Behind
(a backlog of several batches), it takes half the backlog at once, up to
``jobs.SQLITE_MAX_BATCH``: that fixed cost grows with a cluster (a prediction shown to
thousands of users), and only larger batches let the worker catch up again, at the price
of longer waits for requests. Between its batches it lets waiting requests write.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.engine import Engine

from . import jobs

log = logging.getLogger(__name__)
_wakeup = threading.Event()

# Ingest counts as busy while it committed events within the last QUIET_SECONDS (the web
# app's outbox wakes us at most every 0.5 s, webapp/api/outbox.py EMBEDDED_WAKE_SECONDS).
QUIET_SECONDS = 1.0
MAX_DEFER_SECONDS = 5.0
# Events committed and not processed yet: an estimate (the web app reports them at most every
# 0.5 s; events from before a restart are not counted), reset when caught up.
_ingest = {"last": float("-inf"), "backlog": 0}


def wake() -> None:
    _wakeup.set()


def ingested(count: int) -> None:
    """Called after ``count`` events committed: note it, and wake the worker."""
    _ingest["last"] = time.monotonic()
    _ingest["backlog"] += count
    _wakeup.set()


def _ingest_busy() -> bool:
    return time.monotonic() - _ingest["last"] < QUIET_SECONDS


class EmbeddedWorker(threading.Thread):
    def __init__(self, engine: Engine, interval: float = 5.0) -> None:
        super().__init__(name="corrigenda-embedded-worker", daemon=True)
        self.engine = engine
        self.interval = interval
        self.stopping = threading.Event()
        self._limit = jobs.SQLITE_BATCH  # the size of the batch being processed

    def run(self) -> None:
        last_periodic = float("-inf")
        while not self.stopping.is_set():
            _wakeup.wait(self.interval)
            _wakeup.clear()
            # A wake-up after ingest only needs the queues drained; the periodic jobs (metrics,
            # re-aggregation, leases) scan more and run once per interval.
            periodic = time.monotonic() - last_periodic >= self.interval
            if periodic:
                last_periodic = time.monotonic()
            self.run_round(periodic=periodic)

    def run_round(self, *, periodic: bool = True) -> None:
        """Drain pending work, then (when due) each periodic job; a failing job never stops
        the others."""
        due = jobs.EMBEDDED_PERIODIC_JOBS if periodic else []
        for job in [self.drain, *jobs.EMBEDDED_ON_WAKE_JOBS, *due]:
            if self.stopping.is_set():
                return
            try:
                job(self.engine)
            except Exception:  # keep the worker alive; the next round retries
                log.exception("embedded worker job %s failed", getattr(job, "__name__", job))

    def drain(self, engine: Engine) -> int:
        done = jobs.drain_events(engine, before_batch=self._before_batch, processed=self._processed)
        _ingest["backlog"] = 0  # drained until none was pending (or asked to stop)
        return done

    def _before_batch(self) -> int:
        """How many events the next batch takes (0: stop). Let ingest go first: while events
        keep arriving, wait for a full batch, at most ``MAX_DEFER_SECONDS``; then step aside
        a moment so requests queued on the write lock take it before the batch."""
        deadline = time.monotonic() + MAX_DEFER_SECONDS
        while (
            _ingest_busy()
            and time.monotonic() < deadline
            and _ingest["backlog"] < jobs.SQLITE_BATCH
            and not self.stopping.wait(0.05)
        ):
            pass
        if _ingest_busy():
            time.sleep(0.001)  # release the GIL so a request blocked on the lock takes it
        if self.stopping.is_set():
            return 0
        half = int(_ingest["backlog"]) // 2
        self._limit = min(max(jobs.SQLITE_BATCH, half), jobs.SQLITE_MAX_BATCH)
        return self._limit

    def _processed(self, count: int) -> None:
        """Count a batch out of the backlog estimate. A full batch means more are likely
        pending, also those the estimate never saw (committed before a restart): the next
        one goes without waiting."""
        floor = jobs.SQLITE_BATCH if count >= self._limit else 0
        _ingest["backlog"] = max(floor, _ingest["backlog"] - count)

    def stop(self) -> None:
        self.stopping.set()
        wake()

    def stop_and_join(self, timeout: float = 10.0) -> None:
        """Stop after the current job (a batch commits or rolls back as a whole)."""
        self.stop()
        if self.is_alive():
            self.join(timeout)
