"""Degradation alerts: a significant rise of a model version's daily override rate over its
trailing baseline, and significant gaps between segment values.

Test: one-sided exact conditional binomial test (Fisher's exact test) of k overrides among
n shown on the day against K among N shown in the ``baseline_days`` days before it: given
the k + K overrides, P(at least k of them fall on the day). A plain binomial test against
p0 = K/N ignores the noise in p0 and alarms too often (measured: 6.5 % at alpha 5 %).
All tests of one project and one day (every version's rise, every segment gap) form one
family; each is judged at alpha / m (Bonferroni), so on stable traffic a project gets a
false alarm on at most ``alpha`` of its days.
Each complete day (UTC) is judged once, after it has ended.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ..db import transaction
from ..models import MetricAlert, MetricRollup, Project, User, utcnow
from ..webhooks import send_webhook
from .compare import fairness_gaps
from .query import Counts, add_row, by_segment
from .stats import fisher_greater
from .updater import lock_watermark

MAX_DAYS_PER_CHECK = 31


@dataclass(frozen=True)
class RiseTest:
    model_version: str
    k: int
    n: int
    baseline_k: int
    baseline_n: int
    p_value: float


def alert_settings(project: Project) -> dict[str, Any]:
    policy = project.policy or {}
    settings = {"baseline_days": 14, "alpha": 0.05, "webhook_url": None, "webhook_secret": None}
    settings.update(policy.get("alerts") or {})
    # Fall back to the project's own webhook (the one dataset events use).
    settings["webhook_url"] = settings["webhook_url"] or getattr(project, "webhook_url", None)
    settings["webhook_secret"] = settings["webhook_secret"] or getattr(
        project, "webhook_secret", None
    )
    settings["min_cell"] = int(policy.get("min_cell_size") or 20)
    return settings


def rise_test(version: str, k: int, n: int, baseline_k: int, baseline_n: int) -> RiseTest:
    p_value = fisher_greater(k, n, baseline_k, baseline_n)
    return RiseTest(version, k, n, baseline_k, baseline_n, p_value)


def check_day(session: Session, project: Project, day: date) -> list[MetricAlert]:
    """Judge one day for one project; returns (and adds) the new alerts."""
    cfg = alert_settings(project)
    start = day - timedelta(days=int(cfg["baseline_days"]))
    rows = list(
        session.exec(
            select(MetricRollup).where(
                MetricRollup.project_id == project.id,
                col(MetricRollup.day) >= start,
                col(MetricRollup.day) <= day,
            )
        )
    )
    rises = _rise_tests(rows, day, cfg["min_cell"])
    segment_rows = [r for r in rows if r.seg_key != ""]
    gaps = fairness_gaps(by_segment(segment_rows), min_cell=cfg["min_cell"], alpha=cfg["alpha"])
    family = max(1, len(rises) + sum(g.pairs for g in gaps))
    level = cfg["alpha"] / family
    alerts = [_rise_alert(project, day, t, level) for t in rises if t.p_value < level]
    alerts += [_gap_alert(project, day, g, level) for g in gaps if g.p_value < level]
    return [a for a in alerts if _is_new(session, a)]


def _rise_tests(rows: list[MetricRollup], day: date, min_cell: int) -> list[RiseTest]:
    today: dict[str, Counts] = defaultdict(dict)
    baseline: dict[str, Counts] = defaultdict(dict)
    for row in rows:
        if row.seg_key == "":
            add_row(
                today[row.model_version] if row.day == day else baseline[row.model_version], row
            )
    tests = []
    for version, c in sorted(today.items()):
        b = baseline.get(version, {})
        n, bn = int(c.get("shown", 0)), int(b.get("shown", 0))
        if n >= min_cell and bn >= min_cell:
            k, bk = int(c.get("overridden", 0)), int(b.get("overridden", 0))
            tests.append(rise_test(version, k, n, bk, bn))
    return tests


def _rise_alert(project: Project, day: date, t: RiseTest, level: float) -> MetricAlert:
    observed, base = t.k / t.n, t.baseline_k / t.baseline_n
    return MetricAlert(
        project_id=project.id,  # type: ignore[arg-type]
        kind="override_rise",
        model_version=t.model_version,
        day=day,
        observed=observed,
        baseline=base,
        p_value=t.p_value,
        message=(
            f"Override rate of {t.model_version or 'unversioned'} rose to {observed:.1%} on "
            f"{day} (baseline {base:.1%}; p = {t.p_value:.2g} < {level:.2g})"
        ),
        details={"k": t.k, "n": t.n, "baseline_k": t.baseline_k, "baseline_n": t.baseline_n},
    )


def _gap_alert(project: Project, day: date, gap: Any, level: float) -> MetricAlert:
    name = gap.metric.replace("_", " ")
    return MetricAlert(
        project_id=project.id,  # type: ignore[arg-type]
        kind="segment_gap",
        segment=f"{gap.seg_key}:{gap.metric}",
        day=day,
        observed=gap.worst[1].estimate or 0.0,
        baseline=gap.best[1].estimate or 0.0,
        p_value=gap.p_value,
        message=(
            f"{name} of {gap.seg_key}={gap.worst[0]} ({gap.worst[1].estimate:.1%}) trails "
            f"{gap.seg_key}={gap.best[0]} ({gap.best[1].estimate:.1%}); p = {gap.p_value:.2g}"
        ),
        details=gap.as_dict(),
    )


def _is_new(session: Session, alert: MetricAlert) -> bool:
    """Same day and subject already alerted, or a segment gap still unacknowledged: skip."""
    query = select(MetricAlert.id).where(
        MetricAlert.project_id == alert.project_id,
        MetricAlert.kind == alert.kind,
        MetricAlert.model_version == alert.model_version,
        MetricAlert.segment == alert.segment,
    )
    if alert.kind == "segment_gap":
        query = query.where(col(MetricAlert.acknowledged_at).is_(None))
    else:
        query = query.where(MetricAlert.day == alert.day)
    return session.exec(query.limit(1)).first() is None


def check_alerts(session: Session, *, today: date | None = None) -> list[MetricAlert]:
    """Judge every complete day not judged yet (at most a month back), for every project."""
    today = today or utcnow().date()
    mark = lock_watermark(session)
    judged = dict(mark.alert_days or {})
    created: list[MetricAlert] = []
    for project in session.exec(select(Project)).all():
        last = judged.get(str(project.id))
        first = date.fromisoformat(last) + timedelta(days=1) if last else today - timedelta(days=1)
        first = max(first, today - timedelta(days=MAX_DAYS_PER_CHECK))
        day = first
        while day < today:
            for alert in check_day(session, project, day):
                session.add(alert)
                session.flush()
                created.append(alert)
            judged[str(project.id)] = day.isoformat()
            day += timedelta(days=1)
    mark.alert_days = judged
    session.add(mark)
    session.flush()
    return created


def acknowledge(session: Session, *, alert: MetricAlert, user: User) -> MetricAlert:
    if alert.acknowledged_at is None:
        alert.acknowledged_at = utcnow()
        alert.acknowledged_by = user.id
        session.add(alert)
        session.flush()
    return alert


def alert_payload(alert: MetricAlert, project: Project) -> dict[str, Any]:
    return {
        "id": alert.id,
        "project": project.slug,
        "kind": alert.kind,
        "model_version": alert.model_version,
        "segment": alert.segment,
        "day": alert.day.isoformat(),
        "observed": alert.observed,
        "baseline": alert.baseline,
        "p_value": alert.p_value,
        "message": alert.message,
    }


def deliver_alerts(engine: Engine, *, limit: int = 50) -> int:
    """Send unsent alerts to their project's webhook (outside any transaction); record it."""
    with transaction(engine) as session:
        pending = session.exec(
            select(MetricAlert, Project)
            .join(Project, col(Project.id) == MetricAlert.project_id)
            .where(
                col(MetricAlert.webhook_sent_at).is_(None), col(MetricAlert.webhook_error).is_(None)
            )
            .order_by(col(MetricAlert.id))
            .limit(limit)
        ).all()
        jobs = [
            (alert.id, alert_settings(project), alert_payload(alert, project))
            for alert, project in pending
        ]
    sent = 0
    for alert_id, cfg, payload in jobs:
        error: str | None = "no webhook configured"
        if cfg.get("webhook_url"):
            result = send_webhook(
                cfg["webhook_url"], cfg.get("webhook_secret") or "", "metrics.alert", payload
            )
            error = None if result.delivered else (result.error or "failed")[:500]
            sent += int(result.delivered)
        _record_delivery(engine, alert_id, error)
    return sent


def _record_delivery(engine: Engine, alert_id: int, error: str | None) -> None:
    with transaction(engine) as session:
        alert = session.get(MetricAlert, alert_id)
        if alert is not None:
            alert.webhook_sent_at = utcnow() if error is None else None
            alert.webhook_error = error
            session.add(alert)
