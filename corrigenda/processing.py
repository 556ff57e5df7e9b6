"""Turning raw feedback events into effective opinions, clusters, examples and review items.

One call processes one micro-batch inside the caller's transaction:

1. claim the events (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two workers never take
   the same event) and take the project's processing lock;
2. set aside events that cannot be processed, with the reason (replayable);
3. cluster the inputs of the predictions they touch (exact hash, then MinHash LSH);
4. mark predictions shown and draw the audit sample;
5. apply per-user caps, then keep one effective opinion per (prediction, end user);
6. re-route every touched cluster (``corrigenda.routing``);
7. mark the events processed.

Events already processed are skipped, so running a batch twice changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from . import abuse
from .bulk import chunks, lock_project
from .clustering import assign_clusters
from .models import Cluster, EffectiveOpinion, FeedbackEvent, Prediction, Project, utcnow
from .normalize import input_text
from .routing import audit_selected, effective_policy, route_clusters

OPINION_KINDS = ("accept", "reject", "correct", "flag")


@dataclass
class ProcessResult:
    processed: int = 0
    set_aside: int = 0
    ignored: int = 0
    clusters_created: int = 0
    near_duplicates: int = 0
    examples_written: int = 0
    review_items: int = 0


def pending_event_ids(
    *, session: Session, limit: int, received_before: datetime | None = None
) -> list[int]:
    """Ids of committed events not processed yet and not set aside, oldest first."""
    query = select(FeedbackEvent.id).where(
        col(FeedbackEvent.processed_at).is_(None), col(FeedbackEvent.error).is_(None)
    )
    if received_before is not None:
        query = query.where(FeedbackEvent.received_at < received_before)
    ids = session.exec(query.order_by(col(FeedbackEvent.id)).limit(limit))
    return [event_id for event_id in ids if event_id is not None]


def process_events(session: Session, *, event_ids: list[int]) -> ProcessResult:
    """Process the given events; processed, set-aside or locked ones are skipped."""
    result = ProcessResult()
    by_project: dict[int, list[FeedbackEvent]] = defaultdict(list)
    for event in _claim(session, event_ids):
        by_project[event.project_id].append(event)
    for project_id in sorted(by_project):
        _process_project(session, project_id, by_project[project_id], result)
    return result


def _claim(session: Session, event_ids: list[int]) -> list[FeedbackEvent]:
    events: list[FeedbackEvent] = []
    for part in chunks(sorted(set(event_ids))):
        query = (
            select(FeedbackEvent)
            .where(
                col(FeedbackEvent.id).in_(part),
                col(FeedbackEvent.processed_at).is_(None),
                col(FeedbackEvent.error).is_(None),
            )
            .order_by(col(FeedbackEvent.id))
            .with_for_update(skip_locked=True)
        )
        events.extend(session.exec(query).all())
    return events


def _process_project(
    session: Session, project_id: int, events: list[FeedbackEvent], result: ProcessResult
) -> None:
    lock_project(session, project_id)
    project = session.get(Project, project_id)
    if project is None:
        return
    policy = effective_policy(project)
    predictions = _predictions(session, project_id, {e.prediction_id for e in events})
    good = [e for e in events if not _set_aside_invalid(e, project, predictions, result)]
    touched = sorted({e.prediction_id for e in good})
    _cluster(session, project, policy, [predictions[p] for p in touched], result)
    clusters = _mark_shown_and_audit(predictions, good, float(policy["audit_rate"]))
    clusters |= _record_opinions(session, project, policy, good, predictions, result)
    _touch(session, clusters)
    routed = route_clusters(session, project=project, cluster_ids=clusters)
    result.examples_written += routed.examples_written
    result.review_items += routed.items_created
    now = utcnow()
    for event in good:
        event.processed_at = now
        session.add(event)
    result.processed += len(good)
    session.flush()


def _predictions(session: Session, project_id: int, ids: set[int]) -> dict[int, Prediction]:
    found: dict[int, Prediction] = {}
    for part in chunks(sorted(ids)):
        query = select(Prediction).where(
            col(Prediction.id).in_(part), Prediction.project_id == project_id
        )
        found.update({p.id: p for p in session.exec(query)})  # type: ignore[misc]
    return found


def invalid_reason(
    event: FeedbackEvent, project: Project, prediction: Prediction | None
) -> str | None:
    """Why ``event`` cannot be processed, or None. The reason is shown to admins."""
    if prediction is None:
        return f"prediction {event.prediction_id} does not exist in project {project.slug!r}"
    if event.kind == "correct" and event.value is None:
        return "a correction needs a value"
    if event.kind not in ("correct", "reject") or event.value is None:
        return None
    return _value_problem(event.value, project)


def _value_problem(value: Any, project: Project) -> str | None:
    labels = set(project.labels or [])
    if project.task_type == "text":
        return None if isinstance(value, str) else "value must be a string for a text project"
    items = value if project.task_type == "multilabel" and isinstance(value, list) else [value]
    if project.task_type == "classification" and not isinstance(value, str):
        return "value must be one label (a string) for a classification project"
    unknown = [v for v in items if not isinstance(v, str) or (labels and v not in labels)]
    if unknown:
        return f"value {unknown[0]!r} is not one of the project's labels"
    return None


def _set_aside_invalid(
    event: FeedbackEvent,
    project: Project,
    predictions: dict[int, Prediction],
    result: ProcessResult,
) -> bool:
    reason = invalid_reason(event, project, predictions.get(event.prediction_id))
    if reason is None:
        return False
    event.error = reason
    result.set_aside += 1
    return True


def _cluster(
    session: Session,
    project: Project,
    policy: dict[str, Any],
    predictions: list[Prediction],
    result: ProcessResult,
) -> None:
    pending = [p for p in predictions if p.cluster_id is None]
    if not pending:
        return
    assignment = assign_clusters(
        session,
        project_id=project.id,  # type: ignore[arg-type]
        texts=[(p.id, input_text(p.input)) for p in pending],
        options=policy.get("normalization"),
        threshold=float(policy["near_duplicate_threshold"]),
        near_duplicates=bool(policy["near_duplicates"]),
    )
    for prediction in pending:
        prediction.content_hash = assignment.content_hashes[prediction.id]
        prediction.cluster_id = assignment.clusters[prediction.id]
        session.add(prediction)
    result.clusters_created += len(assignment.created)
    result.near_duplicates += assignment.near_duplicates


def _mark_shown_and_audit(
    predictions: dict[int, Prediction], events: list[FeedbackEvent], rate: float
) -> set[int]:
    """Any event means the prediction was shown; draw its audit sample once."""
    first_seen: dict[int, datetime] = {}
    for event in events:
        seen = event.client_time or event.received_at
        first_seen[event.prediction_id] = min(seen, first_seen.get(event.prediction_id, seen))
    sampled: set[int] = set()
    for prediction_id, seen in first_seen.items():
        prediction = predictions[prediction_id]
        if prediction.shown_at is None:
            prediction.shown_at = seen
        if prediction.audit_sample is None:
            prediction.audit_sample = audit_selected(prediction_id, rate)
            if prediction.audit_sample:
                sampled.add(prediction.cluster_id)  # type: ignore[arg-type]
    return sampled


def end_user_key(event: FeedbackEvent) -> str:
    """Who gave the opinion: the end user, else the session, else the event alone."""
    if event.end_user:
        return event.end_user
    if event.session_id:
        return f"session:{event.session_id}"[:200]
    return f"event:{event.event_id}"


def order_key(event: FeedbackEvent) -> str:
    """Latest wins: client time, then received time, then the event id (a total order)."""
    stated = _stamp(event.client_time or event.received_at)
    return f"{stated}|{_stamp(event.received_at)}|{event.event_id}"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S%f")


def _record_opinions(
    session: Session,
    project: Project,
    policy: dict[str, Any],
    events: list[FeedbackEvent],
    predictions: dict[int, Prediction],
    result: ProcessResult,
) -> set[int]:
    """Fold opinion events into effective opinions; returns the clusters that changed."""
    opinions = [e for e in events if e.kind in OPINION_KINDS]
    if not opinions:
        return set()
    users = {e.id: end_user_key(e) for e in opinions}
    capped = abuse.apply_caps(
        session, project.id, opinions, users, int(policy["user_cap_per_hour"])
    )  # type: ignore[arg-type]
    blocked = abuse.quarantined(session, project.id, set(users.values()))  # type: ignore[arg-type]
    existing = _existing_opinions(session, {e.prediction_id for e in opinions})
    changed: set[int] = set()
    for event in sorted(opinions, key=order_key):
        if event.id in capped:
            event.ignored_reason = "cap"
            result.ignored += 1
            continue
        if users[event.id] in blocked:  # type: ignore[index]
            event.ignored_reason = "quarantined"
            result.ignored += 1
        cluster = _fold(session, existing, event, users[event.id], predictions[event.prediction_id])  # type: ignore[index]
        if cluster is not None:
            changed.add(cluster)
    return changed


def _existing_opinions(
    session: Session, prediction_ids: set[int]
) -> dict[tuple[int, str], EffectiveOpinion]:
    found: dict[tuple[int, str], EffectiveOpinion] = {}
    for part in chunks(sorted(prediction_ids)):
        query = select(EffectiveOpinion).where(col(EffectiveOpinion.prediction_id).in_(part))
        found.update({(o.prediction_id, o.end_user): o for o in session.exec(query)})
    return found


def _fold(
    session: Session,
    existing: dict[tuple[int, str], EffectiveOpinion],
    event: FeedbackEvent,
    user: str,
    prediction: Prediction,
) -> int | None:
    """Apply one event to its (prediction, user) opinion; the cluster id if it changed."""
    key = (event.prediction_id, user)
    opinion = existing.get(key)
    ordering = order_key(event)
    if opinion is None:
        opinion = EffectiveOpinion(
            project_id=event.project_id,
            prediction_id=event.prediction_id,
            cluster_id=prediction.cluster_id,
            end_user=user,
            event_id=event.id,  # type: ignore[arg-type]
            order_key=ordering,
            kind=event.kind,
            value=event.value,
            events_seen=0,
        )
        existing[key] = opinion
    elif ordering <= opinion.order_key:
        opinion.events_seen += 1
        session.add(opinion)
        return None
    opinion.events_seen += 1
    opinion.event_id, opinion.order_key = event.id, ordering  # type: ignore[assignment]
    opinion.kind, opinion.value, opinion.updated_at = event.kind, event.value, utcnow()
    session.add(opinion)
    return prediction.cluster_id


def _touch(session: Session, cluster_ids: set[int]) -> None:
    if cluster_ids:
        session.execute(
            update(Cluster)
            .where(col(Cluster.id).in_(sorted(cluster_ids)))
            .values(touched_at=utcnow())
        )


# --- set-aside events: visible to admins, replayable ------------------------------------


def set_aside(session: Session, *, event_id: int, reason: str) -> None:
    """Record that an event could not be processed (it leaves the stream until replayed)."""
    session.execute(
        update(FeedbackEvent)
        .where(col(FeedbackEvent.id) == event_id, col(FeedbackEvent.processed_at).is_(None))
        .values(error=reason[:2000])
    )


def set_aside_events(
    session: Session, *, project_id: int | None = None, limit: int = 100
) -> list[FeedbackEvent]:
    """Events set aside, newest first."""
    query = select(FeedbackEvent).where(col(FeedbackEvent.error).is_not(None))
    if project_id is not None:
        query = query.where(FeedbackEvent.project_id == project_id)
    return list(session.exec(query.order_by(col(FeedbackEvent.id).desc()).limit(limit)))


def replay_events(
    session: Session, *, event_ids: list[int] | None = None, project_id: int | None = None
) -> list[int]:
    """Put set-aside events back in the stream (all of them when no ids are given)."""
    query = select(FeedbackEvent.id).where(col(FeedbackEvent.error).is_not(None))
    if event_ids is not None:
        query = query.where(col(FeedbackEvent.id).in_(event_ids))
    if project_id is not None:
        query = query.where(FeedbackEvent.project_id == project_id)
    ids = [i for i in session.exec(query) if i is not None]
    for part in chunks(ids):
        session.execute(
            update(FeedbackEvent).where(col(FeedbackEvent.id).in_(part)).values(error=None)
        )
    return ids


# --- periodic re-aggregation -----------------------------------------------------------


@dataclass
class ReaggregateResult:
    audited: int = 0
    reliabilities_changed: int = 0
    quarantined: int = 0
    clusters_routed: int = 0


def reaggregate_project(
    session: Session, *, project: Project, learn: bool = True, limit: int = 2000
) -> ReaggregateResult:
    """One bounded round for one project: learn reliabilities (Dawid–Skene) and quarantine
    outliers, draw the audit sample for predictions shown without any event, and re-route
    clusters touched since they were last aggregated."""
    result = ReaggregateResult()
    lock_project(session, project.id)  # type: ignore[arg-type]
    policy = effective_policy(project)
    if learn:
        result.reliabilities_changed = abuse.update_reliabilities(session, project=project)
        result.quarantined = len(abuse.update_quarantine(session, project=project, policy=policy))
    sampled = _audit_shown(session, project, policy, limit)
    result.audited = len(sampled)
    stale = _stale_clusters(session, project.id, limit)  # type: ignore[arg-type]
    route_clusters(session, project=project, cluster_ids=stale | sampled)
    result.clusters_routed = len(stale | sampled)
    return result


def _audit_shown(
    session: Session, project: Project, policy: dict[str, Any], limit: int
) -> set[int]:
    """Predictions the product marked shown but nobody reacted to still join the audit draw."""
    query = (
        select(Prediction)
        .where(
            Prediction.project_id == project.id,
            col(Prediction.shown_at).is_not(None),
            col(Prediction.audit_sample).is_(None),
        )
        .order_by(col(Prediction.id))
        .limit(limit)
    )
    predictions = list(session.exec(query))
    _cluster(session, project, policy, predictions, ProcessResult())
    sampled: set[int] = set()
    for prediction in predictions:
        prediction.audit_sample = audit_selected(prediction.id, float(policy["audit_rate"]))  # type: ignore[arg-type]
        session.add(prediction)
        if prediction.audit_sample:
            sampled.add(prediction.cluster_id)  # type: ignore[arg-type]
    return sampled


def _stale_clusters(session: Session, project_id: int, limit: int) -> set[int]:
    query = (
        select(Cluster.id)
        .where(
            Cluster.project_id == project_id,
            col(Cluster.touched_at).is_not(None),
            (col(Cluster.aggregated_at).is_(None)) | (Cluster.touched_at > Cluster.aggregated_at),  # type: ignore[operator]
        )
        .limit(limit)
    )
    return {i for i in session.exec(query) if i is not None}
