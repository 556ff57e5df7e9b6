"""Fairness gaps between segment values, and shadow-mode comparison of a candidate model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .query import Counts, Rate, rate
from .stats import McNemarResult, mcnemar, two_proportion_p

# metric name → (successes counter, trials counter)
FAIRNESS_METRICS = {
    "audited_accuracy": ("audited_correct", "audited"),
    "override_rate": ("overridden", "shown"),
}


@dataclass(frozen=True)
class Gap:
    seg_key: str
    metric: str
    best: tuple[str, Rate]
    worst: tuple[str, Rate]
    p_value: float
    alpha: float  # the Bonferroni-corrected level this gap was judged at
    pairs: int  # comparisons this attribute's extremes stand for: v(v-1)/2

    @property
    def gap(self) -> float:
        return abs((self.best[1].estimate or 0.0) - (self.worst[1].estimate or 0.0))

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    def as_dict(self) -> dict[str, Any]:
        return {
            "segment": self.seg_key,
            "metric": self.metric,
            "best": {"value": self.best[0], **self.best[1].as_dict()},
            "worst": {"value": self.worst[0], **self.worst[1].as_dict()},
            "gap": self.gap,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "significant": self.significant,
        }


def fairness_gaps(
    segments: dict[tuple[str, str], Counts], *, min_cell: int, alpha: float = 0.05
) -> list[Gap]:
    """Best vs worst value of each segment attribute on each metric, among values with at
    least ``min_cell`` items. Picking the extremes among v values is v(v-1)/2 comparisons, so
    the level is alpha divided by the total number of pairs over all attributes and metrics
    (Bonferroni)."""
    candidates = []
    for metric, (k_name, n_name) in FAIRNESS_METRICS.items():
        for seg_key in sorted({key for key, _ in segments}):
            cells = [
                (value, rate(c.get(k_name, 0.0), c.get(n_name, 0.0), min_cell))
                for (key, value), c in segments.items()
                if key == seg_key and c.get(n_name, 0.0) >= min_cell
            ]
            if len(cells) >= 2:
                candidates.append((seg_key, metric, cells))
    pairs = sum(len(cells) * (len(cells) - 1) // 2 for _, _, cells in candidates)
    return [
        _gap(seg_key, metric, cells, alpha / max(pairs, 1)) for seg_key, metric, cells in candidates
    ]


def _gap(seg_key: str, metric: str, cells: list[tuple[str, Rate]], alpha: float) -> Gap:
    higher_is_better = metric != "override_rate"
    ordered = sorted(cells, key=lambda cell: cell[1].estimate or 0.0, reverse=higher_is_better)
    best, worst = ordered[0], ordered[-1]
    p = two_proportion_p(int(best[1].k), int(best[1].n), int(worst[1].k), int(worst[1].n))
    return Gap(seg_key, metric, best, worst, p, alpha, len(cells) * (len(cells) - 1) // 2)


@dataclass(frozen=True)
class ShadowComparison:
    candidate: str
    pairs: int
    candidate_accuracy: Rate
    production_accuracy: Rate
    agreement: Rate
    test: McNemarResult

    @property
    def verdict(self) -> str:
        if self.candidate_accuracy.suppressed:
            return "not enough data"
        if self.test.p_value >= 0.05:
            return "no significant difference"
        return "candidate better" if self.test.c > self.test.b else "candidate worse"

    def as_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "pairs": self.pairs,
            "candidate_accuracy": self.candidate_accuracy.as_dict(),
            "production_accuracy": self.production_accuracy.as_dict(),
            "agreement": self.agreement.as_dict(),
            "mcnemar": {
                "b_production_only_right": self.test.b,
                "c_candidate_only_right": self.test.c,
                "statistic": self.test.statistic,
                "p_value": self.test.p_value,
            },
            "verdict": self.verdict,
        }


def shadow_comparison(candidate: str, c: Counts, *, min_cell: int) -> ShadowComparison:
    """Candidate vs production on the same audited inputs, with McNemar's paired test."""
    pairs = c.get("shadow_pairs", 0.0)
    both = c.get("shadow_both_right", 0.0)
    prod_only, cand_only = c.get("shadow_prod_only", 0.0), c.get("shadow_cand_only", 0.0)
    return ShadowComparison(
        candidate,
        int(pairs),
        rate(both + cand_only, pairs, min_cell),
        rate(both + prod_only, pairs, min_cell),
        rate(c.get("shadow_agree", 0.0), pairs, min_cell),
        mcnemar(int(prod_only), int(cand_only)),
    )
