"""``GET /api/v1/projects/<slug>/examples?since=<cursor>&limit=``: the incremental stream.

JSONL, one example per line in position order, each with its ``cursor``. Changed examples
reappear with a new ``revision``; deleted ones appear once as ``{"deleted": true}``
tombstones. Resume with ``since`` = the ``Corrigenda-Next-Cursor`` header (or the last
line's cursor); a page never skips or repeats an unchanged example (see
``corrigenda/examples.py`` for why this holds while writers commit concurrently).
"""

from __future__ import annotations

from flask import Response, g, request

from corrigenda import erasure
from corrigenda.datasets import Record, Splitter
from corrigenda.examples import Cursor, read_stream
from corrigenda.models import Project

from ..extensions import db_transaction, get_engine
from .auth import require_key
from .blueprint import bp
from .datasets import _project_slug
from .openapi import Operation, document
from .problems import ApiProblem, json_response

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
CURSOR_HEADER = "Corrigenda-Next-Cursor"


@bp.get("/projects/<slug>/examples")
@require_key("secret")
def stream_examples(slug: str) -> Response:
    _project_slug(slug)
    since, limit = _cursor_arg(), _limit_arg()
    with get_engine().connect() as connection:
        rows = read_stream(connection, project_id=g.project.id, after=since, limit=limit)
    splitter = Splitter(g.project.id, (g.project.policy or {}).get("split_ratios"))
    lines, cursor = [], since
    for row in rows:
        record = Record.from_row(row)
        cursor = record.cursor
        if record.deleted:
            lines.append(record.tombstone())
        else:
            record.split = splitter(record.cluster_id, record.id)
            lines.append(record.jsonl(cursor=str(cursor)))
    headers = {CURSOR_HEADER: str(cursor), "Corrigenda-Has-More": str(len(rows) == limit).lower()}
    return Response(b"".join(lines), mimetype="application/x-ndjson", headers=headers)


def _cursor_arg() -> Cursor:
    try:
        return Cursor.parse(request.args.get("since"))
    except ValueError as exc:
        raise _bad("/since", "since must be a cursor from a previous page, or 0") from exc


def _limit_arg() -> int:
    raw = request.args.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise _bad("/limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _bad(path: str, message: str) -> ApiProblem:
    return ApiProblem(
        422, "Invalid query", message, [{"path": path, "message": message}], type="validation"
    )


@bp.delete("/projects/<slug>/end-users/<path:end_user>")
@require_key("secret")
def erase_end_user(slug: str, end_user: str) -> Response:
    """Erase everything one end user said (by the pseudonymous id the product sent)."""
    _project_slug(slug)
    with db_transaction() as session:
        project = session.get(Project, g.project.id)
        result = erasure.erase_end_user(
            session, project=project, end_user=end_user, actor=f"api_key:{g.api_key.prefix}"
        )
    return json_response(result.as_dict())


document(
    Operation(
        "/projects/<slug>/examples",
        "get",
        "Examples changed after a cursor, as JSONL (keyset pages; tombstones for deletions)",
        ("secret",),
        responses={200: ("application/x-ndjson; header Corrigenda-Next-Cursor", None)},
        parameters=[
            {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "since", "in": "query", "schema": {"type": "string", "default": "0"}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": MAX_LIMIT}},
        ],
    )
)
document(
    Operation(
        "/projects/<slug>/end-users/<end_user>",
        "delete",
        "Erase an end user's events and opinions; re-settle; supersede affected versions",
        ("secret",),
        responses={200: ("what was erased", None)},
        parameters=[
            {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "end_user", "in": "path", "required": True, "schema": {"type": "string"}},
        ],
        errors=(401, 403, 404),
    )
)
