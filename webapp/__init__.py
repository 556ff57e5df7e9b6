"""The Flask delivery layer: ``create_app`` wires settings, database, security and blueprints."""

from __future__ import annotations

import gc
from typing import Any

from flask import Flask

from corrigenda.settings import Settings, load_secret_key

from . import extensions


def create_app(config: Settings | dict[str, Any] | None = None) -> Flask:
    """Build the web app. ``config`` is a Settings, a dict of Settings fields, or None (env)."""
    settings = config if isinstance(config, Settings) else Settings(**(config or {}))
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=load_secret_key(settings),
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url().startswith("https://"),
        TESTING=settings.testing,
    )
    extensions.init_app(app, settings)
    _register_blueprints(app)
    _init_auth(app)
    _init_api(app, settings)
    _tune_garbage_collector()
    return app


# A 500-event feedback batch allocates ~5,000 short-lived containers (parsed events, models,
# rows, results). At Python's default threshold (700) the cyclic collector ran ~7 times per
# batch and kept promoting the in-flight events of concurrent requests into the older
# generations, which it then rescanned: ~45 % of the server's CPU per batch in
# bench/ingest.py (9.7 -> 5.5 ms). They are freed by reference counting anyway; the collector
# only has cycles to find, and a higher threshold lets them wait a little longer.
GC_YOUNG_THRESHOLD = 10_000


def _tune_garbage_collector() -> None:
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(max(_young, GC_YOUNG_THRESHOLD), middle, old)


def _init_api(app: Flask, settings: Settings) -> None:
    from .api.auth import init_key_cache
    from .api.limits import init_limiter
    from .api.sessions import SessionInterface

    init_limiter(app, settings)
    init_key_cache(app)
    app.session_interface = SessionInterface()


def _init_auth(app: Flask) -> None:
    from .auth import init_auth

    init_auth(app)


def _register_blueprints(app: Flask) -> None:
    from .admin import bp as admin_bp
    from .api import bp as api_bp
    from .auth import bp as auth_bp
    from .dashboard import bp as dashboard_bp
    from .health import bp as health_bp
    from .home import bp as home_bp
    from .monitoring import bp as monitoring_bp
    from .review import bp as review_bp
    from .widget import bp as widget_bp

    for blueprint in (
        health_bp,
        home_bp,
        api_bp,
        auth_bp,
        review_bp,
        dashboard_bp,
        admin_bp,
        widget_bp,
        monitoring_bp,
    ):
        app.register_blueprint(blueprint)
