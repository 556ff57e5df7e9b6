"""Known values for the statistics, the requirement verdicts and the fairness test."""

from __future__ import annotations

import random

import pytest

from corrigenda.metrics.alerts import rise_test
from corrigenda.metrics.compare import fairness_gaps
from corrigenda.metrics.query import Filters
from corrigenda.metrics.requirement import Requirement, evaluate
from corrigenda.metrics.stats import binom_sf, fisher_greater, mcnemar, wilson_interval


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.27753),
        (10, 10, 0.72247, 1.0),
        (1, 3, 0.06149, 0.79234),
        (88, 100, 0.80188, 0.93001),
    ],
)
def test_wilson_known_values(k: int, n: int, low: float, high: float) -> None:
    interval = wilson_interval(k, n)
    assert interval is not None
    assert interval.low == pytest.approx(low, abs=5e-5)
    assert interval.high == pytest.approx(high, abs=5e-5)


def test_wilson_of_nothing_is_none() -> None:
    assert wilson_interval(0, 0) is None


def test_mcnemar_exact_on_a_small_table() -> None:
    # b = 1, c = 9: two-sided exact p = 2 × P(X ≤ 1 | 10, ½) = 2 × 11 / 1024.
    assert mcnemar(1, 9).p_value == pytest.approx(22 / 1024)


def test_mcnemar_chi_square_on_a_large_table() -> None:
    # b = 121, c = 35: (|121 − 35| − 1)² / 156 = 46.314…, p ≈ 1.0e-11.
    result = mcnemar(121, 35)
    assert result.statistic == pytest.approx(7225 / 156)
    assert result.p_value == pytest.approx(1.0e-11, rel=0.1)


def test_fisher_one_sided_known_value() -> None:
    # Day 3/3 vs baseline 0/3: P = C(3,3)C(3,0)/C(6,3) = 1/20.
    assert fisher_greater(3, 3, 0, 3) == pytest.approx(0.05)
    assert fisher_greater(0, 3, 0, 3) == pytest.approx(1.0)


def test_binomial_tail() -> None:
    assert binom_sf(8, 10, 0.5) == pytest.approx(56 / 1024)
    assert binom_sf(0, 10, 0.3) == 1.0 and binom_sf(11, 10, 0.3) == 0.0


def requirement(min_n: int = 100, metric: str = "audited_accuracy") -> Requirement:
    return Requirement(metric, 0.88, min_n, Filters())


def test_requirement_states_at_the_boundary() -> None:
    # 500 audited, 88 %: interval straddles 0.88 → not yet known, never settles at p = 0.88.
    straddle = evaluate(requirement(500), 440, 500)
    assert straddle.status == "not_yet_known" and straddle.more_items_needed is None
    # 940/1000: Wilson low 0.9240 ≥ 0.88 → pass.
    assert evaluate(requirement(500), 940, 1000).status == "pass"
    # Same rate but fewer than min_n items → not yet known, needs exactly the remainder.
    early = evaluate(requirement(500), 94, 100)
    assert early.status == "not_yet_known" and early.more_items_needed == 400
    # 80/100: Wilson high 0.8666 < 0.88 → fail, even below min_n.
    assert evaluate(requirement(500), 80, 100).status == "fail"
    assert evaluate(requirement(500), 0, 0).status == "not_yet_known"


def test_more_items_needed_is_the_smallest_that_settles() -> None:
    verdict = evaluate(requirement(50), 92, 100)  # 0.92 observed, interval straddles 0.88
    assert verdict.status == "not_yet_known"
    n = 100 + verdict.more_items_needed  # type: ignore[operator]
    settles = wilson_interval(round(0.92 * n), n)
    before = wilson_interval(round(0.92 * (n - 1)), n - 1)
    assert settles is not None and settles.low >= 0.88
    assert before is not None and before.low < 0.88


def test_override_rate_requirement_points_down() -> None:
    req = Requirement("override_rate", 0.10, 100, Filters())
    assert evaluate(req, 20, 1000).status == "pass"
    assert evaluate(req, 300, 1000).status == "fail"


def test_fairness_flags_significant_gaps_only() -> None:
    def cell(k: int, n: int) -> dict[str, float]:
        return {"audited_correct": k, "audited": n, "overridden": 0, "shown": 0}

    different = {("locale", "de"): cell(90, 100), ("locale", "fr"): cell(60, 100)}
    (gap,) = fairness_gaps(different, min_cell=20)
    assert gap.significant and gap.worst[0] == "fr" and gap.gap == pytest.approx(0.3)
    close = {("locale", "de"): cell(90, 100), ("locale", "fr"): cell(86, 100)}
    assert not fairness_gaps(close, min_cell=20)[0].significant
    tiny = {("locale", "de"): cell(9, 10), ("locale", "fr"): cell(1, 10)}
    assert fairness_gaps(tiny, min_cell=20) == []  # cells under the minimum are not judged


def simulate_days(rng: random.Random, days: int, rate: float, shift_from: int | None) -> list:
    """Daily shown/overridden counts; from ``shift_from`` on the rate rises by 5 points."""
    out = []
    for day in range(days):
        p = rate + (0.05 if shift_from is not None and day >= shift_from else 0.0)
        n = 400
        out.append((sum(rng.random() < p for _ in range(n)), n))
    return out


def alarms(series: list, baseline_days: int = 14, alpha: float = 0.05) -> list[int]:
    fired = []
    for day in range(baseline_days, len(series)):
        window = series[day - baseline_days : day]
        test = rise_test("v1", *series[day], sum(k for k, _ in window), sum(n for _, n in window))
        if test.p_value < alpha:
            fired.append(day)
    return fired


def test_drift_alert_fires_on_an_injected_shift() -> None:
    series = simulate_days(random.Random(7), 30, 0.10, shift_from=20)
    assert 20 in alarms(series)


def test_false_alarm_rate_on_stable_traffic() -> None:
    rng = random.Random(11)
    days = 0
    fired = 0
    for _ in range(40):
        series = simulate_days(rng, 60, 0.10, shift_from=None)
        days += len(series) - 14
        fired += len(alarms(series))
    rate = fired / days
    print(f"false-alarm rate on stable traffic: {rate:.3%} of {days} days (alpha 5 %)")
    assert rate <= 0.05 + 2 * (0.05 * 0.95 / days) ** 0.5
