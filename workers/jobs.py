"""Periodic jobs shared by ``celery beat`` (through tasks) and the embedded worker.

Each job takes an engine, does one bounded round of work in its own transactions and returns
how much it did. Register a job here once; the embedded worker runs every job each round.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext

import orjson
import psycopg.types.json
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from corrigenda import processing, review
from corrigenda.db import sqlite_write_lock, transaction
from corrigenda.metrics.jobs import update_metrics
from corrigenda.models import Project

from .tasks.datasets import build_pending_datasets_job as build_pending_datasets

# Events per transaction when draining (and per task from the sweeper). A batch costs a
# fixed ~30 statements and a commit whatever its size; at 500 events that fixed part was
# most of the time (docs/benchmarks.md, Processing).
BATCH = 5000
# SQLite (the embedded worker) has one writer at a time: smaller batches, each under the
# engine's in-process write lock, keep the web app's writes from waiting long behind one
# (~0.1-0.25 s at 500 under sustained ingest); 100 left each batch's fixed cost (re-reading
# the touched clusters) to too few events and the worker fell behind at ~600 events/s.
SQLITE_BATCH = 500
# The embedded worker takes up to this many when it has fallen behind (see workers/embedded.py).
SQLITE_MAX_BATCH = 5000

# Processing reads tens of thousands of small JSON values (labels, opinion values) per
# second; psycopg decodes json/jsonb with the standard library, orjson is several times
# faster and returns the same Python values.
psycopg.types.json.set_json_loads(orjson.loads)
# Dawid–Skene and quarantine scan whole projects: at most this often per process.
LEARN_INTERVAL_SECONDS = 60.0
_last_learned = [float("-inf")]

log = logging.getLogger(__name__)


def process_batch(engine: Engine, event_ids: list[int]) -> int:
    """Process one micro-batch in one transaction; isolate events that break it.

    A transient database error (``OperationalError``) propagates so the caller retries the
    whole batch. Any other failure re-runs the events one by one, each in its own
    transaction, and sets aside the ones that still fail, with the error as the reason.
    """
    try:
        with transaction(engine) as session:
            return processing.process_events(session, event_ids=event_ids).processed
    except OperationalError:
        raise
    except Exception:
        log.exception("batch of %d events failed; isolating the bad ones", len(event_ids))
    return sum(_process_one(engine, event_id) for event_id in event_ids)


def _process_one(engine: Engine, event_id: int) -> int:
    try:
        with transaction(engine) as session:
            return processing.process_events(session, event_ids=[event_id]).processed
    except OperationalError:
        raise
    except Exception as exc:  # noqa: BLE001 - the reason is recorded for the admins
        with transaction(engine) as session:
            processing.set_aside(session, event_id=event_id, reason=f"{type(exc).__name__}: {exc}")
        return 0


def drain_events(
    engine: Engine,
    before_batch: Callable[[], int] | None = None,
    processed: Callable[[int], None] = lambda count: None,
) -> int:
    """Process every pending feedback event, batch by batch. ``before_batch()`` says how many
    events the next batch takes, 0 to stop (the embedded worker also lets ingest requests
    write first there); by default a fixed batch per database. ``processed(count)`` is told
    after each batch."""
    total = 0
    sqlite = engine.dialect.name == "sqlite"
    fixed = SQLITE_BATCH if sqlite else BATCH
    while (limit := before_batch() if before_batch else fixed) > 0:
        with sqlite_write_lock(engine) if sqlite else nullcontext():
            with transaction(engine) as session:
                ids = processing.pending_event_ids(session=session, limit=limit)
            done = process_batch(engine, ids) if ids else 0
        if done == 0:  # none pending, or all locked by another worker or set aside
            return total
        total += done
        processed(done)
    return total


def reaggregate(engine: Engine) -> int:
    """Re-route clusters touched since their last aggregation, per project; learn
    reliabilities and quarantine at most every ``LEARN_INTERVAL_SECONDS``."""
    learn = time.monotonic() - _last_learned[0] >= LEARN_INTERVAL_SECONDS
    if learn:
        _last_learned[0] = time.monotonic()
    with transaction(engine) as session:
        project_ids = list(session.exec(select(Project.id)))
    routed = 0
    for project_id in project_ids:
        with transaction(engine) as session:
            project = session.get(Project, project_id)
            if project is not None:
                outcome = processing.reaggregate_project(session, project=project, learn=learn)
                routed += outcome.clusters_routed
    return routed


def expire_leases(engine: Engine) -> int:
    with transaction(engine) as session:
        return review.expire_leases(session=session)


# Run by the embedded worker on every wake-up, after draining events (a dataset version
# request wakes it too).
EMBEDDED_ON_WAKE_JOBS: list[Callable[[Engine], int]] = [build_pending_datasets]

# Run by the embedded worker once per interval, in this order.
EMBEDDED_PERIODIC_JOBS: list[Callable[[Engine], int]] = [
    expire_leases,
    update_metrics,
    reaggregate,
]
