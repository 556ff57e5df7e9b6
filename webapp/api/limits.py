"""Rate limits on the JSON API: per key and per client address (Flask-Limiter).

Counters live in Redis when ``CORRIGENDA_REDIS_URL`` is set (shared by every gunicorn
worker), in memory otherwise. If Redis is unreachable the limiter falls back to memory
rather than failing requests. A refused request gets 429 problem+json with Retry-After.
"""

from __future__ import annotations

import hashlib
import uuid

from flask import Flask, Response, g
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from corrigenda.settings import Settings

from .blueprint import bp


def client_key_identity() -> str:
    """Who is calling, by key: a digest of the presented key (never the key itself)."""
    from .auth import presented_key

    digest = g.get("key_digest")
    if digest is None:
        plaintext, _ = presented_key(allow_query=True)
        digest = hashlib.sha256(plaintext.encode()).hexdigest() if plaintext else "anonymous"
    return "key:" + digest[:32]


def init_limiter(app: Flask, settings: Settings) -> Limiter:
    """One limiter per app (tests build many apps); limits apply to the whole api blueprint."""
    app.after_request(_retry_after_only_when_refused)  # runs after the limiter's own hook
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=settings.redis_url or "memory://",
        storage_options={"socket_connect_timeout": 1, "socket_timeout": 1}
        if settings.redis_url
        else {},
        key_prefix=_key_prefix(settings),
        strategy="fixed-window",  # O(1) per hit; moving-window stores every hit
        headers_enabled=True,
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    limiter.limit(lambda: settings.rate_limit_per_key, key_func=client_key_identity)(bp)
    limiter.limit(lambda: settings.rate_limit_per_address, key_func=get_remote_address)(bp)
    app.extensions["corrigenda.limiter"] = limiter
    return limiter


def _retry_after_only_when_refused(response: Response) -> Response:
    # Flask-Limiter sets Retry-After on every response; clients would read it as "slow down".
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
    return response


def _key_prefix(settings: Settings) -> str:
    # Shared by every process of one deployment; unique per app in tests, so parallel
    # test runs on one Redis never share counters.
    deployment = hashlib.sha256(settings.resolved_database_url().encode()).hexdigest()[:12]
    return f"corrigenda:{deployment}:" + (uuid.uuid4().hex[:8] if settings.testing else "")
