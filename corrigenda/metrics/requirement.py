"""The project's written requirement, e.g. "≥ 88 % audited accuracy on ≥ 500 audited items".

Policy key ``requirement``::

    {"metric": "audited_accuracy", "threshold": 0.88, "min_n": 500,
     "population": {"model_version": "v2", "segment": "locale:de", "from": "2025-01-01"}}

``metric`` is ``audited_accuracy`` or ``coverage`` (must be at or above the threshold) or
``override_rate`` (must be at or below it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .query import Filters, Rate, rate
from .stats import wilson_interval

HIGHER_IS_BETTER = {"audited_accuracy": True, "coverage": True, "override_rate": False}
MAX_SEARCH_N = 10_000_000


class RequirementError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Requirement:
    metric: str
    threshold: float
    min_n: int
    population: Filters

    @classmethod
    def from_policy(cls, spec: dict[str, Any]) -> Requirement:
        metric = spec.get("metric", "audited_accuracy")
        if metric not in HIGHER_IS_BETTER:
            raise RequirementError("metric", f"metric must be one of {sorted(HIGHER_IS_BETTER)}")
        try:
            threshold = float(spec["threshold"])
        except (KeyError, TypeError, ValueError):
            raise RequirementError("threshold", "threshold must be a number in [0, 1]") from None
        if not 0.0 <= threshold <= 1.0:
            raise RequirementError("threshold", "threshold must be a number in [0, 1]")
        population = {k: str(v) for k, v in (spec.get("population") or {}).items()}
        return cls(metric, threshold, int(spec.get("min_n") or 0), Filters.parse(population))

    def describe(self) -> str:
        sign = "≥" if HIGHER_IS_BETTER[self.metric] else "≤"
        name = self.metric.replace("_", " ")
        return f"{name} {sign} {self.threshold:.0%} on ≥ {self.min_n} items"


@dataclass(frozen=True)
class Verdict:
    status: str  # "pass" | "fail" | "not_yet_known"
    rate: Rate
    more_items_needed: int | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "observed": self.rate.estimate,
            "low": self.rate.low,
            "high": self.rate.high,
            "n": int(self.rate.n),
            "more_items_needed": self.more_items_needed,
            "reason": self.reason,
        }


def evaluate(req: Requirement, k: float, n: float) -> Verdict:
    """Pass: at least ``min_n`` items and the whole 95 % interval on the good side.
    Fail: the whole interval on the bad side. Otherwise not yet known."""
    r = rate(k, n, 0)
    if r.estimate is None or r.low is None or r.high is None:
        return Verdict("not_yet_known", r, _more(req, 0, 0), "no items yet")
    good_low, good_high = (r.low, r.high) if HIGHER_IS_BETTER[req.metric] else (-r.high, -r.low)
    threshold = req.threshold if HIGHER_IS_BETTER[req.metric] else -req.threshold
    if good_high < threshold:
        return Verdict("fail", r, None, "the whole 95 % interval misses the threshold")
    if good_low >= threshold and n >= req.min_n:
        return Verdict("pass", r, None, "the whole 95 % interval meets the threshold")
    reason = (
        f"only {int(n)} of the {req.min_n} items required"
        if good_low >= threshold
        else "the 95 % interval straddles the threshold"
    )
    return Verdict("not_yet_known", r, _more(req, k, n), reason)


def _more(req: Requirement, k: float, n: float) -> int | None:
    """How many more items would settle it if the observed rate held (None: it never would,
    e.g. with no items yet or a rate exactly at the threshold)."""
    if n <= 0:
        return None
    p = k / n
    if _settles(req, p, max(int(n), req.min_n)):
        return max(0, req.min_n - int(n))
    low, high = max(int(n), req.min_n), max(int(n), req.min_n)
    while not _settles(req, p, high):
        if high >= MAX_SEARCH_N:
            return None
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if _settles(req, p, middle) else (middle, high)
    return high - int(n)


def _settles(req: Requirement, p: float, n: int) -> bool:
    interval = wilson_interval(round(p * n), n)
    if interval is None:
        return False
    return interval.low >= req.threshold or interval.high < req.threshold
