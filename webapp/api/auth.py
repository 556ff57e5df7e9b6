"""API key authentication for the JSON API.

``@require_key("secret")`` or ``@require_key("publishable", "secret")`` on a view resolves
``Authorization: Bearer <key>`` to ``g.api_key`` and ``g.project`` (detached, read-only
snapshots), or answers 401/403 problem+json. Publishable keys must also come from one of
the project's allowed origins (see ``cors.py``).

Resolved keys are cached in the process for a few seconds (``API_KEY_CACHE_SECONDS``,
default 5), so a revoked key stops working within that time. The last-used time is
written at most once a minute per key and process, never on every request.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, current_app, g, request

from corrigenda.db import transaction
from corrigenda.keys import record_last_used, resolve_key
from corrigenda.models import ApiKey, Project, utcnow

from ..extensions import get_engine
from .cors import check_origin
from .problems import ApiProblem

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_CACHE_SECONDS = 5.0
LAST_USED_EVERY_SECONDS = 60.0
QUERY_PARAM = "key"


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    key: ApiKey
    project: Project
    expires: float


class KeyCache:
    """Per-app cache of resolved keys (by hash) and of when last-used was last written."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, ResolvedKey] = {}
        self._last_written: dict[int, float] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str, plaintext: str) -> ResolvedKey | None:
        now = time.monotonic()
        entry = self._entries.get(key_hash)
        if entry is not None and entry.expires > now:
            return entry
        with transaction(get_engine()) as session:
            found = resolve_key(session, plaintext)
            if found is not None:
                session.expunge_all()
        if found is None:
            self._entries.pop(key_hash, None)
            return None
        entry = ResolvedKey(found[0], found[1], now + self.ttl)
        if self.ttl > 0:
            self._entries[key_hash] = entry
        return entry

    def forget(self) -> None:
        self._entries.clear()

    def note_used(self, key_id: int) -> None:
        """Write last-used now if it was not written in the last minute (by this process)."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_written.get(key_id, float("-inf")) < LAST_USED_EVERY_SECONDS:
                return
            self._last_written[key_id] = now
        try:
            with transaction(get_engine()) as session:
                record_last_used(session, used_at={key_id: utcnow()})
        except Exception:  # bookkeeping must never fail a request
            log.exception("could not record last use of key %s", key_id)


def init_key_cache(app: Flask) -> None:
    ttl = float(app.config.get("API_KEY_CACHE_SECONDS", DEFAULT_CACHE_SECONDS))
    app.extensions["corrigenda.key_cache"] = KeyCache(ttl)


def key_cache() -> KeyCache:
    cache = current_app.extensions.get("corrigenda.key_cache")
    if cache is None:
        init_key_cache(current_app)  # type: ignore[arg-type]
        cache = current_app.extensions["corrigenda.key_cache"]
    return cache


def presented_key(allow_query: bool = False) -> tuple[str | None, bool]:
    """The key the caller sent and whether it came from the query string."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    if allow_query and (from_query := request.args.get(QUERY_PARAM)):
        return from_query, True
    return None, False


def key_digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def require_key(*kinds: str, query_param: bool = False) -> Callable[[F], F]:
    """Allow the view only for keys of ``kinds``; ``query_param`` also accepts ``?key=pk_…``."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authenticate(kinds, query_param)
            return view(*args, **kwargs)

        wrapper.publishable = "publishable" in kinds  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def authenticate(kinds: tuple[str, ...], query_param: bool) -> None:
    plaintext, from_query = presented_key(query_param)
    if plaintext is None:
        raise ApiProblem(
            401,
            "Missing API key",
            "send the project's key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    g.key_digest = key_digest(plaintext)
    resolved = key_cache().get(g.key_digest, plaintext)
    if resolved is None:
        raise ApiProblem(
            401,
            "Invalid API key",
            "the key is unknown or was revoked; create a new one in the project settings",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    _check_scope(resolved.key, kinds, from_query)
    if resolved.key.kind == "publishable":
        check_origin(resolved.project)
    g.api_key, g.project = resolved.key, resolved.project
    key_cache().note_used(resolved.key.id)  # type: ignore[arg-type]


def _check_scope(key: ApiKey, kinds: tuple[str, ...], from_query: bool) -> None:
    if key.kind not in kinds:
        needed = "a secret key (sk_…)" if kinds == ("secret",) else " or ".join(kinds) + " key"
        raise ApiProblem(
            403, "Key not allowed here", f"this endpoint needs {needed}; a {key.kind} key was sent"
        )
    if from_query and key.kind != "publishable":
        raise ApiProblem(
            403,
            "Secret key in a URL",
            "only publishable keys may be sent as ?key=; send secret keys in the "
            "Authorization header (and rotate this one: URLs end up in logs)",
        )
