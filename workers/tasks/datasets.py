"""Building dataset versions, and telling the project's webhook when one is ready or failed."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from sqlalchemy.engine import Engine

from corrigenda.datasets import build_pending, build_version
from corrigenda.datasets.storage import LocalStorage, data_dir_for
from corrigenda.db import transaction
from corrigenda.models import DatasetVersion, Project
from corrigenda.webhooks import send_webhook

from ..context import task_engine, task_settings

log = logging.getLogger(__name__)


@shared_task(name="corrigenda.build_dataset", acks_late=True, reject_on_worker_lost=True)
def build_dataset(version_id: int) -> str | None:
    """Build one dataset version by id; a second delivery finds it claimed and does nothing."""
    engine = task_engine()
    storage = LocalStorage.for_data_dir(task_settings().data_dir)
    outcome = build_version(engine, storage, version_id)
    if outcome is None:
        return None
    if outcome.event is not None:
        notify(engine, version_id, outcome.event)
    return outcome.status


@shared_task(name="corrigenda.build_pending_datasets")
def build_pending_datasets() -> int:
    """Sweep: build versions whose message was lost or whose worker died mid-build."""
    return build_pending(task_engine(), task_settings().data_dir, send=_notifier(task_engine()))


def build_pending_datasets_job(engine: Engine) -> int:
    """The embedded worker's periodic job: build pending versions, then notify."""
    return build_pending(engine, data_dir_for(engine), send=_notifier(engine))


def _notifier(engine: Engine) -> Any:
    return lambda version_id, event: notify(engine, version_id, event)


def notify(engine: Engine, version_id: int, event: dict[str, Any]) -> bool:
    """POST the signed event to the project's webhook, if it has one (after commit)."""
    with transaction(engine) as session:
        version = session.get(DatasetVersion, version_id)
        project = session.get(Project, version.project_id) if version else None
        if project is None or not project.webhook_url:
            return False
        url, secret = project.webhook_url, project.webhook_secret or ""
    return send_webhook(url, secret, event["type"], event["payload"]).delivered
