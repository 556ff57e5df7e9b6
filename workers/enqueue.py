"""The one seam through which the web app hands work to the workers.

Called after the events' transaction has committed, with ids only. Never raises: if the
broker cannot be reached the events stay unprocessed in the database and the outbox
sweeper (beat, or the embedded worker's loop) enqueues them later.
"""

from __future__ import annotations

import logging

from celery import Celery

from . import embedded

log = logging.getLogger(__name__)


def enqueue_events(celery: Celery | None, event_ids: list[int]) -> bool:
    """Ask for ``event_ids`` to be processed. True if handed over, False if left to the sweeper."""
    if not event_ids:
        return True
    if celery is None:
        embedded.ingested(len(event_ids))
        return True
    try:
        celery.send_task("corrigenda.process_events", args=[event_ids], retry=False)
    except Exception as exc:  # noqa: BLE001 - any broker failure is recovered by the sweeper
        log.warning("broker unavailable, %d events left to the sweeper: %s", len(event_ids), exc)
        return False
    return True
