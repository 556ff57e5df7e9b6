"""Admin pages: users, project membership, labels, keys, origins, policy, review quality."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from . import quality, settings, users  # noqa: E402,F401  - routes register on bp
