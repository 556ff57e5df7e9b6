"""The dashboard blueprint: metrics per project for its members (``/dashboard``)."""

from flask import Blueprint

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

from . import views  # noqa: E402, F401  (views register their routes on bp)
