"""Handing committed events to the workers, after commit, with ids only.

Events are already durable when this runs, so the hand-over is off the request path: the
view drops the committed ids into this process's publisher, which sends them to the broker
from a background thread — one ``process_events`` task for everything committed since its
last send, and at most one send every ``PUBLISH_EVERY_SECONDS``. (Celery's ``send_task``
costs ~1 ms of Python plus a broker round trip; a publisher that sent as soon as anything
was pending sent about once per request under load, a thread wake-up and a share of the
GIL per request, and cost ~0.7 ms of CPU per single-event request.) If the broker is down,
or this process dies before the send, the outbox sweeper enqueues the
committed-but-unprocessed events later.
After a failure we stop trying for a few seconds, so an unreachable broker does not cost
a connect timeout per batch while it is down.

In the embedded default (no broker) the same thread wakes the in-process worker, at most
every ``EMBEDDED_WAKE_SECONDS``: each wake-up starts a full worker round, and one round per
request starved the web threads (23 requests/s instead of 280 in the benchmark).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from celery import Celery
from flask import current_app

from workers.enqueue import enqueue_events

log = logging.getLogger(__name__)

BROKER_BACKOFF_SECONDS = 5.0
MAX_IDS_PER_TASK = 5_000
IDLE_EXIT_SECONDS = 30.0
EMBEDDED_WAKE_SECONDS = 0.5
PUBLISH_EVERY_SECONDS = 0.1


class BrokerBreaker:
    def __init__(self) -> None:
        self._closed_after = 0.0
        self._lock = threading.Lock()

    def open(self) -> bool:
        return time.monotonic() < self._closed_after

    def trip(self) -> None:
        with self._lock:
            self._closed_after = time.monotonic() + BROKER_BACKOFF_SECONDS


class Publisher:
    """Coalesces committed event ids and publishes them from one background thread."""

    def __init__(self, celery: Celery | None, pace_seconds: float) -> None:
        self.celery = celery
        self.pace_seconds = pace_seconds
        self.breaker = BrokerBreaker()
        self._pending: list[int] = []
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def submit(self, event_ids: list[int]) -> bool:
        """Queue ids for publishing; False if the broker is known down (the sweeper will)."""
        if self.breaker.open():
            return False
        with self._wakeup:
            self._pending.extend(event_ids)
            self._ensure_thread()
            self._wakeup.notify()  # a no-op unless the thread is idle (not while pacing)
        return True

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():  # forked: the parent's thread does not exist here
            self._pid, self._thread = os.getpid(), None
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="corrigenda-outbox-publisher", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                if not self._pending:
                    self._wakeup.wait(IDLE_EXIT_SECONDS)
                if not self._pending:
                    self._thread = None  # idle: exit; the next submit starts a new thread
                    return
                batch = self._pending[:MAX_IDS_PER_TASK]
                del self._pending[:MAX_IDS_PER_TASK]
            self._publish(batch)
            if self.pace_seconds:
                time.sleep(self.pace_seconds)  # pacing: what comes meanwhile goes in one send

    def _publish(self, event_ids: list[int]) -> None:
        if self.breaker.open():
            return  # left to the sweeper
        try:
            handed_over = enqueue_events(self.celery, event_ids)
        except Exception:  # never let the publisher thread die
            log.exception("could not enqueue %d events; the sweeper will", len(event_ids))
            handed_over = False
        if not handed_over:
            self.breaker.trip()


def enqueue_committed(event_ids: list[int]) -> bool:
    """Enqueue processing of committed events; False means the sweeper will do it."""
    if not event_ids:
        return True
    publisher: Publisher | None = current_app.extensions.get("corrigenda.outbox_publisher")
    if publisher is None:
        celery = current_app.extensions.get("corrigenda.celery")
        pace = EMBEDDED_WAKE_SECONDS if celery is None else PUBLISH_EVERY_SECONDS
        publisher = current_app.extensions.setdefault(
            "corrigenda.outbox_publisher", Publisher(celery, pace)
        )
    return publisher.submit(event_ids)
