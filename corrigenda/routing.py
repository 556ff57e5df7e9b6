"""Routing settled and unsettled clusters: Examples for consensus, ReviewItems for the rest.

Routing is recomputed from the current state of a cluster (its predictions, effective
opinions, examples and open items) and then reconciled with what is stored. Because the
outcome depends only on that state, any order, duplication or batching of the same events
ends in the same Examples and ReviewItems.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, or_, select

from .aggregate import Tally, Vote, error_cost, label_key, review_priority, weighted_majority
from .bulk import chunks
from .examples import delete_example, upsert_example
from .models import (
    Cluster,
    Decision,
    EffectiveOpinion,
    EndUserStatus,
    Example,
    Prediction,
    Project,
    ReviewItem,
    utcnow,
)
from .models.review import OPEN_STATUSES

POLICY_DEFAULTS: dict[str, Any] = {
    "auto_accept_min_agreeing": 2,
    "review_overlap": 1,
    "audit_rate": 0.05,
    # End users (pseudonymous ids) whose single correction settles a label.
    "trusted_users": [],
    # Settled labels whose error cost (cost_matrix) reaches this go to review anyway.
    "high_cost_threshold": None,
    "normalization": {"strip_quoted": True, "strip_signature": True, "strip_greeting": True},
    "near_duplicates": True,
    "near_duplicate_threshold": 0.6,
    "user_cap_per_hour": 300,
    "quarantine": {"min_settled": 10, "min_rate": 0.5, "factor": 3.0},
}
# Reasons this module manages; others (e.g. "gold") belong to other features.
ROUTED_REASONS = ("conflict", "single_correction", "low_agreement", "high_cost", "audit", "flagged")
OVERRIDE_KINDS = ("reject", "correct", "flag")
# Flagged inputs (abuse, personal data, broken input) always get a human's attention soon.
FLAGGED_MIN_PRIORITY = 0.5


def effective_policy(project: Project) -> dict[str, Any]:
    return {**POLICY_DEFAULTS, **(project.policy or {})}


def audit_selected(prediction_id: int, rate: float) -> bool:
    """Deterministic audit draw from the prediction id (SHA-256, never ``hash()``)."""
    digest = hashlib.sha256(f"audit:{prediction_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


@dataclass
class Need:
    """What one cluster requires: a review (reason, prediction) or examples to write."""

    reason: str | None = None
    prediction_id: int | None = None
    priority: float = 0.0
    settled_value: Any = None
    settled: bool = False
    agreement: float | None = None
    voters: dict[int, list[EffectiveOpinion]] = field(default_factory=dict)


@dataclass
class RouteResult:
    examples_written: int = 0
    examples_retracted: int = 0
    items_created: int = 0
    items_updated: int = 0
    items_removed: int = 0


@dataclass
class _Context:
    project: Project
    policy: dict[str, Any]
    predictions: dict[int, list[Prediction]]
    opinions: dict[int, list[EffectiveOpinion]]
    weights: dict[str, float]
    examples: dict[int, Example]
    items: list[ReviewItem]
    decided_items: set[int]


def route_clusters(
    session: Session, *, project: Project, cluster_ids: Iterable[int]
) -> RouteResult:
    """Recompute and store the outcome of each cluster: examples, review items, audits."""
    result = RouteResult()
    for part in chunks(sorted(set(cluster_ids)), 500):
        context = _load(session, project, part)
        for cluster_id in part:
            _route_one(session, context, cluster_id, result)
        session.flush()  # once per chunk: per-cluster flushes dominated the batch time
        _mark_aggregated(session, part)
    return result


def _load(session: Session, project: Project, cluster_ids: list[int]) -> _Context:
    predictions: dict[int, list[Prediction]] = defaultdict(list)
    query = select(Prediction).where(
        Prediction.project_id == project.id, col(Prediction.cluster_id).in_(cluster_ids)
    )
    for prediction in session.exec(query.order_by(col(Prediction.id))):
        predictions[prediction.cluster_id].append(prediction)  # type: ignore[index]
    opinions: dict[int, list[EffectiveOpinion]] = defaultdict(list)
    op_query = select(EffectiveOpinion).where(
        EffectiveOpinion.project_id == project.id, col(EffectiveOpinion.cluster_id).in_(cluster_ids)
    )
    for opinion in session.exec(op_query):
        opinions[opinion.cluster_id].append(opinion)  # type: ignore[index]
    prediction_ids = [p.id for group in predictions.values() for p in group]
    items = _items(session, project.id, prediction_ids, cluster_ids)
    return _Context(
        project=project,
        policy=effective_policy(project),
        predictions=predictions,
        opinions=opinions,
        weights=_user_weights(
            session, project.id, {o.end_user for g in opinions.values() for o in g}
        ),
        examples=_examples(session, project.id, prediction_ids),
        items=items,
        decided_items=_decided(session, [i.id for i in items if i.status == "pending"]),
    )


def _user_weights(session: Session, project_id: int, users: set[str]) -> dict[str, float]:
    """Reliability per end user; quarantined users weigh nothing."""
    weights: dict[str, float] = {}
    for part in chunks(sorted(users)):
        query = select(EndUserStatus).where(
            EndUserStatus.project_id == project_id, col(EndUserStatus.end_user).in_(part)
        )
        for status in session.exec(query):
            weights[status.end_user] = 0.0 if status.quarantined_at else status.reliability
    return weights


def _examples(session: Session, project_id: int, prediction_ids: list[int]) -> dict[int, Example]:
    found: dict[int, Example] = {}
    for part in chunks(prediction_ids):
        query = select(Example).where(
            Example.project_id == project_id, col(Example.prediction_id).in_(part)
        )
        found.update({e.prediction_id: e for e in session.exec(query)})  # type: ignore[misc]
    return found


def _items(
    session: Session, project_id: int, prediction_ids: list[int], cluster_ids: list[int]
) -> list[ReviewItem]:
    items: dict[int, ReviewItem] = {}
    for part in chunks(prediction_ids):
        query = select(ReviewItem).where(
            ReviewItem.project_id == project_id,
            or_(
                col(ReviewItem.prediction_id).in_(part), col(ReviewItem.cluster_id).in_(cluster_ids)
            ),
        )
        items.update({i.id: i for i in session.exec(query)})  # type: ignore[misc]
    return list(items.values())


def _route_one(session: Session, ctx: _Context, cluster_id: int, result: RouteResult) -> None:
    predictions = {p.id: p for p in ctx.predictions.get(cluster_id, [])}
    if not predictions:
        return
    reviewed = any(
        ctx.examples.get(pid) is not None and ctx.examples[pid].source == "reviewed"
        for pid in predictions
    )
    need = Need() if reviewed else decide(ctx, predictions, ctx.opinions.get(cluster_id, []))
    _write_examples(session, ctx, cluster_id, predictions, need, result)
    desired = _desired_items(ctx, predictions, need)
    _reconcile_items(session, ctx, cluster_id, predictions, desired, result)


def decide(
    ctx: _Context, predictions: dict[int, Prediction], opinions: list[EffectiveOpinion]
) -> Need:
    """Aggregate one cluster's opinions (one per user: their latest in the cluster)."""
    latest: dict[str, EffectiveOpinion] = {}
    for opinion in opinions:
        if opinion.prediction_id in predictions and ctx.weights.get(opinion.end_user, 1.0) > 0:
            current = latest.get(opinion.end_user)
            if current is None or opinion.order_key > current.order_key:
                latest[opinion.end_user] = opinion
    if not latest:
        return Need()
    votes, values, rejected, flagged = _votes(ctx, predictions, latest.values())
    overrides = [o for o in latest.values() if o.kind in OVERRIDE_KINDS]
    focus = min(o.prediction_id for o in (overrides or list(latest.values())))
    tally = weighted_majority(votes)
    need = Need(prediction_id=focus, voters=_by_prediction(latest.values()))
    model_label = _output_key(ctx, predictions[focus])
    need.priority = review_priority(ctx.policy, tally, model_label, predictions[focus].confidence)
    need.reason = _review_reason(ctx, tally, votes, rejected, flagged, len(overrides))
    if need.reason is None and tally.top is not None and _settles(ctx, tally, votes, rejected):
        if _costly(ctx, tally.top, model_label):
            need.reason = "high_cost"
        else:
            need.settled, need.settled_value, need.agreement = (
                True,
                values[tally.top],
                tally.agreement,
            )
    return need


def _votes(
    ctx: _Context, predictions: dict[int, Prediction], opinions: Iterable[EffectiveOpinion]
) -> tuple[list[Vote], dict[str, Any], set[str | None], bool]:
    votes: list[Vote] = []
    values: dict[str, Any] = {}
    rejected: set[str | None] = set()
    flagged = False
    for opinion in sorted(opinions, key=lambda o: o.end_user):
        weight = ctx.weights.get(opinion.end_user, 1.0)
        prediction = predictions[opinion.prediction_id]
        if opinion.kind == "accept" and prediction.output is not None:
            value = prediction.output
        elif opinion.kind == "correct" or (opinion.kind == "reject" and opinion.value is not None):
            value = opinion.value
        else:
            flagged = flagged or opinion.kind == "flag"
            if opinion.kind == "reject":
                rejected.add(_output_key(ctx, prediction))
            continue
        key = label_key(value, ctx.project.task_type)
        values.setdefault(key, value)
        votes.append(Vote(opinion.end_user, key, weight))
    return votes, values, rejected, flagged


def _review_reason(
    ctx: _Context,
    tally: Tally,
    votes: list[Vote],
    rejected: set[str | None],
    flagged: bool,
    overrides: int,
) -> str | None:
    if flagged:
        return "flagged"
    if _trusted_label(ctx, votes) is not None:
        return None
    if not votes:
        return ("single_correction" if overrides == 1 else "low_agreement") if overrides else None
    if tally.tie or len(tally.weights) > 1 or tally.top in rejected:
        return "conflict" if tally.tie or tally.agreement < 0.6 else "low_agreement"
    minimum = int(ctx.policy["auto_accept_min_agreeing"])
    if len(tally.users.get(tally.top or "", ())) >= minimum:
        return None
    return "single_correction" if overrides else None


def _settles(ctx: _Context, tally: Tally, votes: list[Vote], rejected: set[str | None]) -> bool:
    trusted = _trusted_label(ctx, votes)
    if trusted is not None:
        tally.top = trusted
        return True
    minimum = int(ctx.policy["auto_accept_min_agreeing"])
    return len(tally.users.get(tally.top or "", ())) >= minimum and tally.top not in rejected


def _trusted_label(ctx: _Context, votes: list[Vote]) -> str | None:
    trusted = set(ctx.policy.get("trusted_users") or [])
    labels = {v.label for v in votes if v.user in trusted}
    return labels.pop() if len(labels) == 1 else None


def _costly(ctx: _Context, label: str, model_label: str | None) -> bool:
    threshold = ctx.policy.get("high_cost_threshold")
    return threshold is not None and error_cost(ctx.policy, label, model_label) >= float(threshold)


def _output_key(ctx: _Context, prediction: Prediction) -> str | None:
    if prediction.output is None:
        return None
    return label_key(prediction.output, ctx.project.task_type)


def _by_prediction(opinions: Iterable[EffectiveOpinion]) -> dict[int, list[EffectiveOpinion]]:
    grouped: dict[int, list[EffectiveOpinion]] = defaultdict(list)
    for opinion in opinions:
        grouped[opinion.prediction_id].append(opinion)
    return grouped


def _write_examples(
    session: Session,
    ctx: _Context,
    cluster_id: int,
    predictions: dict[int, Prediction],
    need: Need,
    result: RouteResult,
) -> None:
    event_ids = sorted(o.event_id for group in need.voters.values() for o in group)
    for pid, prediction in predictions.items():
        existing = ctx.examples.get(pid)
        if need.settled and pid in need.voters:
            provenance = {"event_ids": event_ids, "cluster_id": cluster_id, "method": "majority"}
            if _example_differs(existing, need, provenance):
                ctx.examples[pid] = upsert_example(
                    session,
                    prediction=prediction,
                    target=need.settled_value,
                    source="consensus",
                    provenance=provenance,
                    agreement=round(need.agreement or 0.0, 6),
                )
                _revive(session, ctx.examples[pid])
                result.examples_written += 1
        elif (
            existing is not None and existing.source == "consensus" and existing.deleted_at is None
        ):
            _retract(session, existing)
            result.examples_retracted += 1


def _example_differs(existing: Example | None, need: Need, provenance: dict[str, Any]) -> bool:
    if existing is None or existing.deleted_at is not None or existing.source != "consensus":
        return True
    return (
        existing.target != need.settled_value
        or existing.agreement != round(need.agreement or 0.0, 6)
        or existing.provenance != provenance
    )


def _retract(session: Session, example: Example) -> None:
    """Consensus fell apart (e.g. a conflicting opinion arrived): withdraw the example."""
    delete_example(session, example=example)


def _revive(session: Session, example: Example) -> None:
    """A withdrawn example settled again: ``upsert_example`` moved it; make it live."""
    if example.deleted_at is not None:
        example.deleted_at = None
        session.add(example)
        session.flush()


def _desired_items(
    ctx: _Context, predictions: dict[int, Prediction], need: Need
) -> dict[int, tuple[str, float]]:
    desired: dict[int, tuple[str, float]] = {}
    if need.reason is not None and need.prediction_id is not None:
        desired[need.prediction_id] = (
            need.reason,
            max(need.priority, FLAGGED_MIN_PRIORITY if need.reason == "flagged" else 0.0),
        )
    audited = {
        i.prediction_id for i in ctx.items if i.reason == "audit" and i.status not in OPEN_STATUSES
    }
    for pid, prediction in predictions.items():
        example = ctx.examples.get(pid)
        if not prediction.audit_sample or pid in audited:
            continue
        if example is not None and example.source == "reviewed":
            continue
        priority = review_priority(
            ctx.policy, Tally(), _output_key(ctx, prediction), prediction.confidence
        )
        current = desired.get(pid)
        desired[pid] = ("audit", max(priority, current[1] if current else 0.0))
    return desired


def _reconcile_items(
    session: Session,
    ctx: _Context,
    cluster_id: int,
    predictions: dict[int, Prediction],
    desired: dict[int, tuple[str, float]],
    result: RouteResult,
) -> None:
    open_items = [
        i
        for i in ctx.items
        if i.status in OPEN_STATUSES
        and i.reason in ROUTED_REASONS
        and (i.cluster_id == cluster_id or i.prediction_id in predictions)
    ]
    overlap = int(ctx.policy["review_overlap"])
    remaining = dict(desired)
    for item in open_items:
        wanted = remaining.pop(item.prediction_id, None)  # type: ignore[arg-type]
        if wanted is None:
            if item.status == "pending" and item.id not in ctx.decided_items:
                session.delete(item)
                ctx.items.remove(item)
                result.items_removed += 1
            continue
        if (item.reason, item.priority, item.cluster_id) != (wanted[0], wanted[1], cluster_id):
            item.reason, item.priority, item.cluster_id = wanted[0], wanted[1], cluster_id
            item.updated_at = utcnow()
            session.add(item)
            result.items_updated += 1
    foreign = {
        i.prediction_id
        for i in ctx.items
        if i.status in OPEN_STATUSES and i.reason not in ROUTED_REASONS
    }
    for pid, (reason, priority) in sorted(remaining.items()):
        if pid in foreign:  # e.g. a gold item is open: one open item per prediction
            continue
        item = ReviewItem(
            project_id=ctx.project.id,
            prediction_id=pid,
            cluster_id=cluster_id,
            reason=reason,
            priority=priority,
            required_reviews=overlap,
        )
        session.add(item)
        ctx.items.append(item)
        result.items_created += 1


def _decided(session: Session, item_ids: list[int]) -> set[int]:
    """Items that already carry a decision (never deleted, even when no longer needed)."""
    found: set[int] = set()
    for part in chunks(item_ids):
        query = select(Decision.review_item_id).where(col(Decision.review_item_id).in_(part))
        found.update(session.exec(query))
    return found


def _mark_aggregated(session: Session, cluster_ids: list[int]) -> None:
    statement = (
        update(Cluster).where(col(Cluster.id).in_(cluster_ids)).values(aggregated_at=utcnow())
    )
    session.execute(statement)
