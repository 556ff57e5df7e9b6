"""Feedback processing tasks."""

from __future__ import annotations

from celery import shared_task

from corrigenda import processing
from corrigenda.db import transaction

from ..context import task_engine


@shared_task(name="corrigenda.process_events", acks_late=True, reject_on_worker_lost=True)
def process_events(event_ids: list[int]) -> int:
    """Process committed feedback events by id; safe to run twice."""
    with transaction(task_engine()) as session:
        return processing.process_events(session, event_ids=event_ids).processed
