"""Accounts: log in / out, the session user, per-project role guards, CSRF.

``init_auth(app)`` wires Flask-Login and CSRF protection. The JSON API authenticates with
keys, not cookies, so it is exempt from CSRF; everything else that changes state needs the
token (htmx sends it from the ``hx-headers`` on ``<body>``).
"""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify, render_template, request
from flask_login import LoginManager
from flask_wtf.csrf import CSRFError, CSRFProtect

bp = Blueprint("auth", __name__)
csrf = CSRFProtect()
login_manager = LoginManager()


def init_auth(app: Flask) -> None:
    """Attach login sessions and CSRF protection to ``app`` (call before blueprints)."""
    from ..api import bp as api_bp
    from .session import load_user

    # One token per session, valid as long as the session: a reviewer works for hours.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    app.config.setdefault("REMEMBER_COOKIE_HTTPONLY", True)
    app.config.setdefault("REMEMBER_COOKIE_SAMESITE", "Lax")
    csrf.init_app(app)
    csrf.exempt(api_bp)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"
    login_manager.user_loader(load_user)
    login_manager.unauthorized_handler(_unauthorized)
    app.register_error_handler(CSRFError, _csrf_refused)


def _unauthorized():  # type: ignore[no-untyped-def]
    from flask import redirect, url_for

    target = url_for("auth.login", next=request.full_path.rstrip("?"))
    if request.headers.get("HX-Request"):
        return "", 401, {"HX-Redirect": target}
    return redirect(target)


def _csrf_refused(error: CSRFError):  # type: ignore[no-untyped-def]
    message = f"{error.description} Reload the page and try again."
    if request.accept_mimetypes.best == "application/json":
        return jsonify(error="csrf", detail=message), 400
    return render_template("auth/error.html", message=message), 400


from . import views  # noqa: E402,F401  - routes register on bp
