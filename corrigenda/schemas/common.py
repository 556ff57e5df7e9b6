"""Shared API models: the RFC 9457 problem document and its field errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class FieldError(BaseModel):
    path: str  # a JSON Pointer into the request body, e.g. "/events/3/value"
    message: str


class Problem(BaseModel):
    """An error answer (``application/problem+json``, RFC 9457)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None


def pointer(*parts: str | int) -> str:
    """A JSON Pointer (RFC 6901) for ``parts``: ``pointer("events", 3, "value")``."""
    escaped = (str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    return "/" + "/".join(escaped) if parts else ""


def field_errors(exc: ValidationError, data: Any, *prefix: str | int) -> list[dict[str, str]]:
    """Pydantic errors on ``data`` as ``[{"path": "/events/3/value", "message": ...}]``.

    Errors on the branches of a union (``/value/str``, ``/value/list[...]``) are merged into
    one error on the field itself, with the alternatives joined by "or".
    """
    merged: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        path = pointer(*prefix, *_real_location(data, error))
        messages = merged.setdefault(path, [])
        if (message := _message(error)) not in messages:
            messages.append(message)
    return [{"path": path, "message": " or ".join(msgs)} for path, msgs in merged.items()]


def _real_location(data: Any, error: Any) -> list[str | int]:
    """The part of an error's location that exists in the input (drops union branch tags)."""
    location: list[str | int] = []
    current = data
    parts = list(error["loc"])
    for position, part in enumerate(parts):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        elif isinstance(current, list) and isinstance(part, str):
            continue  # a union branch tag such as "list[constrained-str]"
        elif position == len(parts) - 1 and error["type"] in ("missing", "extra_forbidden"):
            pass  # a required field that is absent: its path is still the useful one
        else:
            break
        location.append(part)
    return location


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field; remove it (see the API reference for allowed fields)"
    if error["type"] == "missing":
        return "this field is required"
    return str(error["msg"])
