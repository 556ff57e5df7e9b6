"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from ..extensions import get_engine, get_settings

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():  # type: ignore[no-untyped-def]
    checks = {"database": _database_ready(), "broker": _broker_ready()}
    ready = all(value in ("ok", "not configured") for value in checks.values())
    return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503


def _database_ready() -> str:
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; report it
        return f"unreachable: {type(exc).__name__}"
    return "ok"


def _broker_ready() -> str:
    settings = get_settings()
    if not settings.redis_url:
        return "not configured"
    import redis

    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        return f"unreachable: {type(exc).__name__}"
    return "ok"
