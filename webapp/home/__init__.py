"""The landing page and the demo product page of ``corrigenda up --demo``."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, abort, current_app, render_template

from corrigenda.demo import DEMO_SLUG, demo_file, demo_predictions
from corrigenda.models import Prediction
from corrigenda.projects import get_project
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
    signer = TokenSigner(current_app.config["SECRET_KEY"], settings.token_max_age_seconds)
    with read_session() as session:
        project = get_project(session, DEMO_SLUG)
        predictions = demo_predictions(session)
    if project is None:
        abort(404, "the demo project was deleted: start again with 'corrigenda up --demo'")
    tickets = [_ticket(signer, prediction) for prediction in predictions]
    return render_template(
        "home/demo.html",
        tickets=tickets,
        key=facts["publishable_key"],
        task_type=project.task_type,
        labels=project.labels,
    )


def _ticket(signer: TokenSigner, prediction: Prediction) -> dict[str, Any]:
    token = signer.sign(
        project_id=prediction.project_id,
        prediction_id=prediction.id or 0,
        prediction=prediction.client_id,
    )
    alternatives = [a["label"] for a in prediction.alternatives or [] if "label" in a]
    return {"prediction": prediction, "token": token, "alternatives": alternatives}
