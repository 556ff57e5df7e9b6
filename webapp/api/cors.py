"""CORS for publishable-key endpoints; secret-key endpoints grant none.

A browser's preflight carries no key, so it is decided like this: if the URL has
``?key=pk_…`` the preflight is allowed only for that key's project's origins; otherwise it
is allowed for an origin listed by ANY project, and the real request is then refused
(403) unless its origin is one of the key's project's ``allowed_origins``. A
publishable-key request without an ``Origin`` header is refused.
"""

from __future__ import annotations

import time

from flask import Response, current_app, g, request
from sqlmodel import col, select

from corrigenda.db import transaction
from corrigenda.models import Project

from ..extensions import get_engine
from .blueprint import bp
from .problems import ApiProblem, problem

PREFLIGHT_MAX_AGE = "600"
ALLOWED_HEADERS = "Authorization, Content-Type"
ORIGINS_CACHE_SECONDS = 5.0


def normalize_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def check_origin(project: Project) -> None:
    """Refuse the request unless its Origin is one of the project's; remember it for CORS."""
    origin = request.headers.get("Origin") or _same_origin_page()
    if not origin:
        raise ApiProblem(
            403,
            "Origin required",
            "publishable keys are for browsers: the request must carry an Origin header "
            "(server-side code should use a secret key)",
        )
    allowed = {normalize_origin(o) for o in project.allowed_origins}
    if normalize_origin(origin) not in allowed:
        raise ApiProblem(
            403,
            "Origin not allowed",
            f"{origin} is not in this project's allowed origins; add it in the project settings",
        )
    g.cors_origin = origin


def _same_origin_page() -> str | None:
    """Browsers send no Origin on a same-origin GET but mark it ``Sec-Fetch-Site:
    same-origin`` (which page scripts cannot set): the page is one this server served,
    so its origin is ours, and it must still be on the project's list."""
    if request.headers.get("Sec-Fetch-Site") == "same-origin":
        return request.host_url.rstrip("/")
    return None


@bp.before_request
def _preflight() -> Response | None:
    if request.method != "OPTIONS":
        return None
    view = current_app.view_functions.get(request.endpoint or "")
    origin = request.headers.get("Origin", "")
    if view is None or not getattr(view, "publishable", False) or not origin:
        return problem(403, "CORS not allowed", "this endpoint is not for browsers")
    if not _preflight_allowed(normalize_origin(origin)):
        return problem(403, "Origin not allowed", f"{origin} is not an allowed origin")
    response = Response(status=204)
    response.headers.update(
        {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
            "Vary": "Origin",
        }
    )
    return response


def _preflight_allowed(origin: str) -> bool:
    from .auth import QUERY_PARAM, key_cache, key_digest

    plaintext = request.args.get(QUERY_PARAM)
    if plaintext:
        resolved = key_cache().get(key_digest(plaintext), plaintext)
        if resolved is None or resolved.key.kind != "publishable":
            return False
        return origin in {normalize_origin(o) for o in resolved.project.allowed_origins}
    return origin in _all_project_origins()


def _all_project_origins() -> set[str]:
    cached = current_app.extensions.get("corrigenda.all_origins")
    now = time.monotonic()
    if cached is not None and cached[0] > now:
        return cached[1]
    with transaction(get_engine()) as session:
        lists = session.exec(select(col(Project.allowed_origins))).all()
    origins = {normalize_origin(o) for origin_list in lists for o in origin_list or []}
    current_app.extensions["corrigenda.all_origins"] = (now + ORIGINS_CACHE_SECONDS, origins)
    return origins


@bp.after_request
def _cors_headers(response: Response) -> Response:
    origin = g.get("cors_origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        response.vary.add("Origin")
    return response
