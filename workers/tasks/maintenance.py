"""Periodic jobs run by ``celery beat``: the outbox sweeper and review lease expiry."""

from __future__ import annotations

from celery import shared_task

from corrigenda import processing
from corrigenda.db import transaction

from .. import jobs
from ..context import task_engine

SWEEP_BATCH = 500


@shared_task(name="corrigenda.sweep_outbox")
def sweep_outbox() -> int:
    """Enqueue committed events that were never processed (e.g. the broker was down)."""
    from .processing import process_events

    with transaction(task_engine()) as session:
        ids = processing.pending_event_ids(session=session, limit=50 * SWEEP_BATCH)
    for start in range(0, len(ids), SWEEP_BATCH):
        process_events.delay(ids[start : start + SWEEP_BATCH])
    return len(ids)


@shared_task(name="corrigenda.expire_leases")
def expire_leases() -> int:
    """Return review items whose claim lease ran out to the queue."""
    return jobs.expire_leases(task_engine())
