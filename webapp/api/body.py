"""Reading request bodies: strict JSON, with exact error positions.

Bodies are parsed with orjson (fast). When orjson refuses a body that the standard library
accepts — NaN, Infinity, numbers beyond double range, lone UTF-16 surrogates — we re-parse
it with the standard library so the validators can name the offending field instead of
rejecting a whole batch as "malformed".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson
from flask import request

from .problems import ApiProblem

JSON_TYPES = ("application/json",)


@dataclass(frozen=True, slots=True)
class Body:
    data: Any
    check_text: bool  # strings may hold NUL or lone surrogates: walk them before storing


def json_body(*, allow_text_plain: bool = False) -> Body:
    """The parsed JSON body, or a 415 / 400 / 413 problem."""
    mimetype = request.mimetype
    if mimetype not in JSON_TYPES and not (allow_text_plain and mimetype == "text/plain"):
        raise ApiProblem(
            415,
            "Unsupported Media Type",
            f"send JSON with 'Content-Type: application/json' (got {mimetype or 'none'!r})",
        )
    raw = request.get_data(cache=False)
    if not raw.strip():
        raise ApiProblem(400, "Empty body", "the request body must be a JSON document")
    try:
        return Body(orjson.loads(raw), b"\\u0000" in raw)
    except orjson.JSONDecodeError:
        return Body(_lenient_parse(raw), True)


def _lenient_parse(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiProblem(
            400, "Malformed JSON", f"the body is not valid UTF-8 (byte {exc.start})"
        ) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiProblem(
            400,
            "Malformed JSON",
            f"{exc.msg} at line {exc.lineno}, column {exc.colno} (character {exc.pos})",
        ) from exc
