"""The in-process worker of the embedded default (no Redis): a background thread.

It never runs inside a request. The web app wakes it after a commit; it also wakes on a
timer, so events committed before a restart are picked up (the same outbox contract as
the Celery sweeper).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.engine import Engine

from corrigenda import processing, review
from corrigenda.db import transaction

log = logging.getLogger(__name__)
BATCH = 500
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
        while not self.stopping.is_set():
            _wakeup.wait(self.interval)
            _wakeup.clear()
            try:
                self.drain()
                with transaction(self.engine) as session:
                    review.expire_leases(session=session)
            except Exception:  # keep the worker alive; the next round retries
                log.exception("embedded worker round failed")

    def drain(self) -> int:
        """Process every pending event, batch by batch. Returns how many were processed."""
        total = 0
        while not self.stopping.is_set():
            with transaction(self.engine) as session:
                ids = processing.pending_event_ids(session=session, limit=BATCH)
                if not ids:
                    return total
                total += processing.process_events(session, event_ids=ids).processed
        return total

    def stop(self) -> None:
        self.stopping.set()
        wake()
