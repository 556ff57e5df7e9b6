"""The OpenAPI 3.1 document at ``/api/v1/openapi.json`` and a readable page at ``/api/v1/docs``.

Schemas are generated from the same pydantic models that validate requests. Each view
module describes its operations with ``document(...)`` next to the view; nothing is kept
by hand in a second copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Response, render_template
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from corrigenda.schemas.common import Problem

from .blueprint import bp
from .problems import json_response

REF_TEMPLATE = "#/components/schemas/{model}"
SECURITY_SCHEMES = {
    "secretKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "a project's secret key (sk_…): server-side only",
    },
    "publishableKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "a project's publishable key (pk_…): browsers, from allowed origins",
    },
    "publishableKeyQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "key",
        "description": "a publishable key in the URL (for navigator.sendBeacon)",
    },
}
COMMON_ERRORS = {
    401: "missing, unknown or revoked key",
    403: "key of the wrong kind, or origin not allowed",
    413: "body larger than the limit",
    415: "body is not JSON",
    422: "invalid fields (see errors[].path)",
    429: "rate limited; wait Retry-After seconds",
}


@dataclass
class Operation:
    path: str
    method: str
    summary: str
    keys: tuple[str, ...]
    request: list[type[BaseModel]] = field(default_factory=list)
    responses: dict[int, tuple[str, type[BaseModel] | None]] = field(default_factory=dict)
    parameters: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""
    errors: tuple[int, ...] = (401, 403, 422, 429)


OPERATIONS: list[Operation] = []


def document(operation: Operation) -> None:
    """Add an operation to the API description (call at import, beside the view)."""
    OPERATIONS.append(operation)


def openapi_document() -> dict[str, Any]:
    models = _models()
    keyed = [(m, "validation") for m in models]
    _, schemas = models_json_schema(keyed, ref_template=REF_TEMPLATE)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Corrigenda API",
            "version": "1",
            "description": "Log predictions, collect feedback, pull datasets. Errors are "
            "application/problem+json (RFC 9457) with a JSON Pointer per offending field.",
        },
        "servers": [{"url": "/api/v1"}],
        "paths": _paths(),
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _models() -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {"Problem": Problem}
    for op in OPERATIONS:
        for model in [*op.request, *(m for _, m in op.responses.values() if m)]:
            seen.setdefault(model.__name__, model)
    return list(seen.values())


def _paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        paths.setdefault(_openapi_path(op.path), {})[op.method] = _operation(op)
    return paths


def _openapi_path(path: str) -> str:
    return path.replace("<", "{").replace(">", "}")


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _operation(op: Operation) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{op.method}_{op.path.strip('/').replace('/', '_')}",
        "security": [{_scheme(kind): []} for kind in op.keys],
        "responses": _responses(op),
    }
    if op.description:
        spec["description"] = op.description
    if op.parameters:
        spec["parameters"] = op.parameters
    if op.request:
        schemas = [_ref(m) for m in op.request]
        schema = schemas[0] if len(schemas) == 1 else {"oneOf": schemas}
        spec["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    return spec


def _scheme(kind: str) -> str:
    return {"secret": "secretKey", "publishable": "publishableKey"}.get(kind, kind)


def _responses(op: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, (description, model) in op.responses.items():
        entry: dict[str, Any] = {"description": description}
        if model is not None:
            entry["content"] = {"application/json": {"schema": _ref(model)}}
        responses[str(status)] = entry
    problem = {"application/problem+json": {"schema": _ref(Problem)}}
    for status in op.errors:
        responses.setdefault(str(status), {"description": COMMON_ERRORS.get(status, "error")})
        responses[str(status)]["content"] = problem
    return responses


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return json_response(openapi_document())


@bp.get("/docs")
def api_docs() -> str:
    document_ = openapi_document()
    return render_template("api/docs.html", doc=document_, pretty=_pretty)


def _pretty(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, ensure_ascii=False)
