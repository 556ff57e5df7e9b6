"""Recomputing the metric facts of predictions from the raw tables.

The database summarises each prediction's events in one set-based query (``inputs.py``);
``FactBuilder`` applies the definitions to each summary row. ``refresh_facts`` (incremental)
is idempotent: it compares each prediction's new contribution with the stored one and
applies only the difference to the rollups, so running it twice — or on a prediction nothing
happened to — changes nothing. ``write_fresh_facts`` (a rebuild) writes facts in bulk
(``COPY`` on PostgreSQL) and sums their rollups in memory.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from ..bulk import chunks
from ..db import is_sqlite
from ..models import MetricFact, Project, utcnow
from .definitions import (
    Opinions,
    Settled,
    contribution_of,
    is_confident,
    label_key,
    segment_values,
    shadow_contribution,
    ttd_bucket,
)
from .inputs import InputRow, rows_for_ids
from .rollups import RollupKey, apply_deltas, keys_for

FACT_COLUMNS = (
    "project_id",
    "prediction_id",
    "shadow_of",
    "model_version",
    "day",
    "segment",
    "output_key",
    "label_key",
    "contribution",
    "updated_at",
)
CACHE_LIMIT = 10_000  # distinct outputs / segments parsed once per run, up to this many
Deltas = dict[RollupKey, dict[str, float]]
# (project, version, day, segment JSON) → contribution JSON → (contribution, how many)
Groups = dict[tuple[int, str, date, str], dict[str, tuple[dict[str, float], int]]]


class FactBuilder:
    """Turns summary rows into fact values. Outputs and segments repeat a lot (a handful of
    labels, a few segment combinations), so their JSON is parsed once and cached."""

    def __init__(self, policies: dict[int, dict[str, Any]]) -> None:
        self.policies = policies
        self._values: dict[str, tuple[Any, str | None]] = {}
        self._segments: dict[str, tuple[dict[str, str], str]] = {}
        self._contributions: dict[tuple[Any, ...], tuple[dict[str, float], str]] = {}
        self._buckets: dict[int, int] = {}

    def value(self, raw: str | None) -> tuple[Any, str | None]:
        """(parsed JSON value, its label key)."""
        if raw is None:
            return None, None
        found = self._values.get(raw)
        if found is None:
            value = json.loads(raw)
            found = (value, label_key(value))
            if len(self._values) < CACHE_LIMIT:
                self._values[raw] = found
        return found

    def segment(self, raw: str | None) -> tuple[dict[str, str], str]:
        """(segment values as stored in facts, the same as canonical JSON text)."""
        found = self._segments.get(raw or "{}")
        if found is None:
            values = segment_values(json.loads(raw or "{}"))
            found = (values, json.dumps(values, sort_keys=True))
            if len(self._segments) < CACHE_LIMIT:
                self._segments[raw or "{}"] = found
        return found

    def contribution(self, row: InputRow) -> tuple[dict[str, float], str]:
        """(contribution, its JSON text) of one prediction. Unsettled production predictions
        share few distinct contributions, so those are computed once and shared: never
        mutate the dict returned."""
        output = self.value(row.output)[0]
        settled = Settled(self.value(row.target)[0], bool(row.audited)) if row.settled else None
        if row.shadow_of is not None:  # the settled label on a shadow row is its twin's
            twin_output = self.value(row.twin_output)[0] if row.has_twin else None
            found = shadow_contribution(
                output=output, production_output=twin_output, production_settled=settled
            )
            return found, json.dumps(found)
        policy = self.policies.get(row.project_id, {})
        opinions = _opinions(row)
        if settled is not None:
            found = contribution_of(
                policy=policy,
                output=output,
                confidence=row.confidence,
                viewed=bool(row.viewed),
                opinions=opinions,
                settled=settled,
            )
            return found, json.dumps(found)
        key = (
            row.project_id,
            is_confident(policy, output, row.confidence),
            bool(row.viewed),
            opinions.count,
            opinions.overridden,
            tuple(sorted(self._bucket(ms) for ms in opinions.ttds if ms >= 0)),
        )
        cached = self._contributions.get(key)
        if cached is None:
            found = contribution_of(
                policy=policy,
                output=output,
                confidence=row.confidence,
                viewed=bool(row.viewed),
                opinions=opinions,
                settled=None,
            )
            cached = (found, json.dumps(found))
            if len(self._contributions) < CACHE_LIMIT:
                self._contributions[key] = cached
        return cached

    def _bucket(self, ms: int) -> int:
        found = self._buckets.get(ms)
        if found is None:
            found = ttd_bucket(ms)
            if len(self._buckets) < CACHE_LIMIT:
                self._buckets[ms] = found
        return found

    def keys(self, row: InputRow) -> tuple[str | None, str | None]:
        """(output key, label key) of the fact: confusion-matrix coordinates."""
        if row.shadow_of is not None:
            return None, None
        label = label_key(self.value(row.target)[0]) if row.settled else None
        return self.value(row.output)[1], label

    def fact(self, row: InputRow) -> dict[str, Any]:
        """The fact values of one prediction (the columns of ``metric_fact``)."""
        output_key, label = self.keys(row)
        return {
            "project_id": row.project_id,
            "prediction_id": row.id,
            "shadow_of": row.shadow_of,
            "model_version": row.model_version or "",
            "day": row.day,
            "segment": self.segment(row.segment)[0],
            "output_key": output_key,
            "label_key": label,
            "contribution": self.contribution(row)[0],
        }


def _opinions(row: InputRow) -> Opinions:
    if not row.opinions:
        return Opinions()
    ttds = tuple(int(t) for t in row.ttds.split(",")) if row.ttds else ()
    return Opinions(count=int(row.opinions), overridden=bool(row.overridden), ttds=ttds)


def policies_of(session: Session, project_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    query = select(Project.id, Project.policy).where(col(Project.id).in_(set(project_ids)))
    return {pid: policy or {} for pid, policy in session.execute(query)}


# --- incremental -------------------------------------------------------------------------


def refresh_facts(session: Session, prediction_ids: Iterable[int]) -> int:
    """Recompute the facts of these predictions (and of their shadow twins); apply the
    differences to the rollups. Returns how many facts changed."""
    ids = sorted(set(prediction_ids))
    if not ids:
        return 0
    ids = sorted(set(ids) | _shadow_twins(session, ids))
    rows = [row for part in chunks(ids) for row in rows_for_ids(session, part)]
    builder = FactBuilder(policies_of(session, {row.project_id for row in rows}))
    existing = _existing_facts(session, ids)
    deltas: Deltas = defaultdict(dict)
    changed: list[dict[str, Any]] = []
    for row in rows:
        values = builder.fact(row)
        old = existing.get(row.id)
        if old is not None:
            if all(old[name] == values[name] for name in FACT_COLUMNS[:-1]):
                continue
            accumulate(deltas, keys_of(old), old["contribution"], -1.0)
        accumulate(deltas, keys_of(values), values["contribution"], 1.0)
        changed.append(values)
    _upsert_facts(session, changed)
    apply_deltas(session, deltas)
    return len(changed)


def _shadow_twins(session: Session, ids: Sequence[int]) -> set[int]:
    """Shadow predictions whose production twin is among ``ids``: the twin's label also
    decides their facts."""
    sql = """
        SELECT f.prediction_id FROM prediction q
        JOIN metric_fact f ON f.project_id = q.project_id AND f.shadow_of = q.client_id
        WHERE q.id IN :ids AND q.shadow_of IS NULL
    """
    statement = text(sql).bindparams(bindparam("ids", expanding=True))
    return {pid for part in chunks(ids) for (pid,) in session.execute(statement, {"ids": part})}


def _existing_facts(session: Session, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    table = MetricFact.__table__  # type: ignore[attr-defined]
    columns = [table.c[name] for name in FACT_COLUMNS[:-1]]
    found: dict[int, dict[str, Any]] = {}
    for part in chunks(ids):
        query = select(*columns).where(table.c.prediction_id.in_(part))
        for row in session.execute(query).mappings():
            found[row["prediction_id"]] = dict(row)
    return found


def _upsert_facts(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    now = utcnow()
    for row in rows:
        row["updated_at"] = now
    table = MetricFact.__table__  # type: ignore[attr-defined]
    insert = sqlite.insert if is_sqlite(session.get_bind()) else postgresql.insert  # type: ignore[arg-type]
    statement = insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.prediction_id],
        set_={name: statement.excluded[name] for name in FACT_COLUMNS if name != "prediction_id"},
    )
    session.execute(statement, rows)


# --- rebuild -----------------------------------------------------------------------------


def write_fresh_facts(
    session: Session, builder: FactBuilder, rows: Iterable[InputRow], groups: Groups
) -> int:
    """Insert the facts of predictions that have none (a rebuild) and count their
    contributions in ``groups`` per (project, version, day, segment JSON) — expanded into
    rollup rows once at the end by ``expand_groups``."""
    if is_sqlite(session.get_bind()):  # type: ignore[arg-type]
        values = []
        for row in rows:
            fact = builder.fact(row)
            _count(groups, builder, row, fact["day"])
            values.append({**fact, "updated_at": utcnow()})
        if values:
            session.execute(MetricFact.__table__.insert(), values)  # type: ignore[attr-defined]
        return len(values)
    return _copy_facts(session, builder, rows, groups)


def _count(groups: Groups, builder: FactBuilder, row: InputRow, day: date) -> str:
    """Count the row's contribution in its group; returns the contribution's JSON."""
    contribution, text_ = builder.contribution(row)
    key = (row.project_id, row.model_version or "", day, builder.segment(row.segment)[1])
    group = groups.setdefault(key, {})
    if text_ in group:
        group[text_] = (contribution, group[text_][1] + 1)
    else:
        group[text_] = (contribution, 1)
    return text_


def _copy_facts(
    session: Session, builder: FactBuilder, rows: Iterable[InputRow], groups: Groups
) -> int:
    """PostgreSQL ``COPY … FROM STDIN`` (text format) on the session's own connection, same
    transaction: no statement to parse, no per-row parameters to bind."""
    now = utcnow().isoformat()
    lines = []
    for row in rows:
        contribution = _count(groups, builder, row, row.day)
        output_key, label = builder.keys(row)
        fields = (
            str(row.project_id),
            str(row.id),
            _copy_text(row.shadow_of),
            _copy_text(row.model_version or ""),
            row.day.isoformat(),
            _copy_text(builder.segment(row.segment)[1]),
            _copy_text(output_key),
            _copy_text(label),
            _copy_text(contribution),
            now,
        )
        lines.append("\t".join(fields))
    if lines:
        driver = session.connection().connection.driver_connection
        sql = f"COPY metric_fact ({', '.join(FACT_COLUMNS)}) FROM STDIN"
        with driver.cursor() as cursor, cursor.copy(sql) as copy:  # type: ignore[union-attr]
            copy.write("\n".join(lines) + "\n")
    return len(lines)


def _copy_text(value: str | None) -> str:
    """A field of COPY's text format: NULL as \\N; backslash, tab and line ends escaped."""
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value


def expand_groups(groups: Groups) -> Deltas:
    """Counted contributions per (project, version, day, segment) → rollup rows (all
    traffic + each segment attribute)."""
    deltas: Deltas = defaultdict(dict)
    for (project_id, version, day, segment_json), counted in groups.items():
        sums: dict[str, float] = {}
        for contribution, n in counted.values():
            for name, value in contribution.items():
                sums[name] = sums.get(name, 0.0) + value * n
        segment = json.loads(segment_json)
        accumulate(deltas, keys_for(project_id, version, day, segment), sums, 1.0)
    return deltas


# --- shared ------------------------------------------------------------------------------


def keys_of(values: dict[str, Any]) -> list[RollupKey]:
    day: date = values["day"]
    return keys_for(values["project_id"], values["model_version"], day, values["segment"])


def accumulate(
    deltas: Deltas, keys: list[RollupKey], values: dict[str, float], sign: float
) -> None:
    for key in keys:
        target = deltas[key]
        for name, value in values.items():
            target[name] = target.get(name, 0.0) + sign * value
