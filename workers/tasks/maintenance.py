"""Periodic jobs run by ``celery beat``: the outbox sweeper and review lease expiry."""

from __future__ import annotations

from datetime import timedelta

from celery import current_app, shared_task

from corrigenda import processing
from corrigenda.db import transaction
from corrigenda.models import utcnow

from .. import jobs
from ..context import task_engine, task_settings

SWEEP_BATCH = jobs.BATCH
GRACE_SECONDS = 2.0
MAX_QUEUED = 100


@shared_task(name="corrigenda.sweep_outbox")
def sweep_outbox() -> int:
    """Enqueue committed events that were never processed (e.g. the broker was down).

    Events younger than the grace period are left to the enqueue that follows their commit,
    and a long backlog in the queue is not topped up again, so sweeping never floods Redis.
    """
    from .processing import process_events

    if _queued_messages() > MAX_QUEUED:
        return 0
    cutoff = utcnow() - timedelta(seconds=GRACE_SECONDS)
    with transaction(task_engine()) as session:
        ids = processing.pending_event_ids(
            session=session, limit=50 * SWEEP_BATCH, received_before=cutoff
        )
    for start in range(0, len(ids), SWEEP_BATCH):
        process_events.delay(ids[start : start + SWEEP_BATCH])
    return len(ids)


def _queued_messages() -> int:
    try:
        with current_app.connection_for_write() as connection:
            client = connection.default_channel.client
            return int(client.llen(task_settings().celery_queue))
    except Exception:  # noqa: BLE001 - unknown length: sweep anyway
        return 0


@shared_task(name="corrigenda.expire_leases")
def expire_leases() -> int:
    """Return review items whose claim lease ran out to the queue."""
    return jobs.expire_leases(task_engine())
