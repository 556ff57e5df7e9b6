"""The metric definitions of docs/metrics.md, applied to one prediction at a time.

``contribution(...)`` turns a prediction, its feedback events and its settled label into a
flat dict of additive counters; rollups are sums of these dicts. Keys are counter names
from ``ROLLUP_COUNTERS``, ``h:<bucket>`` (time-to-decision histogram) and ``c:<output>|<label>``
(confusion matrix over settled items).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

OVERRIDE_KINDS = frozenset({"reject", "correct"})
OPINION_KINDS = frozenset({"accept", "reject", "correct"})
MAX_LABEL_KEY = 100
MAX_SEGMENT_VALUE = 100
# Time-to-decision histogram: bucket 0 holds < 100 ms; bucket i ≥ 1 holds values in
# [100·1.1^(i-1), 100·1.1^i) ms — at most 10 % relative error on a reported quantile.
TTD_BASE_MS = 100.0
TTD_GROWTH = 1.1
TTD_MAX_BUCKET = 200


@dataclass(frozen=True)
class EventRow:
    id: int
    kind: str
    end_user: str | None
    client_time: datetime | None
    received_at: datetime
    time_to_decision_ms: int | None


@dataclass(frozen=True)
class Settled:
    """The settled label of a prediction and whether it came from the audit sample."""

    label: Any
    audited: bool


def label_key(value: Any) -> str | None:
    """A canonical text form of a label, or None if it is not a short class label."""
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        text = json.dumps(sorted(str(v) for v in value))
    elif isinstance(value, str | int | bool):
        text = str(value)
    else:
        return None
    return text if len(text) <= MAX_LABEL_KEY else None


def same_label(a: Any, b: Any) -> bool:
    """Whether a settled label equals a model output (lists compare as sets, text trimmed)."""
    if isinstance(a, list) and isinstance(b, list):
        return sorted(map(str, a)) == sorted(map(str, b))
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def segment_values(segment: dict[str, Any] | None) -> dict[str, str]:
    return {str(k)[:100]: str(v)[:MAX_SEGMENT_VALUE] for k, v in (segment or {}).items()}


def ttd_bucket(ms: float) -> int:
    if ms < TTD_BASE_MS:
        return 0
    return min(TTD_MAX_BUCKET, 1 + int(math.log(ms / TTD_BASE_MS, TTD_GROWTH) + 1e-9))


def ttd_bucket_upper(bucket: int) -> float:
    """The upper bound (ms) of a bucket: what a quantile in that bucket is reported as."""
    return TTD_BASE_MS * TTD_GROWTH**bucket


def effective_opinions(events: Iterable[EventRow]) -> dict[str, EventRow]:
    """Per end user, their latest accept/reject/correct by client time (then arrival, id)."""
    latest: dict[str, EventRow] = {}
    for event in events:
        if event.kind not in OPINION_KINDS:
            continue
        user = event.end_user or ""
        if user not in latest or _order(event) > _order(latest[user]):
            latest[user] = event
    return latest


def _order(event: EventRow) -> tuple[datetime, datetime, int]:
    return (event.client_time or event.received_at, event.received_at, event.id)


def cost_of(policy: dict[str, Any], true_key: str | None, pred_key: str | None) -> float:
    """Cost of predicting ``pred_key`` when ``true_key`` was right (0 on a match by default,
    ``default_error_cost`` — 1 — on a mismatch missing from the matrix)."""
    row = (policy.get("cost_matrix") or {}).get(true_key or "", {})
    if isinstance(row, dict) and pred_key in row:
        return float(row[pred_key])
    if true_key is not None and true_key == pred_key:
        return 0.0
    return float(policy.get("default_error_cost", 1.0))


def is_confident(policy: dict[str, Any], output: Any, confidence: float | None) -> bool:
    """Covered: the model answered (no null output) at or above the confidence threshold."""
    if output is None:
        return False
    threshold = float(policy.get("confidence_threshold") or 0.0)
    return confidence is None or confidence >= threshold


@dataclass(frozen=True)
class Opinions:
    """A prediction's effective opinions, summarised: how many, whether any overrides,
    and their times to decision (ms, where known)."""

    count: int = 0
    overridden: bool = False
    ttds: tuple[int, ...] = ()


def summarise(events: Iterable[EventRow]) -> tuple[bool, Opinions]:
    """(viewed, effective opinions) of a prediction's counted events — the reference rule
    that ``inputs.py`` computes in SQL."""
    events = list(events)
    opinions = effective_opinions(events).values()
    summary = Opinions(
        count=len(opinions),
        overridden=any(e.kind in OVERRIDE_KINDS for e in opinions),
        ttds=tuple(e.time_to_decision_ms for e in opinions if e.time_to_decision_ms is not None),
    )
    return any(e.kind == "view" for e in events), summary


def production_contribution(
    *,
    policy: dict[str, Any],
    output: Any,
    confidence: float | None,
    shown_at: datetime | None,
    events: list[EventRow],
    settled: Settled | None,
) -> dict[str, float]:
    """What a production (non-shadow) prediction adds to every counter, from its events."""
    viewed, opinions = summarise(events)
    return contribution_of(
        policy=policy,
        output=output,
        confidence=confidence,
        viewed=viewed or shown_at is not None,
        opinions=opinions,
        settled=settled,
    )


def contribution_of(
    *,
    policy: dict[str, Any],
    output: Any,
    confidence: float | None,
    viewed: bool,
    opinions: Opinions,
    settled: Settled | None,
) -> dict[str, float]:
    """What a production prediction adds to every counter, from its summarised opinions.
    ``viewed``: a counted view event or a ``shown_at`` time."""
    out: dict[str, float] = {"predictions": 1.0}
    if viewed or opinions.count:
        out["shown"] = 1.0
        out["overridden"] = float(opinions.overridden)
        out["accepted"] = float(not opinions.overridden and opinions.count > 0)
        out["confident"] = float(is_confident(policy, output, confidence))
        out["opinions"] = float(opinions.count)
        _add_ttd(out, opinions.ttds)
    if settled is not None:
        _add_settled(out, policy, output, settled)
    return {k: v for k, v in out.items() if v}


def _add_ttd(out: dict[str, float], ttds: Iterable[int]) -> None:
    for ms in ttds:
        if ms >= 0:
            key = f"h:{ttd_bucket(ms)}"
            out[key] = out.get(key, 0.0) + 1.0
            out["ttd_n"] = out.get("ttd_n", 0.0) + 1.0


def _add_settled(out: dict[str, float], policy: dict[str, Any], output: Any, s: Settled) -> None:
    correct = same_label(s.label, output)
    out["settled"] = 1.0
    out["settled_correct"] = float(correct)
    out_key, true_key = label_key(output), label_key(s.label)
    if out_key is not None and true_key is not None:
        out[f"c:{out_key}|{true_key}"] = 1.0
    if s.audited:
        out["audited"] = 1.0
        out["audited_correct"] = float(correct)
        out["cost_sum"] = 0.0 if correct else cost_of(policy, true_key, out_key)


def shadow_contribution(
    *,
    output: Any,
    production_output: Any,
    production_settled: Settled | None,
) -> dict[str, float]:
    """A candidate model's prediction, paired with its production twin on the twin's
    audited label. Only the ``shadow_*`` counters: a candidate never enters the headline."""
    if production_settled is None or not production_settled.audited:
        return {}
    label = production_settled.label
    cand_right = same_label(label, output)
    prod_right = same_label(label, production_output)
    out = {
        "shadow_pairs": 1.0,
        "shadow_agree": float(same_label(output, production_output)),
        "shadow_both_right": float(cand_right and prod_right),
        "shadow_prod_only": float(prod_right and not cand_right),
        "shadow_cand_only": float(cand_right and not prod_right),
    }
    return {k: v for k, v in out.items() if v}
