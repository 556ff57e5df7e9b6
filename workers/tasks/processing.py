"""Feedback processing tasks: thin wrappers that call the core with ids only."""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.exc import OperationalError

from .. import jobs
from ..context import task_engine


@shared_task(
    name="corrigenda.process_events",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=20,
)
def process_events(event_ids: list[int]) -> int:
    """Process committed feedback events by id; safe to run twice, or concurrently.

    Acked only after the batch's transaction committed: a worker killed mid-batch leaves
    the events unprocessed and the message (or the outbox sweeper) delivers them again.
    """
    return jobs.process_batch(task_engine(), event_ids)


@shared_task(
    name="corrigenda.reaggregate",
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def reaggregate() -> int:
    """Re-route clusters touched since the last run; learn reliabilities, quarantine."""
    return jobs.reaggregate(task_engine())
