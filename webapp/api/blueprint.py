"""The ``api`` blueprint object, in its own module so route modules can import it freely."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1", template_folder="templates")
