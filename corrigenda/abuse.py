"""Abusive end users: per-user caps per hour, reliability, and quarantine.

A capped event is processed but does not count (``ignored_reason = "cap"``). A user whose
opinions disagree with settled labels far more often than others' is quarantined: their
opinions stay stored (history) but weigh nothing in aggregation until an admin lifts it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from .aggregate import label_key, reliabilities
from .bulk import chunks
from .models import (
    Cluster,
    EffectiveOpinion,
    EndUserStatus,
    Example,
    FeedbackEvent,
    Prediction,
    Project,
    utcnow,
)

OPINION_KINDS = ("accept", "reject", "correct", "flag")


def statuses(session: Session, project_id: int, users: set[str]) -> dict[str, EndUserStatus]:
    found: dict[str, EndUserStatus] = {}
    for part in chunks(sorted(users)):
        query = select(EndUserStatus).where(
            EndUserStatus.project_id == project_id, col(EndUserStatus.end_user).in_(part)
        )
        found.update({s.end_user: s for s in session.exec(query)})
    return found


def apply_caps(
    session: Session,
    project_id: int,
    events: Sequence[FeedbackEvent],
    users: dict[str, str],
    cap: int,
) -> set[int]:
    """Ids of events over their user's hourly cap (counted by received hour)."""
    known = statuses(session, project_id, set(users.values()))
    capped: set[int] = set()
    for event in sorted(events, key=lambda e: (e.received_at, e.id)):
        user = users[event.id]  # type: ignore[index]
        status = known.get(user)
        if status is None:
            status = EndUserStatus(project_id=project_id, end_user=user)
            known[user] = status
        window = event.received_at.replace(minute=0, second=0, microsecond=0)
        if status.window_start is None or window > status.window_start:
            status.window_start, status.window_count = window, 0
        if window == status.window_start:
            if status.window_count >= cap:
                capped.add(event.id)  # type: ignore[arg-type]
                status.capped_events += 1
            status.window_count += 1
        status.updated_at = utcnow()
        session.add(status)
    return capped


def quarantined(session: Session, project_id: int, users: set[str]) -> set[str]:
    return {u for u, s in statuses(session, project_id, users).items() if s.quarantined_at}


def update_quarantine(session: Session, *, project: Project, policy: dict[str, Any]) -> list[str]:
    """Quarantine users who disagree with settled labels far more often than the median
    user. Returns the users newly quarantined; their clusters are marked for re-routing."""
    rules = {"min_settled": 10, "min_rate": 0.5, "factor": 3.0, **(policy.get("quarantine") or {})}
    counts = _disagreement_counts(session, project)
    rates = {u: bad / n for u, (n, bad) in counts.items() if n >= int(rules["min_settled"])}
    if not rates:
        return []
    bar = max(float(rules["min_rate"]), float(rules["factor"]) * statistics.median(rates.values()))
    offenders = {u for u, rate in rates.items() if rate >= bar}
    known = statuses(session, project.id, set(counts))  # type: ignore[arg-type]
    newly: list[str] = []
    for user, (n, bad) in sorted(counts.items()):
        status = known.get(user) or EndUserStatus(project_id=project.id, end_user=user)
        status.settled, status.disagreements = n, bad
        if user in offenders and status.quarantined_at is None:
            status.quarantined_at = utcnow()
            status.quarantine_reason = f"disagreed with {bad} of {n} settled labels"
            newly.append(user)
        session.add(status)
    touch_users_clusters(session, project.id, newly)
    return newly


def _disagreement_counts(session: Session, project: Project) -> dict[str, tuple[int, int]]:
    query = (
        select(
            EffectiveOpinion.end_user,
            EffectiveOpinion.kind,
            EffectiveOpinion.value,
            Example.target,
            Prediction.output,
        )
        .join(Example, col(Example.prediction_id) == col(EffectiveOpinion.prediction_id))
        .join(Prediction, col(Prediction.id) == col(EffectiveOpinion.prediction_id))
        .where(EffectiveOpinion.project_id == project.id, col(Example.deleted_at).is_(None))
    )
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    task = project.task_type
    for user, kind, value, target, output in session.exec(query):
        truth = label_key(target, task)
        if kind == "accept" and output is not None:
            agrees = label_key(output, task) == truth
        elif kind == "correct" and value is not None:
            agrees = label_key(value, task) == truth
        elif kind == "reject" and output is not None:
            agrees = label_key(output, task) != truth
        else:
            continue
        counts[user][0] += 1
        counts[user][1] += int(not agrees)
    return {user: (n, bad) for user, (n, bad) in counts.items()}


def update_reliabilities(session: Session, *, project: Project, limit: int = 100_000) -> int:
    """Dawid–Skene reliability per end user over clusters several users labeled.

    Returns how many users' weights changed noticeably; their clusters are re-routed.
    """
    query = (
        select(
            EffectiveOpinion.cluster_id,
            EffectiveOpinion.end_user,
            EffectiveOpinion.kind,
            EffectiveOpinion.value,
            Prediction.output,
        )
        .join(Prediction, col(Prediction.id) == col(EffectiveOpinion.prediction_id))
        .where(
            EffectiveOpinion.project_id == project.id,
            col(EffectiveOpinion.kind).in_(("accept", "correct")),
        )
        .order_by(col(EffectiveOpinion.id).desc())
        .limit(limit)
    )
    triples = []
    for cluster_id, user, kind, value, output in session.exec(query):
        said = output if kind == "accept" else value
        if said is not None:
            triples.append((cluster_id, user, label_key(said, project.task_type)))
    estimates = reliabilities(triples)
    known = statuses(session, project.id, set(estimates))  # type: ignore[arg-type]
    changed: list[str] = []
    for user, accuracy in sorted(estimates.items()):
        status = known.get(user) or EndUserStatus(project_id=project.id, end_user=user)
        weight = round(max(0.05, accuracy), 3)
        if abs(status.reliability - weight) >= 0.05:
            status.reliability = weight
            status.updated_at = utcnow()
            session.add(status)
            changed.append(user)
    touch_users_clusters(session, project.id, changed)  # type: ignore[arg-type]
    return len(changed)


def touch_users_clusters(session: Session, project_id: int, users: list[str]) -> None:
    """Mark the clusters these users gave opinions in for re-routing."""
    if not users:
        return
    now: datetime = utcnow()
    for part in chunks(users, 500):
        clusters = (
            select(EffectiveOpinion.cluster_id)
            .where(
                EffectiveOpinion.project_id == project_id, col(EffectiveOpinion.end_user).in_(part)
            )
            .scalar_subquery()
        )
        session.execute(update(Cluster).where(col(Cluster.id).in_(clusters)).values(touched_at=now))
