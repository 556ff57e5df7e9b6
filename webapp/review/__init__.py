"""The review blueprint: the landing page, the keyboard-first queue, the item view."""

from flask import Blueprint

bp = Blueprint("review", __name__, url_prefix="/review")

from . import views  # noqa: E402,F401  - routes register on bp
