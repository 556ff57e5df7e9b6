"""The in-process worker of the embedded default (no Redis): a background thread.

It never runs inside a request. The web app wakes it after a commit; it also wakes on a
timer, so events committed before a restart are picked up (the same outbox contract as
the Celery sweeper). Periodic jobs come from ``workers.jobs``.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.engine import Engine

from . import jobs

log = logging.getLogger(__name__)
_wakeup = threading.Event()


def wake() -> None:
    _wakeup.set()


class EmbeddedWorker(threading.Thread):
    def __init__(self, engine: Engine, interval: float = 5.0) -> None:
        super().__init__(name="corrigenda-embedded-worker", daemon=True)
        self.engine = engine
        self.interval = interval
        self.stopping = threading.Event()

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
        return jobs.drain_events(engine, stop=self.stopping.is_set)

    def stop(self) -> None:
        self.stopping.set()
        wake()
