"""The widget blueprint."""

from flask import Blueprint

bp = Blueprint("widget", __name__)
