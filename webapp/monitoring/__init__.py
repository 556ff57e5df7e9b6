"""Operational endpoints for monitoring systems (Prometheus ``/metrics``)."""

from flask import Blueprint

bp = Blueprint("monitoring", __name__)
