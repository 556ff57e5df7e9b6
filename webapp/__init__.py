"""The Flask delivery layer: ``create_app`` wires settings, database, security and blueprints."""

from __future__ import annotations

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
    return app


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
