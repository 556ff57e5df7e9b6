"""Metrics rollups and degradation alerts, run periodically by ``celery beat``."""

from __future__ import annotations

from celery import shared_task

from corrigenda.metrics.jobs import update_metrics as update_metrics_job

from ..context import task_engine


@shared_task(name="corrigenda.update_metrics")
def update_metrics() -> int:
    """Advance the metric rollups from the watermark; check alerts; send alert webhooks.
    Safe to run concurrently (the watermark row is locked) and twice (deltas are exact)."""
    return update_metrics_job(task_engine())
