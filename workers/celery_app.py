"""The Celery app, configured from Corrigenda settings.

Run a worker for the scale-out path with ``corrigenda worker`` (or
``celery -A workers.celery_app worker``); configuration comes from ``CORRIGENDA_*``.
"""

from __future__ import annotations

from celery import Celery

from corrigenda.settings import Settings

TASK_MODULES = [
    "workers.tasks.processing",
    "workers.tasks.maintenance",
    "workers.tasks.datasets",
    "workers.tasks.metrics",
]

# Re-route clusters touched since the last run (and learn reliabilities) this often.
REAGGREGATE_SECONDS = 60.0


def make_celery(settings: Settings) -> Celery:
    celery = Celery("corrigenda", broker=settings.redis_url, include=TASK_MODULES)
    celery.conf.update(
        task_default_queue=settings.celery_queue,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        # Publishing must fail fast when Redis is down: the outbox sweeper catches up later.
        broker_transport_options={"socket_connect_timeout": 1, "socket_timeout": 2},
        beat_schedule=beat_schedule(settings),
        corrigenda_database_url=settings.resolved_database_url(),
        corrigenda_settings=settings.model_dump(mode="json"),
    )
    return celery


def beat_schedule(settings: Settings) -> dict[str, dict[str, object]]:
    return {
        "sweep-outbox": {
            "task": "corrigenda.sweep_outbox",
            "schedule": settings.sweep_interval_seconds,
        },
        "expire-leases": {"task": "corrigenda.expire_leases", "schedule": 30.0},
        "update-metrics": {"task": "corrigenda.update_metrics", "schedule": 30.0},
        "reaggregate": {"task": "corrigenda.reaggregate", "schedule": REAGGREGATE_SECONDS},
        "build-pending-datasets": {"task": "corrigenda.build_pending_datasets", "schedule": 60.0},
    }


app = make_celery(Settings())
