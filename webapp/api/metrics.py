"""``GET /api/v1/projects/<slug>/metrics``: the dashboard's figures as JSON (secret key)."""

from __future__ import annotations

from flask import Response, g, request

from corrigenda.metrics import FilterError, Filters, build_report

from ..extensions import read_session
from .auth import require_key
from .blueprint import bp
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
