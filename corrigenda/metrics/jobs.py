"""The periodic metrics job shared by ``celery beat`` and the embedded worker."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from ..db import transaction
from .alerts import check_alerts, deliver_alerts
from .updater import drain


def update_metrics(engine: Engine) -> int:
    """Bring the rollups up to date, judge finished days for alerts, send alert webhooks
    (after commit, outside any transaction). Returns how many facts changed."""
    changed = drain(lambda: transaction(engine)).changed
    with transaction(engine) as session:
        check_alerts(session)
    deliver_alerts(engine)
    return changed
