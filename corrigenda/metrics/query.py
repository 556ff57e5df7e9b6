"""Reading the rollups: filters, summed counters and the figures derived from them.

Everything here sums ``metric_rollup`` rows (a few per version and day); nothing reads raw
events. A figure over fewer than the project's ``min_cell_size`` items is *suppressed*: it
is still returned with its interval, but marked so the dashboard shows "not enough data".
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlmodel import Session, col, select

from ..models import MetricRollup, Project
from ..models.metrics import ROLLUP_COUNTERS
from .definitions import ttd_bucket_upper
from .stats import wilson_interval

Counts = dict[str, float]
GRANULARITIES = ("day", "week")


class FilterError(ValueError):
    """A filter value that cannot be used; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Filters:
    start: date | None = None
    end: date | None = None
    model_version: str | None = None
    segment: tuple[str, str] | None = None
    granularity: str = "day"

    @classmethod
    def parse(cls, args: dict[str, str]) -> Filters:
        """From query parameters ``from``, ``to``, ``model_version``, ``segment=key:value``,
        ``granularity``; raises FilterError naming the bad one."""
        segment = None
        if args.get("segment"):
            key, sep, value = args["segment"].partition(":")
            if not sep or not key:
                raise FilterError("segment", "segment must look like key:value, e.g. locale:de")
            segment = (key, value)
        granularity = args.get("granularity") or "day"
        if granularity not in GRANULARITIES:
            raise FilterError("granularity", "granularity must be day or week")
        start, end = _date(args, "from"), _date(args, "to")
        if start and end and start > end:
            raise FilterError("from", "from must not be after to")
        version = args.get("model_version") or None
        return cls(start, end, version, segment, granularity)

    def as_args(self) -> dict[str, str]:
        out = {"granularity": self.granularity}
        if self.start:
            out["from"] = self.start.isoformat()
        if self.end:
            out["to"] = self.end.isoformat()
        if self.model_version:
            out["model_version"] = self.model_version
        if self.segment:
            out["segment"] = f"{self.segment[0]}:{self.segment[1]}"
        return out


def _date(args: dict[str, str], name: str) -> date | None:
    if not args.get(name):
        return None
    try:
        return date.fromisoformat(args[name])
    except ValueError:
        raise FilterError(name, f"{name} must be a date like 2025-01-31") from None


def rollup_rows(
    session: Session, project_id: int, filters: Filters, *, segment_rows: bool = False
) -> list[MetricRollup]:
    """Rows matching the filters: the chosen segment's rows (or all-traffic rows), or with
    ``segment_rows`` every segment-value row (for the segment table)."""
    query = select(MetricRollup).where(MetricRollup.project_id == project_id)
    if segment_rows:
        query = query.where(MetricRollup.seg_key != "")
    else:
        key, value = filters.segment or ("", "")
        query = query.where(MetricRollup.seg_key == key, MetricRollup.seg_value == value)
    if filters.start:
        query = query.where(col(MetricRollup.day) >= filters.start)
    if filters.end:
        query = query.where(col(MetricRollup.day) <= filters.end)
    if filters.model_version is not None:
        query = query.where(MetricRollup.model_version == filters.model_version)
    return list(session.exec(query))


def add_row(total: Counts, row: MetricRollup) -> None:
    for name in ROLLUP_COUNTERS:
        total[name] = total.get(name, 0.0) + (getattr(row, name) or 0.0)
    for bucket, count in (row.ttd_hist or {}).items():
        total[f"h:{bucket}"] = total.get(f"h:{bucket}", 0.0) + count
    for pair, count in (row.confusion or {}).items():
        total[f"c:{pair}"] = total.get(f"c:{pair}", 0.0) + count


def sum_rows(rows: list[MetricRollup]) -> Counts:
    total: Counts = {}
    for row in rows:
        add_row(total, row)
    return total


def period_of(day: date, granularity: str) -> date:
    return day - timedelta(days=day.weekday()) if granularity == "week" else day


def series_by_version(rows: list[MetricRollup], granularity: str) -> dict[str, dict[date, Counts]]:
    """Counters per model version and period (day, or week starting Monday)."""
    out: dict[str, dict[date, Counts]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        add_row(out[row.model_version][period_of(row.day, granularity)], row)
    return {v: dict(sorted(periods.items())) for v, periods in sorted(out.items())}


def by_segment(rows: list[MetricRollup]) -> dict[tuple[str, str], Counts]:
    out: dict[tuple[str, str], Counts] = defaultdict(dict)
    for row in rows:
        add_row(out[(row.seg_key, row.seg_value)], row)
    return dict(sorted(out.items()))


@dataclass
class Rate:
    """A proportion with its 95 % Wilson interval; ``suppressed`` below the minimum cell."""

    k: float
    n: float
    estimate: float | None
    low: float | None
    high: float | None
    suppressed: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "k": int(self.k),
            "n": int(self.n),
            "estimate": None if self.suppressed else self.estimate,
            "low": None if self.suppressed else self.low,
            "high": None if self.suppressed else self.high,
            "suppressed": self.suppressed,
        }


def rate(k: float, n: float, min_cell: int) -> Rate:
    interval = wilson_interval(int(round(k)), int(round(n)))
    if interval is None:
        return Rate(k, n, None, None, None, True)
    return Rate(k, n, interval.estimate, interval.low, interval.high, n < min_cell)


def ttd_quantile(counts: Counts, q: float) -> float | None:
    """The q-quantile of time to decision (ms), as the upper bound of its histogram bucket."""
    buckets = sorted((int(k[2:]), v) for k, v in counts.items() if k.startswith("h:") and v > 0)
    total = sum(v for _, v in buckets)
    if total <= 0:
        return None
    rank, seen = q * total, 0.0
    for bucket, count in buckets:
        seen += count
        if seen >= rank:
            return ttd_bucket_upper(bucket)
    return ttd_bucket_upper(buckets[-1][0])


@dataclass
class Figures:
    """Every headline figure for one cell (a filter, a period, a segment value)."""

    counts: Counts
    min_cell: int
    manual_seconds: float
    rates: dict[str, Rate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c, m = self.counts, self.min_cell
        shown = c.get("shown", 0.0)
        silent = shown - c.get("overridden", 0.0) - c.get("accepted", 0.0)
        self.rates = {
            "override_rate": rate(c.get("overridden", 0.0), shown, m),
            "acceptance_rate": rate(c.get("accepted", 0.0), shown, m),
            "silent_rate": rate(silent, shown, m),
            "coverage": rate(c.get("confident", 0.0), shown, m),
            "audited_accuracy": rate(c.get("audited_correct", 0.0), c.get("audited", 0.0), m),
            "reviewed_accuracy_biased": rate(
                c.get("settled_correct", 0.0), c.get("settled", 0.0), m
            ),
        }

    @property
    def error_cost_per_1000(self) -> float | None:
        audited = self.counts.get("audited", 0.0)
        if audited < self.min_cell:
            return None
        return self.counts.get("cost_sum", 0.0) / audited * 1000

    @property
    def time_saved_hours(self) -> float:
        c = self.counts
        kept = c.get("shown", 0.0) - c.get("overridden", 0.0)
        return kept * self.manual_seconds / 3600

    def as_dict(self) -> dict[str, Any]:
        c = self.counts
        return {
            "predictions": int(c.get("predictions", 0)),
            "shown": int(c.get("shown", 0)),
            "audited": int(c.get("audited", 0)),
            **{name: r.as_dict() for name, r in self.rates.items()},
            "error_cost_per_1000": self.error_cost_per_1000,
            "time_to_decision_ms": {
                "n": int(c.get("ttd_n", 0)),
                "median": ttd_quantile(c, 0.5),
                "p90": ttd_quantile(c, 0.9),
            },
            "time_saved_hours": self.time_saved_hours,
        }


def figures_for(project: Project, counts: Counts) -> Figures:
    policy = project.policy or {}
    return Figures(
        counts,
        int(policy.get("min_cell_size") or 20),
        float(policy.get("manual_handling_seconds") or 0.0),
    )


def confusion(counts: Counts) -> dict[tuple[str, str], int]:
    """(model output, settled label) → items, over all settled items."""
    out: dict[tuple[str, str], int] = {}
    for key, value in counts.items():
        if key.startswith("c:") and value > 0:
            output, _, label = key[2:].rpartition("|")
            out[(output, label)] = int(value)
    return out


def model_versions(session: Session, project_id: int) -> list[str]:
    query = (
        select(MetricRollup.model_version)
        .where(MetricRollup.project_id == project_id, MetricRollup.seg_key == "")
        .distinct()
    )
    return sorted(session.exec(query))


def segment_options(session: Session, project_id: int) -> list[tuple[str, str]]:
    query = (
        select(MetricRollup.seg_key, MetricRollup.seg_value)
        .where(MetricRollup.project_id == project_id, MetricRollup.seg_key != "")
        .distinct()
    )
    return sorted((k, v) for k, v in session.exec(query))
