"""Abusive end users: per-user caps per hour, reliability, and quarantine.

A capped event is processed but does not count (``ignored_reason = "cap"``). A user whose
opinions disagree with settled labels far more often than others' is quarantined: their
opinions stay stored (history) but weigh nothing in aggregation until an admin lifts it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import update
from sqlalchemy.dialects import sqlite
from sqlmodel import Session, col, select

from .aggregate import label_key, reliabilities
from .bulk import Write, among, chunks, dialect, execute_write, fetch_rows, upsert_arrays_write
from .models import (
    Cluster,
    EffectiveOpinion,
    EndUserStatus,
    Example,
    Prediction,
    Project,
    utcnow,
)

OPINION_KINDS = ("accept", "reject", "correct", "flag")
STATUS = EndUserStatus.__table__


def statuses(session: Session, project_id: int, users: set[str]) -> dict[str, EndUserStatus]:
    found: dict[str, EndUserStatus] = {}
    for part in chunks(sorted(users)):
        query = select(EndUserStatus).where(
            EndUserStatus.project_id == project_id, col(EndUserStatus.end_user).in_(part)
        )
        found.update({s.end_user: s for s in session.exec(query)})
    return found


@dataclass(slots=True)
class _Window:
    start: datetime | None
    count: int
    capped: int
    quarantined: bool


def apply_caps(
    session: Session,
    project_id: int,
    events: Sequence[Any],
    users: dict[int, str],
    cap: int,
    *,
    defer: list[Write] | None = None,
) -> tuple[set[int], set[str]]:
    """Ids of events over their user's hourly cap (counted by received hour), and the
    users in quarantine. One read and one upsert of the users' standing per batch; with
    ``defer`` (PostgreSQL) the upsert is appended there for the caller to send later
    (it changes only the window columns, which nothing else in a batch reads)."""
    known = _windows(session, project_id, set(users.values()))
    capped: set[int] = set()
    for event in sorted(events, key=lambda e: (e.received_at, e.id)):
        user = users[event.id]
        status = known.get(user)
        if status is None:
            status = known[user] = _Window(None, 0, 0, False)
        window = event.received_at.replace(minute=0, second=0, microsecond=0)
        if status.start is None or window > status.start:
            status.start, status.count = window, 0
        if window == status.start:
            if status.count >= cap:
                capped.add(event.id)
                status.capped += 1
            status.count += 1
    _store_windows(session, project_id, known, defer)
    return capped, {user for user, status in known.items() if status.quarantined}


def _windows(session: Session, project_id: int, users: set[str]) -> dict[str, _Window]:
    c = STATUS.c
    found: dict[str, _Window] = {}
    for part in chunks(sorted(users)):
        query = sa.select(
            c.end_user, c.window_start, c.window_count, c.capped_events, c.quarantined_at
        ).where(c.project_id == project_id, among(session, c.end_user, part, kind="varchar"))
        for user, start, count, capped, quarantined_at in fetch_rows(session, query):
            found[user] = _Window(start, count, capped, quarantined_at is not None)
    return found


def _store_windows(
    session: Session, project_id: int, windows: dict[str, _Window], defer: list[Write] | None
) -> None:
    now = utcnow()
    rows = [
        {
            "project_id": project_id,
            "end_user": user,
            "window_start": w.start,
            "window_count": w.count,
            "capped_events": w.capped,
            "settled": 0,
            "disagreements": 0,
            "reliability": 1.0,
            "updated_at": now,
        }
        for user, w in sorted(windows.items())
    ]
    if not rows:
        return
    if dialect(session) == "postgresql":
        types = {"project_id": "bigint", "end_user": "varchar", "window_start": "timestamptz"}
        types |= {"window_count": "integer", "capped_events": "integer", "settled": "integer"}
        types |= {"disagreements": "integer", "reliability": "float8", "updated_at": "timestamptz"}
        columns: dict[str, tuple[str, Sequence[Any]]] = {
            name: (kind, [r[name] for r in rows]) for name, kind in types.items()
        }
        assignments = ", ".join(
            f"{c} = excluded.{c}"
            for c in ("window_start", "window_count", "capped_events", "updated_at")
        )
        write = upsert_arrays_write(
            "end_user_status", columns, conflict="project_id, end_user", assignments=assignments
        )
        if defer is None:
            execute_write(session, write)
        else:
            defer.append(write)
        return
    statement = sqlite.insert(STATUS)
    statement = statement.on_conflict_do_update(
        index_elements=["project_id", "end_user"],
        set_={
            name: statement.excluded[name]
            for name in ("window_start", "window_count", "capped_events", "updated_at")
        },
    )
    for part in chunks(rows, 1000):
        session.execute(statement, part)


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
