"""Periodic jobs shared by ``celery beat`` (through tasks) and the embedded worker.

Each job takes an engine, does one bounded round of work in its own transactions and returns
how much it did. Register a job here once; the embedded worker runs every job each round.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine

from corrigenda import processing, review
from corrigenda.db import transaction

from .tasks.datasets import build_pending_datasets_job as build_pending_datasets

BATCH = 500


def drain_events(engine: Engine, stop: Callable[[], bool] = lambda: False) -> int:
    """Process every pending feedback event, batch by batch."""
    total = 0
    while not stop():
        with transaction(engine) as session:
            ids = processing.pending_event_ids(session=session, limit=BATCH)
            if not ids:
                return total
            total += processing.process_events(session, event_ids=ids).processed
    return total


def expire_leases(engine: Engine) -> int:
    with transaction(engine) as session:
        return review.expire_leases(session=session)


# Run by the embedded worker every round, in this order.
EMBEDDED_PERIODIC_JOBS: list[Callable[[Engine], int]] = [expire_leases, build_pending_datasets]
