"""Everything the dashboard and the metrics API show for one project and one filter."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlmodel import Session, col, select

from ..models import MetricAlert, MetricFact, MetricRollup, Prediction, Project
from .compare import Gap, ShadowComparison, fairness_gaps, shadow_comparison
from .query import (
    Counts,
    Figures,
    Filters,
    by_segment,
    confusion,
    figures_for,
    rollup_rows,
    series_by_version,
    sum_rows,
)
from .requirement import Requirement, RequirementError, Verdict, evaluate

SHADOW_COUNTERS = (
    "shadow_pairs",
    "shadow_agree",
    "shadow_both_right",
    "shadow_prod_only",
    "shadow_cand_only",
)
TOP_CONFUSED = 5
EXAMPLES_PER_PAIR = 3


@dataclass
class Report:
    project: Project
    filters: Filters
    overall: Figures
    series: dict[str, dict[date, Figures]]
    segments: dict[tuple[str, str], Figures]
    confusion: dict[tuple[str, str], int]
    gaps: list[Gap]
    shadow: list[ShadowComparison]
    requirement: Requirement | None
    verdict: Verdict | None
    requirement_error: str | None

    @property
    def min_cell(self) -> int:
        return self.overall.min_cell

    def top_confused(self, limit: int = TOP_CONFUSED) -> list[tuple[str, str, int]]:
        pairs = [(o, t, n) for (o, t), n in self.confusion.items() if o != t]
        return sorted(pairs, key=lambda item: (-item[2], item[0], item[1]))[:limit]

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project.slug,
            "filters": self.filters.as_args(),
            "min_cell_size": self.min_cell,
            "overall": self.overall.as_dict(),
            "series": {
                version: [{"period": d.isoformat(), **f.as_dict()} for d, f in periods.items()]
                for version, periods in self.series.items()
            },
            "segments": [
                {"key": k, "value": v, **f.as_dict()} for (k, v), f in self.segments.items()
            ],
            "confusion": [
                {"output": o, "label": t, "count": n}
                for (o, t), n in sorted(self.confusion.items())
            ],
            "fairness": [g.as_dict() for g in self.gaps],
            "shadow": [s.as_dict() for s in self.shadow],
            "requirement": self._requirement_dict(),
        }

    def _requirement_dict(self) -> dict[str, Any] | None:
        if self.requirement_error:
            return {"error": self.requirement_error}
        if self.requirement is None or self.verdict is None:
            return None
        return {"spec": self.requirement.describe(), **self.verdict.as_dict()}


def build_report(session: Session, project: Project, filters: Filters) -> Report:
    rows = rollup_rows(session, project.id, filters)  # type: ignore[arg-type]
    overall = figures_for(project, sum_rows(rows))
    series = {
        version: {d: figures_for(project, c) for d, c in periods.items()}
        for version, periods in series_by_version(rows, filters.granularity).items()
    }
    segment_counts = by_segment(rollup_rows(session, project.id, filters, segment_rows=True))  # type: ignore[arg-type]
    requirement, verdict, error = _requirement(session, project)
    alpha = float(((project.policy or {}).get("alerts") or {}).get("alpha", 0.05))
    return Report(
        project=project,
        filters=filters,
        overall=overall,
        series=series,
        segments={key: figures_for(project, c) for key, c in segment_counts.items()},
        confusion=confusion(overall.counts),
        gaps=fairness_gaps(segment_counts, min_cell=overall.min_cell, alpha=alpha),
        shadow=_shadow(session, project, filters, overall.min_cell),
        requirement=requirement,
        verdict=verdict,
        requirement_error=error,
    )


def _requirement(
    session: Session, project: Project
) -> tuple[Requirement | None, Verdict | None, str | None]:
    spec = (project.policy or {}).get("requirement")
    if not spec:
        return None, None, None
    try:
        requirement = Requirement.from_policy(spec)
    except (RequirementError, ValueError) as exc:
        return None, None, f"requirement in the project policy is invalid: {exc}"
    counts = sum_rows(rollup_rows(session, project.id, requirement.population))  # type: ignore[arg-type]
    k_name, n_name = {
        "audited_accuracy": ("audited_correct", "audited"),
        "coverage": ("confident", "shown"),
        "override_rate": ("overridden", "shown"),
    }[requirement.metric]
    return requirement, evaluate(requirement, counts.get(k_name, 0), counts.get(n_name, 0)), None


def _shadow(
    session: Session, project: Project, filters: Filters, min_cell: int
) -> list[ShadowComparison]:
    # Candidates are other model versions, so the version filter does not apply here.
    unversioned = Filters(filters.start, filters.end, None, filters.segment, filters.granularity)
    per_version: dict[str, Counts] = defaultdict(dict)
    for row in rollup_rows(session, project.id, unversioned):  # type: ignore[arg-type]
        if row.shadow_pairs:
            _add_shadow(per_version[row.model_version], row)
    return [shadow_comparison(v, c, min_cell=min_cell) for v, c in sorted(per_version.items())]


def _add_shadow(total: Counts, row: MetricRollup) -> None:
    for name in SHADOW_COUNTERS:
        total[name] = total.get(name, 0.0) + getattr(row, name)


def confused_examples(
    session: Session, project_id: int, output: str, label: str, limit: int = EXAMPLES_PER_PAIR
) -> list[dict[str, Any]]:
    """A few inputs the model labeled ``output`` whose settled label is ``label``."""
    query = (
        select(Prediction.client_id, Prediction.input)
        .join(MetricFact, col(MetricFact.prediction_id) == Prediction.id)
        .where(
            MetricFact.project_id == project_id,
            MetricFact.output_key == output,
            MetricFact.label_key == label,
        )
        .limit(limit)
    )
    return [{"client_id": cid, "input": data} for cid, data in session.exec(query)]


def recent_alerts(session: Session, project_id: int, limit: int = 20) -> list[MetricAlert]:
    query = (
        select(MetricAlert)
        .where(MetricAlert.project_id == project_id)
        .order_by(col(MetricAlert.acknowledged_at).is_not(None), col(MetricAlert.id).desc())
        .limit(limit)
    )
    return list(session.exec(query))
