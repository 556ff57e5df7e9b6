"""Handing committed events to the workers, after commit, with ids only.

Events are already durable when this runs: if the broker is down, ``enqueue_events``
returns False and the outbox sweeper picks the events up later. After a failure we stop
trying for a few seconds, so an unreachable broker does not add its connect timeout to
every request while it is down.
"""

from __future__ import annotations

import threading
import time

from flask import current_app

from workers.enqueue import enqueue_events

BROKER_BACKOFF_SECONDS = 5.0


class BrokerBreaker:
    def __init__(self) -> None:
        self._closed_after = 0.0
        self._lock = threading.Lock()

    def open(self) -> bool:
        return time.monotonic() < self._closed_after

    def trip(self) -> None:
        with self._lock:
            self._closed_after = time.monotonic() + BROKER_BACKOFF_SECONDS


def enqueue_committed(event_ids: list[int]) -> bool:
    """Enqueue processing of committed events; False means the sweeper will do it."""
    if not event_ids:
        return True
    celery = current_app.extensions.get("corrigenda.celery")
    breaker: BrokerBreaker = current_app.extensions.setdefault(
        "corrigenda.broker_breaker", BrokerBreaker()
    )
    if celery is not None and breaker.open():
        return False
    handed_over = enqueue_events(celery, event_ids)
    if not handed_over:
        breaker.trip()
    return handed_over
