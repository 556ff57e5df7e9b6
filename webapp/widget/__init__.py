"""The widget blueprint: serves the built correction widget (``widgets/`` → ``static/widget.js``).

``/widget.js`` is the stable URL: short cache plus an ETag, so pages pick up a new release
within minutes. ``/widget.<hash>.js`` never changes for a given hash and is cached for a
year (``immutable``). ``/widget.js.sri`` gives the Subresource Integrity value for the
current build. Every response may be loaded cross-origin by ``<script crossorigin>``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, abort, request

bp = Blueprint("widget", __name__)

WIDGET_PATH = Path(__file__).parent / "static" / "widget.js"
SHORT_CACHE = "public, max-age=300, must-revalidate"
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Build:
    """The built widget and the names derived from its content."""

    body: bytes
    digest: str  # first 16 hex chars of sha256: the content hash in the long-lived URL
    integrity: str  # sha384-… for <script integrity="…">

    @property
    def hashed_name(self) -> str:
        return f"widget.{self.digest}.js"


@cache
def _load(path: Path, mtime_ns: int) -> Build:
    body = path.read_bytes()
    sri = base64.b64encode(hashlib.sha384(body).digest()).decode()
    return Build(body, hashlib.sha256(body).hexdigest()[:16], f"sha384-{sri}")


def current_build() -> Build:
    """The widget as built into the package (reloaded when the file changes)."""
    return _load(WIDGET_PATH, WIDGET_PATH.stat().st_mtime_ns)


def _script(build: Build, cache_control: str) -> Response:
    response = Response(build.body, mimetype="text/javascript")
    response.headers["Cache-Control"] = cache_control
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.set_etag(build.digest)
    response.headers["Link"] = f'</{build.hashed_name}>; rel="canonical"'
    return response.make_conditional(request)


@bp.get("/widget.js")
def widget() -> Response:
    return _script(current_build(), SHORT_CACHE)


@bp.get("/widget.<digest>.js")
def widget_hashed(digest: str) -> Response:
    build = current_build()
    if digest != build.digest:
        abort(404)
    return _script(build, IMMUTABLE)


@bp.get("/widget.js.sri")
def widget_integrity() -> Response:
    build = current_build()
    response = Response(build.integrity + "\n", mimetype="text/plain")
    response.headers["Cache-Control"] = SHORT_CACHE
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Widget-Url"] = f"/{build.hashed_name}"
    return response
