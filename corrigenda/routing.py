"""Routing settled and unsettled clusters: Examples for consensus, ReviewItems for the rest.

Routing is recomputed from the current state of a cluster (its predictions, effective
opinions, examples and open items) and then reconciled with what is stored. Because the
outcome depends only on that state, any order, duplication or batching of the same events
ends in the same Examples and ReviewItems.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from .aggregate import Tally, Vote, error_cost, label_key, review_priority, weighted_majority
from .bulk import (
    Write,
    among,
    chunks,
    dialect,
    execute_write,
    fetch_driver_rows,
    fetch_rows,
    typed_array_literal,
    update_arrays,
    writes_sent_meanwhile,
)
from .db import json_loads
from .dedupe import Opinion
from .examples import delete_examples, upsert_examples
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
    "near_duplicate_threshold": 0.5,  # = clustering.DEFAULT_THRESHOLD (8 x 3 bands tuned for it)
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


@dataclass(slots=True)
class PredictionRow:
    id: int
    cluster_id: int
    output: Any
    confidence: float | None
    audit_sample: bool | None


@dataclass(slots=True)
class OpinionRow:
    prediction_id: int
    cluster_id: int
    end_user: str
    event_id: int
    order_key: str
    kind: str
    value: Any


@dataclass(slots=True)
class ExampleRow:
    id: int | None
    prediction_id: int
    source: str
    target: Any
    agreement: float | None
    provenance: dict[str, Any]
    deleted_at: Any


@dataclass(slots=True)
class ItemRow:
    id: int | None
    prediction_id: int | None
    cluster_id: int | None
    reason: str
    priority: float
    status: str


@dataclass
class Need:
    """What one cluster requires: a review (reason, prediction) or examples to write."""

    reason: str | None = None
    prediction_id: int | None = None
    priority: float = 0.0
    settled_value: Any = None
    settled: bool = False
    agreement: float | None = None
    voters: dict[int, list[OpinionRow]] = field(default_factory=dict)


@dataclass
class RouteResult:
    examples_written: int = 0
    examples_retracted: int = 0
    items_created: int = 0
    items_updated: int = 0
    items_removed: int = 0


@dataclass
class _Writes:
    """Everything one chunk of clusters changes, written in a few bulk statements."""

    examples: dict[int, dict[str, Any]] = field(default_factory=dict)
    retract: list[int] = field(default_factory=list)
    delete_items: list[int] = field(default_factory=list)
    update_items: list[ItemRow] = field(default_factory=list)
    new_items: list[ItemRow] = field(default_factory=list)


@dataclass
class _Context:
    project: Project
    policy: dict[str, Any]
    predictions: dict[int, list[PredictionRow]]
    opinions: dict[int, list[OpinionRow]]
    weights: dict[str, float]
    examples: dict[int, ExampleRow]
    items: list[ItemRow]
    decided_items: set[int]
    writes: _Writes = field(default_factory=_Writes)
    items_by_cluster: dict[int, list[ItemRow]] = field(default_factory=dict)
    items_by_prediction: dict[int, list[ItemRow]] = field(default_factory=dict)
    audited: set[int] = field(default_factory=set)
    foreign: set[int] = field(default_factory=set)
    trusted: frozenset[str] = field(init=False, default=frozenset())  # from policy

    def __post_init__(self) -> None:
        self.trusted = frozenset(self.policy.get("trusted_users") or [])

    def index_items(self) -> None:
        """Index the items read by cluster and prediction (before routing: pure Python,
        so ``route_clusters`` does it while the caller's writes are in flight)."""
        by_cluster: dict[int, list[ItemRow]] = defaultdict(list)
        by_prediction: dict[int, list[ItemRow]] = defaultdict(list)
        for item in self.items:
            self._index(item, by_cluster, by_prediction)
            if item.reason == "audit" and item.status not in OPEN_STATUSES:
                self.audited.add(item.prediction_id)  # type: ignore[arg-type]
            if item.status in OPEN_STATUSES and item.reason not in ROUTED_REASONS:
                self.foreign.add(item.prediction_id)  # type: ignore[arg-type]
        self.items_by_cluster, self.items_by_prediction = by_cluster, by_prediction

    @staticmethod
    def _index(
        item: ItemRow, by_cluster: dict[int, list[ItemRow]], by_prediction: dict[int, list[ItemRow]]
    ) -> None:
        if item.cluster_id is not None:
            by_cluster[item.cluster_id].append(item)
        if item.prediction_id is not None:
            by_prediction[item.prediction_id].append(item)

    def add_item(self, item: ItemRow) -> None:
        self.items.append(item)
        self._index(item, self.items_by_cluster, self.items_by_prediction)


# Clusters read, decided and written together (a few statements per chunk, whatever its size).
ROUTE_CHUNK = 5000


def route_clusters(
    session: Session,
    *,
    project: Project,
    cluster_ids: Iterable[int],
    alongside: Sequence[Write] = (),
    unstored: Mapping[tuple[int, str], Opinion] | None = None,
) -> RouteResult:
    """Recompute and store the outcome of each cluster: examples, review items, audits.

    Set-based: each chunk of clusters is read in a handful of queries into plain records,
    decided in Python, and written back in a handful of bulk statements. ``alongside``
    (PostgreSQL): the caller's writes that routing does not read, sent while the first
    chunk is decided. ``unstored``: opinions by (prediction, end user) the caller changed
    and writes in ``alongside``; they stand in for the stored ones.
    """
    result = RouteResult()
    session.flush()  # pending ORM changes of the caller (e.g. an erasure) must be visible
    wrote, ids = False, sorted(set(cluster_ids))
    for part in chunks(ids, ROUTE_CHUNK):
        context = _load(session, project, part, unstored or {})
        with writes_sent_meanwhile(session, alongside):
            context.index_items()
            for cluster_id in part:
                _route_one(context, cluster_id, result)
        alongside = ()
        wrote = _write(session, context) or wrote
        _mark_routed(session, part)
    for write in alongside:  # no cluster to route
        execute_write(session, write)
    if wrote or ids:  # ORM objects the caller holds must not show stale bulk writes
        for obj in list(session.identity_map.values()):
            if isinstance(obj, Example | ReviewItem | Cluster):
                session.expire(obj)
    return result


PREDICTIONS, OPINIONS, EXAMPLES, ITEMS = (
    t.__table__ for t in (Prediction, EffectiveOpinion, Example, ReviewItem)
)


def _load(
    session: Session,
    project: Project,
    cluster_ids: list[int],
    unstored: Mapping[tuple[int, str], Opinion],
) -> _Context:
    predictions: dict[int, list[PredictionRow]] = defaultdict(list)
    query = (
        sa.select(
            PREDICTIONS.c.id,
            PREDICTIONS.c.cluster_id,
            PREDICTIONS.c.output,
            PREDICTIONS.c.confidence,
            PREDICTIONS.c.audit_sample,
        )
        .where(
            PREDICTIONS.c.project_id == project.id,
            among(session, PREDICTIONS.c.cluster_id, cluster_ids),
        )
        .order_by(PREDICTIONS.c.id)
    )
    for row in fetch_rows(session, query):
        predictions[row[1]].append(PredictionRow(*row))
    opinions, weights = _opinions_and_weights(session, project.id, cluster_ids, unstored)  # type: ignore[arg-type]
    prediction_ids = [p.id for group in predictions.values() for p in group]
    items = _items(session, project.id, prediction_ids, cluster_ids)  # type: ignore[arg-type]
    return _Context(
        project=project,
        policy=effective_policy(project),
        predictions=predictions,
        opinions=opinions,
        weights=weights,
        examples=_examples(session, project.id, prediction_ids),  # type: ignore[arg-type]
        items=items,
        decided_items=_decided(session, [i.id for i in items if i.status == "pending"]),  # type: ignore[misc]
    )


STATUS = EndUserStatus.__table__


def _opinions_and_weights(
    session: Session,
    project_id: int,
    cluster_ids: list[int],
    unstored: Mapping[tuple[int, str], Opinion],
) -> tuple[dict[int, list[OpinionRow]], dict[str, float]]:
    """The clusters' opinions (``unstored`` ones instead of what is stored for their keys;
    PostgreSQL only: SQLite reads the standings with the stored rows, so its caller stores
    first), and each of their users' weight: the reliability, 0 in
    quarantine; users without a standing are absent (weight 1). On SQLite the standings
    come with the opinions (a lookup by a list of every user of a large cluster cost as
    much as reading the opinions there); PostgreSQL looks them up by one array parameter
    (the join was planned worse there: bench/processing.py 10,200 -> 7,300 events/s)."""
    sqlite = dialect(session) == "sqlite"
    c = OPINIONS.c
    columns = (c.prediction_id, c.cluster_id, c.end_user, c.event_id, c.order_key, c.kind)
    query = sa.select(*columns, c.value, sa.null(), sa.null()).where(
        c.project_id == project_id, among(session, c.cluster_id, cluster_ids)
    )
    if sqlite:
        standing = sa.and_(STATUS.c.project_id == c.project_id, STATUS.c.end_user == c.end_user)
        quarantined = STATUS.c.quarantined_at.is_not(None)
        query = query.with_only_columns(
            *columns, c.value, STATUS.c.reliability, quarantined
        ).select_from(OPINIONS.outerjoin(STATUS, standing))
    opinions: dict[int, list[OpinionRow]] = defaultdict(list)
    weights: dict[str, float] = {}
    for pid, cid, user, event_id, order, kind, value, reliability, quarantined in fetch_driver_rows(
        session, query
    ):
        if sqlite and value is not None:  # JSON comes as text there
            value = None if value == "null" else json_loads(value)
        if reliability is not None:
            weights[user] = 0.0 if quarantined else reliability
        if (pid, user) not in unstored:
            opinions[cid].append(OpinionRow(pid, cid, user, event_id, order, kind, value))
    chunk = set(cluster_ids)
    for o in unstored.values():
        if o.cluster_id in chunk:
            opinions[o.cluster_id].append(_opinion_row(o))  # type: ignore[index]
    if not sqlite:
        users = {o.end_user for group in opinions.values() for o in group}
        weights = _user_weights(session, project_id, users)
    return opinions, weights


def _opinion_row(o: Opinion) -> OpinionRow:
    return OpinionRow(
        o.prediction_id,
        o.cluster_id,
        o.end_user,
        o.event_id,
        o.order_key,
        o.kind,
        o.value,  # type: ignore[arg-type]
    )


def _user_weights(session: Session, project_id: int, users: set[str]) -> dict[str, float]:
    """Reliability per end user; quarantined users weigh nothing."""
    weights: dict[str, float] = {}
    for part in chunks(sorted(users)):
        query = sa.select(STATUS.c.end_user, STATUS.c.reliability, STATUS.c.quarantined_at).where(
            STATUS.c.project_id == project_id,
            among(session, STATUS.c.end_user, part, kind="varchar"),
        )
        for user, reliability, quarantined_at in fetch_rows(session, query):
            weights[user] = 0.0 if quarantined_at else reliability
    return weights


def _examples(
    session: Session, project_id: int, prediction_ids: list[int]
) -> dict[int, ExampleRow]:
    found: dict[int, ExampleRow] = {}
    columns = (
        EXAMPLES.c.id,
        EXAMPLES.c.prediction_id,
        EXAMPLES.c.source,
        EXAMPLES.c.target,
        EXAMPLES.c.agreement,
    )
    for part in chunks(prediction_ids):
        query = sa.select(*columns, EXAMPLES.c.provenance, EXAMPLES.c.deleted_at).where(
            EXAMPLES.c.project_id == project_id, among(session, EXAMPLES.c.prediction_id, part)
        )
        found.update((row[1], ExampleRow(*row)) for row in session.execute(query).all())
    return found


def _items(
    session: Session, project_id: int, prediction_ids: list[int], cluster_ids: list[int]
) -> list[ItemRow]:
    items: dict[int, ItemRow] = {}
    columns = (
        ITEMS.c.id,
        ITEMS.c.prediction_id,
        ITEMS.c.cluster_id,
        ITEMS.c.reason,
        ITEMS.c.priority,
        ITEMS.c.status,
    )
    for part in chunks(prediction_ids):
        query = (
            sa.select(*columns)
            .where(
                ITEMS.c.project_id == project_id,
                sa.or_(
                    among(session, ITEMS.c.prediction_id, part),
                    among(session, ITEMS.c.cluster_id, cluster_ids),
                ),
            )
            .order_by(ITEMS.c.id)
        )
        items.update((row[0], ItemRow(*row)) for row in fetch_rows(session, query))
    return list(items.values())


def _route_one(ctx: _Context, cluster_id: int, result: RouteResult) -> None:
    predictions = {p.id: p for p in ctx.predictions.get(cluster_id, [])}
    if not predictions:
        return
    reviewed = any(
        ctx.examples.get(pid) is not None and ctx.examples[pid].source == "reviewed"
        for pid in predictions
    )
    need = Need() if reviewed else decide(ctx, predictions, ctx.opinions.get(cluster_id, []))
    _write_examples(ctx, cluster_id, predictions, need, result)
    desired = _desired_items(ctx, predictions, need)
    _reconcile_items(ctx, cluster_id, predictions, desired, result)


def decide(
    ctx: _Context, predictions: dict[int, PredictionRow], opinions: list[OpinionRow]
) -> Need:
    """Aggregate one cluster's opinions (one per user: their latest in the cluster)."""
    latest: dict[str, OpinionRow] = {}
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
    ctx: _Context, predictions: dict[int, PredictionRow], opinions: Iterable[OpinionRow]
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
    trusted = ctx.trusted
    if not trusted:
        return None
    labels = {v.label for v in votes if v.user in trusted}
    return labels.pop() if len(labels) == 1 else None


def _costly(ctx: _Context, label: str, model_label: str | None) -> bool:
    threshold = ctx.policy.get("high_cost_threshold")
    return threshold is not None and error_cost(ctx.policy, label, model_label) >= float(threshold)


def _output_key(ctx: _Context, prediction: PredictionRow) -> str | None:
    if prediction.output is None:
        return None
    return label_key(prediction.output, ctx.project.task_type)


def _by_prediction(opinions: Iterable[OpinionRow]) -> dict[int, list[OpinionRow]]:
    grouped: dict[int, list[OpinionRow]] = defaultdict(list)
    for opinion in opinions:
        grouped[opinion.prediction_id].append(opinion)
    return grouped


def _write_examples(
    ctx: _Context,
    cluster_id: int,
    predictions: dict[int, PredictionRow],
    need: Need,
    result: RouteResult,
) -> None:
    event_ids = sorted(o.event_id for group in need.voters.values() for o in group)
    for pid, prediction in predictions.items():
        existing = ctx.examples.get(pid)
        if need.settled and pid in need.voters:
            provenance = {"event_ids": event_ids, "cluster_id": cluster_id, "method": "majority"}
            if _example_differs(existing, need, provenance):
                agreement = round(need.agreement or 0.0, 6)
                ctx.writes.examples[pid] = {
                    "prediction_id": pid,
                    "model_output": prediction.output,
                    "cluster_id": prediction.cluster_id,
                    "target": need.settled_value,
                    "source": "consensus",
                    "provenance": provenance,
                    "agreement": agreement,
                }
                ctx.examples[pid] = ExampleRow(
                    None, pid, "consensus", need.settled_value, agreement, provenance, None
                )
                result.examples_written += 1
        elif (
            existing is not None and existing.source == "consensus" and existing.deleted_at is None
        ):
            # Consensus fell apart (e.g. a conflicting opinion arrived): withdraw the example.
            ctx.writes.retract.append(existing.id)  # type: ignore[arg-type]
            existing.deleted_at = True
            result.examples_retracted += 1


def _example_differs(existing: ExampleRow | None, need: Need, provenance: dict[str, Any]) -> bool:
    if existing is None or existing.deleted_at is not None or existing.source != "consensus":
        return True
    return (
        existing.target != need.settled_value
        or existing.agreement != round(need.agreement or 0.0, 6)
        or existing.provenance != provenance
    )


def _desired_items(
    ctx: _Context, predictions: dict[int, PredictionRow], need: Need
) -> dict[int, tuple[str, float]]:
    desired: dict[int, tuple[str, float]] = {}
    if need.reason is not None and need.prediction_id is not None:
        desired[need.prediction_id] = (
            need.reason,
            max(need.priority, FLAGGED_MIN_PRIORITY if need.reason == "flagged" else 0.0),
        )
    for pid, prediction in predictions.items():
        example = ctx.examples.get(pid)
        if not prediction.audit_sample or pid in ctx.audited:
            continue
        if example is not None and example.source == "reviewed":
            continue
        priority = review_priority(
            ctx.policy, Tally(), _output_key(ctx, prediction), prediction.confidence
        )
        current = desired.get(pid)
        desired[pid] = ("audit", max(priority, current[1] if current else 0.0))
    return desired


def _open_items(
    ctx: _Context, cluster_id: int, predictions: dict[int, PredictionRow]
) -> list[ItemRow]:
    """Open routed items on this cluster or on any of its predictions, oldest first."""
    found = {id(i): i for i in ctx.items_by_cluster.get(cluster_id, ())}
    for pid in predictions:
        found.update((id(i), i) for i in ctx.items_by_prediction.get(pid, ()))
    return sorted(
        (i for i in found.values() if i.status in OPEN_STATUSES and i.reason in ROUTED_REASONS),
        key=lambda i: (i.id is None, i.id or 0),
    )


def _reconcile_items(
    ctx: _Context,
    cluster_id: int,
    predictions: dict[int, PredictionRow],
    desired: dict[int, tuple[str, float]],
    result: RouteResult,
) -> None:
    remaining = dict(desired)
    for item in _open_items(ctx, cluster_id, predictions):
        wanted = remaining.pop(item.prediction_id, None)  # type: ignore[arg-type]
        if wanted is None:
            if item.status == "pending" and item.id not in ctx.decided_items:
                ctx.writes.delete_items.append(item.id)  # type: ignore[arg-type]
                item.status = "deleted"
                result.items_removed += 1
            continue
        if (item.reason, item.priority, item.cluster_id) != (wanted[0], wanted[1], cluster_id):
            item.reason, item.priority, item.cluster_id = wanted[0], wanted[1], cluster_id
            ctx.writes.update_items.append(item)
            result.items_updated += 1
    for pid, (reason, priority) in sorted(remaining.items()):
        if pid in ctx.foreign:  # e.g. a gold item is open: one open item per prediction
            continue
        item = ItemRow(None, pid, cluster_id, reason, priority, "pending")
        ctx.writes.new_items.append(item)
        ctx.add_item(item)
        result.items_created += 1


def _write(session: Session, ctx: _Context) -> bool:
    """Apply a chunk's changes: tombstones, examples, then item deletes, updates, inserts."""
    writes, project_id = ctx.writes, ctx.project.id
    delete_examples(session, project_id=project_id, example_ids=writes.retract)  # type: ignore[arg-type]
    if writes.examples:
        inputs = _inputs(session, list(writes.examples))
        rows = [{**row, "input": inputs[pid]} for pid, row in sorted(writes.examples.items())]
        upsert_examples(session, project_id=project_id, rows=rows)  # type: ignore[arg-type]
    for part in chunks(sorted(writes.delete_items)):
        session.execute(ITEMS.delete().where(among(session, ITEMS.c.id, part)))
    _update_items(session, writes.update_items)
    _insert_items(session, ctx, writes.new_items)
    return bool(
        writes.retract
        or writes.examples
        or writes.delete_items
        or writes.update_items
        or writes.new_items
    )


def _update_items(session: Session, items: list[ItemRow]) -> None:
    if not items:
        return
    now = utcnow()
    if dialect(session) == "postgresql":
        columns = {
            "id": ("bigint", [i.id for i in items]),
            "reason": ("varchar", [i.reason for i in items]),
            "priority": ("float8", [i.priority for i in items]),
            "cluster_id": ("bigint", [i.cluster_id for i in items]),
            "updated_at": ("timestamptz", [now] * len(items)),
        }
        update_arrays(session, "review_item", "id", columns)
        return
    statement = (
        ITEMS.update()
        .where(ITEMS.c.id == sa.bindparam("b_id"))
        .values(
            reason=sa.bindparam("b_reason"),
            priority=sa.bindparam("b_priority"),
            cluster_id=sa.bindparam("b_cluster"),
            updated_at=now,
        )
    )
    rows = [
        {"b_id": i.id, "b_reason": i.reason, "b_priority": i.priority, "b_cluster": i.cluster_id}
        for i in items
    ]
    session.execute(statement, rows)


def _insert_items(session: Session, ctx: _Context, items: list[ItemRow]) -> None:
    if not items:
        return
    now = utcnow()
    overlap = int(ctx.policy["review_overlap"])
    if dialect(session) == "postgresql":
        count = len(items)
        columns: dict[str, tuple[str, Any]] = {
            "project_id": ("bigint", [ctx.project.id] * count),
            "prediction_id": ("bigint", [i.prediction_id for i in items]),
            "cluster_id": ("bigint", [i.cluster_id for i in items]),
            "reason": ("varchar", [i.reason for i in items]),
            "priority": ("float8", [i.priority for i in items]),
            "status": ("varchar", ["pending"] * count),
            "required_reviews": ("integer", [overlap] * count),
            "needs_adjudication": ("boolean", ["false"] * count),
            "created_at": ("timestamptz", [now] * count),
            "updated_at": ("timestamptz", [now] * count),
        }
        _insert_pg(session, columns)
        return
    rows = [
        {
            "project_id": ctx.project.id,
            "prediction_id": i.prediction_id,
            "cluster_id": i.cluster_id,
            "reason": i.reason,
            "priority": i.priority,
            "status": "pending",
            "required_reviews": overlap,
            "needs_adjudication": False,
            "created_at": now,
            "updated_at": now,
        }
        for i in items
    ]
    session.execute(ITEMS.insert(), rows)


def _insert_pg(session: Session, columns: dict[str, tuple[str, Any]]) -> None:
    """One ``INSERT … SELECT FROM unnest(arrays)``; unlike ``insert_arrays`` a conflict
    (a second open item for a prediction) still raises."""
    names = ", ".join(columns)
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, (kind, _) in columns.items())
    session.execute(
        sa.text(f"INSERT INTO review_item ({names}) SELECT * FROM unnest({arrays})"),
        {name: typed_array_literal(values, kind) for name, (kind, values) in columns.items()},
    )


def _inputs(session: Session, prediction_ids: list[int]) -> dict[int, Any]:
    found: dict[int, Any] = {}
    for part in chunks(sorted(prediction_ids)):
        query = sa.select(PREDICTIONS.c.id, PREDICTIONS.c.input).where(
            among(session, PREDICTIONS.c.id, part)
        )
        found.update((pid, value) for pid, value in session.execute(query))
    return found


def _decided(session: Session, item_ids: list[int]) -> set[int]:
    """Items that already carry a decision (never deleted, even when no longer needed)."""
    found: set[int] = set()
    for part in chunks(item_ids):
        query = select(Decision.review_item_id).where(
            among(session, col(Decision.review_item_id), part)
        )
        found.update(session.exec(query))
    return found


_CLUSTERS = Cluster.__table__
# Touched (``abuse.touch_users_clusters``: a user's weight changed) since last routed.
WAITING_FOR_ROUTING = _CLUSTERS.c.touched_at.is_not(None) & (
    _CLUSTERS.c.aggregated_at.is_(None) | (_CLUSTERS.c.touched_at > _CLUSTERS.c.aggregated_at)
)


def _mark_routed(session: Session, cluster_ids: list[int]) -> None:
    """Clear the staleness of the routed clusters that were waiting for re-routing.

    Only those rows are written: processing routes every cluster whose opinions it changed
    in the same transaction, so nothing is left stale there, and stamping every routed
    cluster was an index-changing update per cluster (~8 µs of backend per event).
    """
    # A Core statement: an ORM one would fetch the ids back to sync the identity map.
    session.execute(
        _CLUSTERS.update()
        .where(among(session, _CLUSTERS.c.id, cluster_ids), WAITING_FOR_ROUTING)
        .values(aggregated_at=utcnow())
    )
