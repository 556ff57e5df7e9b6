"""Erasing an end user's data (by the pseudonymous id the product sent).

In one transaction: delete their raw events, their effective opinions and their standing;
withdraw (tombstone) every example whose provenance cites one of their events; re-settle
the clusters they had a say in (an example comes back, with a new revision, if the
remaining opinions still settle it); mark every ready dataset version that may contain
their data as *superseded* in its manifest; and write an audit row that names a hash of
the id, not the id itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col, select

from .audit import record_audit
from .bulk import lock_project
from .examples import delete_example
from .models import (
    DatasetVersion,
    EffectiveOpinion,
    EndUserStatus,
    Example,
    FeedbackEvent,
    PendingEvent,
    Prediction,
    Project,
    utcnow,
)
from .routing import route_clusters


@dataclass
class ErasureResult:
    events: int = 0
    opinions: int = 0
    examples_withdrawn: int = 0
    examples_revised: int = 0
    clusters_resettled: int = 0
    versions_superseded: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def subject_hash(end_user: str) -> str:
    return hashlib.sha256(end_user.encode()).hexdigest()[:16]


def erase_end_user(
    session: Session, *, project: Project, end_user: str, actor: str
) -> ErasureResult:
    """Remove everything ``end_user`` said in ``project`` and what was derived from it."""
    lock_project(session, project.id)  # type: ignore[arg-type]  # not while a worker routes
    result = ErasureResult()
    events = _events_of(session, project, end_user)
    event_ids = {event_id for event_id, _ in events}
    opinions = session.exec(
        select(EffectiveOpinion).where(
            EffectiveOpinion.project_id == project.id, EffectiveOpinion.end_user == end_user
        )
    ).all()
    clusters = {o.cluster_id for o in opinions if o.cluster_id is not None}
    predictions = {p for _, p in events} | {o.prediction_id for o in opinions}
    before = _live_examples(session, project, predictions, clusters)
    _withdraw_citing(session, before, event_ids)
    result.opinions, result.events = len(opinions), len(event_ids)
    _delete_rows(session, project, end_user, event_ids)
    if clusters:
        route_clusters(session, project=project, cluster_ids=clusters)
    result.clusters_resettled = len(clusters)
    changed = _changed(session, before)
    result.examples_withdrawn = sum(1 for e in changed if e.deleted_at is not None)
    result.examples_revised = len(changed) - result.examples_withdrawn
    if changed:
        oldest = min(e.created_at for e in changed)
        result.versions_superseded = _supersede_versions(session, project, oldest)
    record_audit(
        session,
        actor=actor,
        action="end_user.erase",
        object_type="end_user",
        object_id=subject_hash(end_user),
        project_id=project.id,
        after=result.as_dict(),
    )
    return result


def _live_examples(
    session: Session, project: Project, prediction_ids: set[int], cluster_ids: set[int]
) -> dict[int, tuple[int, Example]]:
    """Live examples the user may have shaped: on their predictions or in their clusters
    (consensus spans a cluster), by id with their revision before the erasure."""
    if not prediction_ids and not cluster_ids:
        return {}
    query = select(Example).where(
        Example.project_id == project.id,
        col(Example.deleted_at).is_(None),
        col(Example.prediction_id).in_(sorted(prediction_ids))
        | col(Example.cluster_id).in_(sorted(cluster_ids)),
    )
    return {e.id: (e.revision, e) for e in session.exec(query)}  # type: ignore[misc]


def _withdraw_citing(
    session: Session, examples: dict[int, tuple[int, Example]], event_ids: set[int]
) -> None:
    """Tombstone examples whose provenance names an erased event (re-settling may bring
    them back from the remaining opinions, with a new revision)."""
    for _, example in examples.values():
        if set((example.provenance or {}).get("event_ids") or []) & event_ids:
            delete_example(session, example=example)


def _changed(session: Session, before: dict[int, tuple[int, Example]]) -> list[Example]:
    if not before:
        return []
    after = session.exec(select(Example).where(col(Example.id).in_(sorted(before)))).all()
    return [e for e in after if e.revision != before[e.id][0] or e.deleted_at is not None]  # type: ignore[index]


def _events_of(session: Session, project: Project, end_user: str) -> list[tuple[int, int]]:
    # Through the project's predictions: events are indexed by (prediction_id, end_user),
    # not by project.
    predictions = select(Prediction.id).where(Prediction.project_id == project.id)
    query = select(FeedbackEvent.id, FeedbackEvent.prediction_id).where(
        col(FeedbackEvent.prediction_id).in_(predictions),
        FeedbackEvent.project_id == project.id,
        FeedbackEvent.end_user == end_user,
    )
    return list(session.exec(query).all())


def _delete_rows(session: Session, project: Project, end_user: str, event_ids: set[int]) -> None:
    session.execute(
        delete(EffectiveOpinion).where(
            col(EffectiveOpinion.project_id) == project.id,
            col(EffectiveOpinion.end_user) == end_user,
        )
    )
    session.execute(
        delete(EndUserStatus).where(
            col(EndUserStatus.project_id) == project.id, col(EndUserStatus.end_user) == end_user
        )
    )
    if event_ids:
        ids = sorted(event_ids)
        session.execute(delete(FeedbackEvent).where(col(FeedbackEvent.id).in_(ids)))
        # Their pending rows too: an orphan would wait for some claim to delete it.
        session.execute(delete(PendingEvent).where(col(PendingEvent.id).in_(ids)))
    session.flush()


def _supersede_versions(session: Session, project: Project, oldest: datetime) -> list[int]:
    """Ready versions built after the oldest withdrawn example existed may contain it."""
    versions = session.exec(
        select(DatasetVersion).where(
            DatasetVersion.project_id == project.id,
            DatasetVersion.status == "ready",
            col(DatasetVersion.finished_at) >= oldest,
        )
    ).all()
    now = utcnow().isoformat()
    for version in versions:
        manifest = dict(version.manifest or {})
        notices = list((manifest.get("superseded") or {}).get("erasures", []))
        notices.append(now)
        manifest["superseded"] = {
            "reason": "erasure: data of an end user was deleted after this version was built",
            "at": now,
            "erasures": notices,
        }
        version.manifest = manifest
        session.add(version)
    session.flush()
    return sorted(v.number for v in versions)
