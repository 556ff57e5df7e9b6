"""``GET /api/v1/projects/<slug>/metrics``: the dashboard's figures as JSON (secret key)."""

from __future__ import annotations

from typing import Any

from flask import Response, g, request
from pydantic import BaseModel, Field

from corrigenda.metrics import FilterError, Filters, build_report

from ..extensions import read_session
from .auth import require_key
from .blueprint import bp
from .openapi import Operation, document
from .problems import ApiProblem, json_response


@bp.get("/projects/<slug>/metrics")
@require_key("secret")
def project_metrics(slug: str) -> Response:
    """Figures for the filters ``from``, ``to``, ``model_version``, ``segment=key:value``,
    ``granularity=day|week``; read from the rollups only."""
    if slug != g.project.slug:
        raise ApiProblem(404, "Project not found", f"this key has no project {slug!r}")
    try:
        filters = Filters.parse(request.args.to_dict())
    except FilterError as exc:
        path = f"/{exc.field}"
        raise ApiProblem(
            422, "Invalid query", str(exc), [{"path": path, "message": str(exc)}], type="validation"
        ) from exc
    with read_session() as session:
        report = build_report(session, g.project, filters)
        return json_response(report.as_dict())


class MetricsReport(BaseModel):
    """The figures of docs/metrics.md for the filters given. Every figure cell carries
    ``n``, ``k``, ``estimate`` and its 95 % Wilson ``low``/``high``, or ``"suppressed": true``
    and no estimate when it has fewer than ``min_cell_size`` items."""

    project: str = Field(description="the project's slug")
    filters: dict[str, str] = Field(description="the filters applied, normalised")
    min_cell_size: int = Field(description="cells with fewer items are suppressed")
    overall: dict[str, Any] = Field(
        description="shown, override/acceptance/silent rate, coverage, audited accuracy, "
        "error cost per 1,000, time to decision, time saved"
    )
    series: dict[str, list[dict[str, Any]]] = Field(
        description="per model version: one entry per period (day or week) with its figures"
    )
    segments: list[dict[str, Any]] = Field(description="per segment key and value")
    confusion: list[dict[str, Any]] = Field(description="model output × settled label counts")
    fairness: list[dict[str, Any]] = Field(description="best vs worst segment value gaps")
    shadow: list[dict[str, Any]] = Field(description="candidate vs production on audited items")
    requirement: dict[str, Any] | None = Field(
        description="pass / fail / not yet known, or null without a requirement"
    )


def _query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", **schema},
    }


document(
    Operation(
        "/projects/<slug>/metrics",
        "get",
        "Metrics for a date range, model version and segment (read from the rollups)",
        ("secret",),
        responses={200: ("the report", MetricsReport)},
        parameters=[
            {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}},
            _query("from", "first day (UTC), YYYY-MM-DD", format="date"),
            _query("to", "last day (UTC), YYYY-MM-DD, inclusive", format="date"),
            _query("model_version", "one model version"),
            _query("segment", "one segment value as key:value, e.g. locale:de"),
            _query("granularity", "series period", enum=["day", "week"]),
        ],
        errors=(401, 403, 404, 422),
    )
)
