"""RFC 9457 problem documents (``application/problem+json``) for every API error.

Raise ``ApiProblem`` anywhere in a view, or return ``problem(...)``. Field errors carry a
JSON Pointer to the offending value: ``{"path": "/events/3/value", "message": "..."}``.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Response, request
from werkzeug.exceptions import HTTPException

from .blueprint import bp

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://corrigenda.dev/problems/"
API_PREFIX = "/api/"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson (the hot paths answer many of these)."""
    body = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    return Response(body, status=status, headers=headers, mimetype="application/json")


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    errors: list[dict[str, str]] | None = None,
    *,
    type: str | None = None,  # noqa: A002 - the RFC 9457 member name
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A problem+json response. ``type`` is a short slug (``"validation"``) or a full URI."""
    doc: dict[str, Any] = {"type": _type_uri(type or _default_type(status)), "title": title}
    doc["status"] = status
    if detail:
        doc["detail"] = detail
    if errors:
        doc["errors"] = errors
    doc.update(extra)
    response = json_response(doc, status, headers)
    response.mimetype = "application/problem+json"
    return response


class ApiProblem(Exception):
    """Raise to answer with a problem document; the blueprint's handler renders it."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        errors: list[dict[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.kwargs = kwargs

    def response(self) -> Response:
        return problem(self.status, self.title, self.detail, self.errors, **self.kwargs)


def _type_uri(slug: str) -> str:
    return slug if ":" in slug else PROBLEM_TYPE_BASE + slug


def _default_type(status: int) -> str:
    return {
        400: "bad-request",
        401: "unauthorized",
        403: "forbidden",
        404: "not-found",
        405: "method-not-allowed",
        409: "conflict",
        413: "payload-too-large",
        415: "unsupported-media-type",
        422: "validation",
        429: "rate-limited",
    }.get(status, "server-error" if status >= 500 else "about:blank")


@bp.errorhandler(ApiProblem)
def _api_problem(exc: ApiProblem) -> Response:
    return exc.response()


@bp.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response | HTTPException:
    # Registered app-wide because routing errors (404/405) never reach a blueprint handler;
    # outside /api/ the exception renders as Flask would.
    if not request.path.startswith(API_PREFIX):
        return exc
    status = exc.code or 500
    response = problem(status, exc.name, _http_detail(exc))
    for name, value in (exc.get_response().headers or {}).items():
        if name in ("Retry-After", "Allow", "WWW-Authenticate"):
            response.headers[name] = value
    return response


def _http_detail(exc: HTTPException) -> str | None:
    details = {
        413: "the request body is too large; send fewer items per request",
        405: f"{request.method} is not allowed on {request.path}",
        404: f"no API endpoint at {request.path}; see /api/v1/docs",
        429: "rate limit exceeded; retry after the number of seconds in Retry-After",
    }
    return details.get(exc.code or 0, exc.description)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response | HTTPException:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    log.exception("unhandled error in %s %s", request.method, request.path)
    return problem(500, "Internal Server Error", "the server failed; the error was logged")
