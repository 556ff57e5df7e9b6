"""Small, exact statistics used by the metrics: Wilson interval, binomial tails, McNemar,
two-proportion z test. Pure Python (``math`` only) so the core needs no SciPy."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def wilson_interval(successes: int, n: int, z: float = Z95) -> Interval | None:
    """The Wilson score interval for ``successes`` out of ``n``; None when ``n`` is 0."""
    if n <= 0:
        return None
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def _log_binom_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    log_choose = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return log_choose + k * math.log(p) + (n - k) * math.log1p(-p)


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p), summed exactly in log space."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    terms = [_log_binom_pmf(i, n, p) for i in range(k, n + 1)]
    top = max(terms)
    if top == -math.inf:
        return 0.0
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X ≤ k) for X ~ Binomial(n, p)."""
    return 1.0 - binom_sf(k + 1, n, p) if k < n else 1.0


@dataclass(frozen=True)
class McNemarResult:
    b: int  # production right, candidate wrong
    c: int  # candidate right, production wrong
    statistic: float  # continuity-corrected chi-square (1 df)
    p_value: float  # exact two-sided binomial p when b + c < 25, else chi-square


def chi2_1df_sf(statistic: float) -> float:
    """Upper tail of the chi-square distribution with one degree of freedom."""
    return math.erfc(math.sqrt(max(statistic, 0.0) / 2))


def mcnemar(b: int, c: int) -> McNemarResult:
    """McNemar's test on the discordant pairs of a paired 2×2 table."""
    n = b + c
    if n == 0:
        return McNemarResult(b, c, 0.0, 1.0)
    statistic = (abs(b - c) - 1) ** 2 / n
    if n < 25:
        p_value = min(1.0, 2 * binom_cdf(min(b, c), n, 0.5))
    else:
        p_value = chi2_1df_sf(statistic)
    return McNemarResult(b, c, statistic, p_value)


def normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z test."""
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    return min(1.0, 2 * normal_sf(abs(k1 / n1 - k2 / n2) / se))


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_greater(k: int, n: int, baseline_k: int, baseline_n: int) -> float:
    """One-sided p of Fisher's exact test that ``k/n`` exceeds ``baseline_k/baseline_n``:
    P(X ≥ k) for X hypergeometric (draw n from n + baseline_n holding k + baseline_k).
    Unlike a binomial test against the baseline rate it accounts for the baseline's own
    sampling noise, so it keeps its level when the baseline is short."""
    total, successes = n + baseline_n, k + baseline_k
    top = min(n, successes)
    if k > top:
        return 0.0
    denominator = _log_choose(total, n)
    terms = [
        _log_choose(successes, i) + _log_choose(total - successes, n - i) - denominator
        for i in range(max(k, n - (total - successes)), top + 1)
    ]
    if not terms:
        return 0.0
    peak = max(terms)
    return min(1.0, math.exp(peak) * sum(math.exp(t - peak) for t in terms))
