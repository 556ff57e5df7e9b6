"""The landing page and the demo product page of ``corrigenda up --demo``."""

from __future__ import annotations

import json

from flask import Blueprint, abort, render_template

from corrigenda.demo import demo_file, demo_predictions
from corrigenda.tokens import TokenSigner

from ..extensions import get_settings, read_session

bp = Blueprint("home", __name__)


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    return render_template("home/index.html")


@bp.get("/demo")
def demo():  # type: ignore[no-untyped-def]
    """A pretend product page: the demo project's predictions, each with the widget."""
    settings = get_settings()
    path = demo_file(settings)
    if not path.exists():
        abort(404, "no demo here: start with 'corrigenda up --demo'")
    facts = json.loads(path.read_text())
    from flask import current_app

    signer = TokenSigner(current_app.config["SECRET_KEY"], settings.token_max_age_seconds)
    with read_session() as session:
        predictions = demo_predictions(session)
    tickets = [
        {
            "prediction": p,
            "token": signer.sign(
                project_id=p.project_id, prediction_id=p.id or 0, prediction=p.client_id
            ),
        }
        for p in predictions
    ]
    return render_template("home/demo.html", tickets=tickets, key=facts["publishable_key"])
