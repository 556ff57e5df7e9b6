"""A Prometheus collector over the database (and the Celery queue in Redis, when used)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import redis
from flask import current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from corrigenda.models import (
    DatasetVersion,
    FeedbackEvent,
    MetricAlert,
    MetricWatermark,
    PendingEvent,
    Project,
    ReviewItem,
)
from corrigenda.models.review import OPEN_STATUSES
from corrigenda.settings import Settings

from ..extensions import get_engine, get_settings


class EventCount:
    """Events ingested, counted incrementally above the highest id seen (one full count per
    process, then an index range scan per scrape). Events are append-only, so it only grows."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.max_id = 0
        self.count = 0

    def read(self, session: Session) -> int:
        with self.lock:
            row = session.exec(
                select(func.count(), func.max(FeedbackEvent.id)).where(
                    col(FeedbackEvent.id) > self.max_id
                )
            ).one()
            self.count += int(row[0] or 0)
            self.max_id = max(self.max_id, int(row[1] or 0))
            return self.count


class CorrigendaCollector(Collector):
    def __init__(self, engine: Engine, settings: Settings, events: EventCount) -> None:
        self.engine, self.settings, self.events = engine, settings, events

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        with Session(self.engine) as session:
            yield CounterMetricFamily(
                "corrigenda_feedback_events_ingested",
                "Feedback events stored (all projects).",
                value=self.events.read(session),
            )
            yield from self._processing(session)
            yield self._queue_depth(session)
            yield self._review_backlog(session)
            yield self._dataset_builds(session)
            yield from self._rollups(session)

    def _processing(self, session: Session) -> Iterator[GaugeMetricFamily]:
        count, oldest = session.exec(
            select(func.count(), func.min(FeedbackEvent.received_at)).join(
                PendingEvent, col(PendingEvent.id) == FeedbackEvent.id
            )
        ).one()
        yield GaugeMetricFamily(
            "corrigenda_feedback_events_unprocessed",
            "Committed events not processed yet (the outbox).",
            value=count,
        )
        yield GaugeMetricFamily(
            "corrigenda_processing_lag_seconds",
            "Age of the oldest unprocessed event (0 when none).",
            value=_age(oldest),
        )

    def _queue_depth(self, session: Session) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily(
            "corrigenda_queue_depth",
            "Messages waiting in the Celery queue (embedded mode: unprocessed events).",
            labels=["queue"],
        )
        if self.settings.redis_url:
            try:
                client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=1)
                gauge.add_metric(
                    [self.settings.celery_queue], client.llen(self.settings.celery_queue)
                )
            except redis.RedisError:
                pass  # broker down: the series goes missing, which alerting can see
        else:
            pending = session.exec(select(func.count()).select_from(PendingEvent)).one()
            gauge.add_metric(["embedded"], pending)
        return gauge

    def _review_backlog(self, session: Session) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily(
            "corrigenda_review_backlog",
            "Review items waiting or claimed, per project and status.",
            labels=["project", "status"],
        )
        rows = session.exec(
            select(Project.slug, ReviewItem.status, func.count())
            .join(Project, col(Project.id) == ReviewItem.project_id)
            .where(col(ReviewItem.status).in_(OPEN_STATUSES))
            .group_by(col(Project.slug), col(ReviewItem.status))
        )
        for slug, status, count in rows:
            gauge.add_metric([slug, status], count)
        return gauge

    def _dataset_builds(self, session: Session) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily(
            "corrigenda_dataset_builds",
            "Dataset versions by status (ready, failed, building, pending).",
            labels=["status"],
        )
        rows = session.exec(
            select(DatasetVersion.status, func.count()).group_by(col(DatasetVersion.status))
        )
        for status, count in rows:
            gauge.add_metric([status], count)
        return gauge

    def _rollups(self, session: Session) -> Iterator[GaugeMetricFamily]:
        mark = session.exec(select(MetricWatermark)).first()
        behind = session.exec(
            select(func.count()).where(col(FeedbackEvent.id) > (mark.last_event_id if mark else 0))
        ).one()
        yield GaugeMetricFamily(
            "corrigenda_metrics_rollup_pending_events",
            "Events not yet folded into the metric rollups.",
            value=behind,
        )
        yield GaugeMetricFamily(
            "corrigenda_metrics_rollup_age_seconds",
            "Seconds since the rollup worker last finished a round.",
            value=_age(mark.updated_at if mark else None),
        )
        open_alerts = session.exec(
            select(func.count()).where(col(MetricAlert.acknowledged_at).is_(None))
        ).one()
        yield GaugeMetricFamily(
            "corrigenda_metric_alerts_open", "Alerts not acknowledged yet.", value=open_alerts
        )


def _age(moment: datetime | None) -> float:
    if moment is None:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, time.time() - moment.timestamp())


def render_metrics() -> tuple[bytes, str]:
    events = current_app.extensions.setdefault("corrigenda.event_count", EventCount())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CorrigendaCollector(get_engine(), get_settings(), events))
    return generate_latest(registry), CONTENT_TYPE_LATEST
