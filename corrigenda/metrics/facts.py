"""Recomputing the metric facts of a set of predictions from the raw tables.

``refresh_facts`` is idempotent: it compares each prediction's new contribution with the
stored one and applies only the difference to the rollups, so running it twice — or on a
prediction nothing happened to — changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, String, any_, bindparam, insert, or_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Session, col, select

from ..db import is_sqlite
from ..models import (
    Example,
    FeedbackEvent,
    MetricFact,
    Prediction,
    Project,
    ReviewItem,
    utcnow,
)
from .definitions import (
    EventRow,
    Settled,
    label_key,
    production_contribution,
    segment_values,
    shadow_contribution,
)
from .rollups import RollupKey, apply_deltas, keys_for

CHUNK = 900
# Events processing set aside but that still count here: "superseded" opinions are real
# opinions the effective-opinion rule below resolves itself. Capped or quarantined ones don't.
COUNTED_IGNORE_REASONS = ("superseded",)  # stays under SQLite's bound-parameter limit


def member_of(session: Session, column: Any, values: Sequence[Any]) -> Any:
    """``column IN values``; on PostgreSQL one array parameter (``= ANY``), which spares the
    driver parsing thousands of placeholders per query."""
    if is_sqlite(session.get_bind()):
        return col(column).in_(values)
    item = String() if values and isinstance(values[0], str) else BigInteger()
    return col(column) == any_(bindparam(None, list(values), type_=ARRAY(item)))


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class Inputs:
    """Everything the definitions need about a batch of predictions, loaded in bulk."""

    predictions: dict[int, Prediction] = field(default_factory=dict)
    events: dict[int, list[EventRow]] = field(default_factory=lambda: defaultdict(list))
    settled: dict[int, Settled] = field(default_factory=dict)
    productions: dict[tuple[int, str], Prediction] = field(default_factory=dict)
    policies: dict[int, dict[str, Any]] = field(default_factory=dict)


def refresh_facts(
    session: Session,
    prediction_ids: Iterable[int],
    *,
    audited: set[int] | None = None,
    fresh: dict[RollupKey, dict[str, float]] | None = None,
) -> int:
    """Recompute the facts of these predictions (and of their shadow twins); apply deltas.

    ``audited`` may carry the prediction ids with a settled audit item, prefetched by a
    rebuild; otherwise they are looked up. With ``fresh`` (a rebuild, no facts exist yet) the
    facts are bulk-inserted and the rollup deltas summed into ``fresh`` for the caller to
    write once. Returns how many facts changed."""
    ids = sorted(set(prediction_ids))
    if not ids:
        return 0
    inputs = Inputs()
    _load_predictions(session, inputs, ids)
    _add_shadow_twins(session, inputs)
    _load_productions(session, inputs)
    _load_events(session, inputs)
    _load_settled(session, inputs, audited)
    _load_policies(session, inputs)
    if fresh is not None:
        return _insert_facts(session, inputs, fresh)
    return _write_facts(session, inputs)


def _insert_facts(
    session: Session, inputs: Inputs, deltas: dict[RollupKey, dict[str, float]]
) -> int:
    rows = [_fact_values(inputs, p) for p in inputs.predictions.values()]
    for values in rows:
        _accumulate(deltas, _keys(values), values["contribution"], 1.0)
    if rows:  # Core insert: no ORM objects, one executemany
        session.connection().execute(insert(MetricFact.__table__), rows)  # type: ignore[arg-type]
    return len(rows)


def _load_predictions(session: Session, inputs: Inputs, ids: Sequence[int]) -> None:
    for part in chunks(ids):
        for p in session.exec(select(Prediction).where(member_of(session, Prediction.id, part))):
            inputs.predictions[p.id] = p  # type: ignore[index]


def _add_shadow_twins(session: Session, inputs: Inputs) -> None:
    """A production prediction's label also decides its shadow twins' facts."""
    by_project: dict[int, list[str]] = defaultdict(list)
    for p in inputs.predictions.values():
        if p.shadow_of is None:
            by_project[p.project_id].append(p.client_id)
    twin_ids: list[int] = []
    for project_id, client_ids in by_project.items():
        for part in chunks(client_ids):
            query = select(MetricFact.prediction_id).where(
                MetricFact.project_id == project_id, member_of(session, MetricFact.shadow_of, part)
            )
            twin_ids.extend(session.exec(query))
    _load_predictions(session, inputs, [i for i in twin_ids if i not in inputs.predictions])


def _load_productions(session: Session, inputs: Inputs) -> None:
    wanted: dict[int, set[str]] = defaultdict(set)
    for p in inputs.predictions.values():
        if p.shadow_of is not None:
            wanted[p.project_id].add(p.shadow_of)
    for project_id, client_ids in wanted.items():
        for part in chunks(sorted(client_ids)):
            query = select(Prediction).where(
                Prediction.project_id == project_id, member_of(session, Prediction.client_id, part)
            )
            for p in session.exec(query):
                inputs.productions[(project_id, p.client_id)] = p


def _load_events(session: Session, inputs: Inputs) -> None:
    ids = [i for i, p in inputs.predictions.items() if p.shadow_of is None]
    columns = (
        FeedbackEvent.prediction_id,
        FeedbackEvent.id,
        FeedbackEvent.kind,
        FeedbackEvent.end_user,
        FeedbackEvent.client_time,
        FeedbackEvent.received_at,
        FeedbackEvent.time_to_decision_ms,
    )
    for part in chunks(ids):
        query = select(*columns).where(
            member_of(session, FeedbackEvent.prediction_id, part),
            or_(
                col(FeedbackEvent.ignored_reason).is_(None),
                col(FeedbackEvent.ignored_reason).in_(COUNTED_IGNORE_REASONS),
            ),
        )
        for row in session.exec(query):
            inputs.events[row[0]].append(EventRow(*row[1:]))


def _load_settled(session: Session, inputs: Inputs, audited: set[int] | None) -> None:
    by_project: dict[int, set[int]] = defaultdict(set)
    for p in [*inputs.predictions.values(), *inputs.productions.values()]:
        if p.shadow_of is None:
            by_project[p.project_id].add(p.id)  # type: ignore[arg-type]
    for project_id, ids in by_project.items():
        ordered = sorted(ids)
        audit_ids = audited if audited is not None else _audited_ids(session, ordered)
        for part in chunks(ordered):
            query = select(Example.prediction_id, Example.target).where(
                Example.project_id == project_id,
                member_of(session, Example.prediction_id, part),
                col(Example.deleted_at).is_(None),
            )
            for prediction_id, target in session.exec(query):
                inputs.settled[prediction_id] = Settled(target, prediction_id in audit_ids)


def _audited_ids(session: Session, ids: Sequence[int]) -> set[int]:
    found: set[int] = set()
    for part in chunks(ids):
        query = select(ReviewItem.prediction_id).where(
            member_of(session, ReviewItem.prediction_id, part),
            ReviewItem.reason == "audit",
            ReviewItem.status == "done",
        )
        found.update(i for i in session.exec(query) if i is not None)
    return found


def audited_ids_for_project(session: Session, project_id: int) -> set[int]:
    """Every prediction of the project whose audit-sample review is settled (one scan)."""
    query = select(ReviewItem.prediction_id).where(
        ReviewItem.project_id == project_id,
        ReviewItem.reason == "audit",
        ReviewItem.status == "done",
    )
    return {i for i in session.exec(query) if i is not None}


def _load_policies(session: Session, inputs: Inputs) -> None:
    project_ids = {p.project_id for p in inputs.predictions.values()}
    for project in session.exec(select(Project).where(col(Project.id).in_(project_ids))):
        inputs.policies[project.id] = project.policy or {}  # type: ignore[index]


def contribution_for(inputs: Inputs, p: Prediction) -> dict[str, float]:
    policy = inputs.policies.get(p.project_id, {})
    if p.shadow_of is not None:
        twin = inputs.productions.get((p.project_id, p.shadow_of))
        return shadow_contribution(
            output=p.output,
            production_output=twin.output if twin else None,
            production_settled=inputs.settled.get(twin.id) if twin else None,  # type: ignore[arg-type]
        )
    return production_contribution(
        policy=policy,
        output=p.output,
        confidence=p.confidence,
        shown_at=p.shown_at,
        events=inputs.events.get(p.id, []),  # type: ignore[arg-type]
        settled=inputs.settled.get(p.id),  # type: ignore[arg-type]
    )


def _write_facts(session: Session, inputs: Inputs) -> int:
    existing = _existing_facts(session, list(inputs.predictions))
    deltas: dict[RollupKey, dict[str, float]] = defaultdict(dict)
    changed = 0
    for prediction_id, p in inputs.predictions.items():
        old = existing.get(prediction_id)
        values = _fact_values(inputs, p)
        new_keys = _keys(values)
        if old is not None:
            old_keys = _keys(old.model_dump())
            if old_keys == new_keys and old.contribution == values["contribution"]:
                continue
            _accumulate(deltas, old_keys, old.contribution, -1.0)
        _accumulate(deltas, new_keys, values["contribution"], 1.0)
        fact = old or MetricFact(**values)
        for name, value in values.items():
            setattr(fact, name, value)
        session.add(fact)
        changed += 1
    apply_deltas(session, deltas)
    return changed


def _keys(values: dict[str, Any]) -> list[RollupKey]:
    return keys_for(values["project_id"], values["model_version"], values["day"], values["segment"])


def _existing_facts(session: Session, ids: list[int]) -> dict[int, MetricFact]:
    found: dict[int, MetricFact] = {}
    for part in chunks(sorted(ids)):
        for fact in session.exec(
            select(MetricFact).where(member_of(session, MetricFact.prediction_id, part))
        ):
            found[fact.prediction_id] = fact
    return found


def _fact_values(inputs: Inputs, p: Prediction) -> dict[str, Any]:
    settled = inputs.settled.get(p.id)  # type: ignore[arg-type]
    production = p.shadow_of is None
    return {
        "project_id": p.project_id,
        "prediction_id": p.id,
        "shadow_of": p.shadow_of,
        "model_version": p.model_version or "",
        "day": p.created_at.date(),
        "segment": segment_values(p.segment),
        "output_key": label_key(p.output) if production else None,
        "label_key": label_key(settled.label) if settled and production else None,
        "contribution": contribution_for(inputs, p),
        "updated_at": utcnow(),
    }


def _accumulate(
    deltas: dict[RollupKey, dict[str, float]],
    keys: list[RollupKey],
    values: dict[str, float],
    sign: float,
) -> None:
    for key in keys:
        target = deltas[key]
        for name, value in values.items():
            target[name] = target.get(name, 0.0) + sign * value
