"""Additive rollup rows: one per project, model version, day and segment value.

Only the rollup worker (holding the watermark lock) writes here, so read-modify-write of a
row is safe; readers sum rows and never touch raw events.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import NamedTuple

from sqlmodel import Session, col, select

from ..models import MetricRollup
from ..models.metrics import ROLLUP_COUNTERS

COUNTERS = frozenset(ROLLUP_COUNTERS)


class RollupKey(NamedTuple):
    project_id: int
    model_version: str
    day: date
    seg_key: str
    seg_value: str


def keys_for(
    project_id: int, model_version: str, day: date, segment: dict[str, str]
) -> list[RollupKey]:
    """The all-traffic row plus one row per segment attribute of the prediction."""
    keys = [RollupKey(project_id, model_version, day, "", "")]
    keys.extend(RollupKey(project_id, model_version, day, k, v) for k, v in sorted(segment.items()))
    return keys


def apply_deltas(session: Session, deltas: dict[RollupKey, dict[str, float]]) -> None:
    """Add each delta to its rollup row, creating rows as needed."""
    live = {key: delta for key, delta in deltas.items() if any(delta.values())}
    rows = _load_rows(session, list(live))
    for key, delta in live.items():
        row = rows.get(key) or MetricRollup(**key._asdict())
        _add(row, delta)
        session.add(row)
    session.flush()


def _load_rows(session: Session, keys: list[RollupKey]) -> dict[RollupKey, MetricRollup]:
    by_project: dict[int, list[RollupKey]] = defaultdict(list)
    for key in keys:
        by_project[key.project_id].append(key)
    found: dict[RollupKey, MetricRollup] = {}
    for project_id, project_keys in by_project.items():
        query = select(MetricRollup).where(
            MetricRollup.project_id == project_id,
            col(MetricRollup.day).in_({k.day for k in project_keys}),
            col(MetricRollup.model_version).in_({k.model_version for k in project_keys}),
        )
        wanted = set(project_keys)
        for row in session.exec(query):
            key = row_key(row)
            if key in wanted:
                found[key] = row
    return found


def row_key(row: MetricRollup) -> RollupKey:
    return RollupKey(row.project_id, row.model_version, row.day, row.seg_key, row.seg_value)


def _add(row: MetricRollup, delta: dict[str, float]) -> None:
    hist, confusion = dict(row.ttd_hist or {}), dict(row.confusion or {})
    for name, value in delta.items():
        if name in COUNTERS:
            setattr(row, name, (getattr(row, name) or 0.0) + value)
        elif name.startswith("h:"):
            _bump(hist, name[2:], value)
        elif name.startswith("c:"):
            _bump(confusion, name[2:], value)
    row.ttd_hist, row.confusion = hist, confusion  # new objects so the JSON change is seen


def _bump(counts: dict[str, float], key: str, value: float) -> None:
    total = counts.get(key, 0.0) + value
    if abs(total) < 1e-9:
        counts.pop(key, None)
    else:
        counts[key] = total
