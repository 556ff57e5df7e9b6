"""Operational endpoints for monitoring systems: Prometheus ``/metrics``.

Figures are read from the database at scrape time (every web and worker process sees the
same numbers), with cheap, index-backed queries. Restrict ``/metrics`` to your monitoring
network at the proxy: it names projects by slug.
"""

from __future__ import annotations

from flask import Blueprint, Response

from .collector import render_metrics

bp = Blueprint("monitoring", __name__)


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    body, content_type = render_metrics()
    return Response(body, content_type=content_type)
