"""Metrics: definitions (docs/metrics.md), incremental rollups, requirement, fairness,
shadow comparison and degradation alerts. Core only: no Flask, no Celery."""

from .query import FilterError, Filters
from .report import Report, build_report
from .stats import Interval, mcnemar, wilson_interval
from .updater import drain, rebuild_all, rebuild_project, update_round

__all__ = [
    "FilterError",
    "Filters",
    "Interval",
    "Report",
    "build_report",
    "drain",
    "mcnemar",
    "rebuild_all",
    "rebuild_project",
    "update_round",
    "wilson_interval",
]
