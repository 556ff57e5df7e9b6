"""Dashboard pages. One URL renders the full page or, for htmx, just the results fragment."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Response, g, make_response, redirect, render_template, request, url_for
from flask_login import login_required
from sqlmodel import Session

from corrigenda.metrics import FilterError, Filters, Report, build_report
from corrigenda.metrics.alerts import acknowledge
from corrigenda.metrics.query import model_versions, segment_options
from corrigenda.metrics.report import confused_examples, recent_alerts
from corrigenda.models import MetricAlert

from ..auth.guards import project_role
from ..auth.session import me
from ..extensions import db_transaction, read_session
from . import bp
from .access import visible_projects
from .charts import Point, heatmap, line_chart

CHARTED = (
    ("override_rate", "Override rate"),
    ("audited_accuracy", "Audited accuracy (unbiased audit sample)"),
    ("coverage", "Coverage (confident ÷ shown)"),
)


@bp.get("/")
@login_required
def index() -> Any:
    with read_session() as session:
        projects = visible_projects(session, me())
    return render_template("dashboard/index.html", projects=projects)


@bp.get("/<slug>")
@project_role("viewer")
def project_page(slug: str) -> Any:
    with read_session() as session:
        project = g.project
        try:
            filters, error = Filters.parse(request.args.to_dict()), None
        except FilterError as exc:
            filters, error = Filters(), exc
        context = _context(session, build_report(session, project, filters), error)
    template = (
        "dashboard/_results.html" if request.headers.get("HX-Request") else "dashboard/project.html"
    )
    response = make_response(render_template(template, **context), 422 if error else 200)
    response.headers["Vary"] = "HX-Request"
    return response


def _context(session: Session, report: Report, error: FilterError | None) -> dict[str, Any]:
    project_id = report.project.id
    top = report.top_confused()
    return {
        "project": report.project,
        "report": report,
        "figures": report.overall.as_dict(),
        "filters": report.filters,
        "filter_error": error,
        "versions": model_versions(session, project_id),  # type: ignore[arg-type]
        "segments": segment_options(session, project_id),  # type: ignore[arg-type]
        "charts": _charts(report),
        "cost_chart": _cost_chart(report),
        "heatmap": heatmap(report.confusion),
        "top_confused": [
            (o, t, n, confused_examples(session, project_id, o, t))  # type: ignore[arg-type]
            for o, t, n in top
        ],
        "alerts": recent_alerts(session, project_id),  # type: ignore[arg-type]
        "today": date.today(),
    }


def _charts(report: Report) -> list[Any]:
    charts = []
    for name, title in CHARTED:
        series = {
            version: [_point(period, figures.rates[name]) for period, figures in periods.items()]
            for version, periods in report.series.items()
        }
        charts.append(line_chart(title, series, top=1.0))
    return charts


def _point(period: date, rate: Any) -> Point:
    if rate.suppressed:
        return Point(period, None)
    return Point(period, rate.estimate, rate.low, rate.high)


def _cost_chart(report: Report) -> Any:
    series = {
        version: [Point(period, f.error_cost_per_1000) for period, f in periods.items()]
        for version, periods in report.series.items()
    }
    return line_chart("Error cost per 1,000 predictions (audit sample)", series, percent=False)


@bp.post("/<slug>/alerts/<int:alert_id>/acknowledge")
@project_role("viewer")
def acknowledge_alert(slug: str, alert_id: int) -> Any:
    """Any member may acknowledge: it records who saw it, it changes no data."""
    with db_transaction() as session:
        project = g.project
        alert = session.get(MetricAlert, alert_id)
        if alert is None or alert.project_id != project.id:
            return Response("no such alert", status=404)
        acknowledge(session, alert=alert, user=me())
        html = render_template("dashboard/_alert.html", alert=alert, project=project)
    if not request.headers.get("HX-Request"):
        return redirect(url_for("dashboard.project_page", slug=slug))
    return Response(html, mimetype="text/html")
