"""``POST /api/v1/predictions``: the product's backend logs what its model said."""

from __future__ import annotations

from typing import Any

from flask import Response, g
from pydantic import ValidationError

from corrigenda import ingest
from corrigenda.schemas.common import field_errors
from corrigenda.schemas.ingest import PredictionBatch, PredictionIn, PredictionsResponse

from ..extensions import db_transaction
from .auth import require_key
from .blueprint import bp
from .body import json_body
from .openapi import Operation, document
from .problems import ApiProblem, json_response
from .signing import token_signer


@bp.post("/predictions")
@require_key("secret")
def log_predictions() -> Response:
    """Log one prediction or a batch; answer a signed feedback token for each."""
    items = _validated_predictions()
    try:
        with db_transaction() as session:
            logged = ingest.log_predictions(session, project=g.project, items=items)
    except ingest.PredictionConflict as exc:
        raise ApiProblem(
            409,
            "Prediction conflict",
            "an id was logged before with different content; nothing in this request was stored",
            exc.errors,
            type="conflict",
        ) from exc
    results = [_result(entry) for entry in logged]
    status = 201 if any(entry.status == "created" for entry in logged) else 200
    return json_response({"predictions": results}, status)


def _validated_predictions() -> list[PredictionIn]:
    body = json_body()
    data: Any = body.data
    batch = isinstance(data, dict) and "predictions" in data
    envelope = data if batch else {"predictions": [data]}
    prefix: tuple[str | int, ...] = () if batch else ("predictions", 0)
    try:
        items = PredictionBatch.model_validate(envelope).predictions
    except ValidationError as exc:
        errors = field_errors(exc, envelope)
        raise _invalid(errors if batch else [_unwrap(e, prefix) for e in errors]) from exc
    errors = ingest.unsafe_text_errors(data) if body.check_text else []
    for index, item in enumerate(items):
        errors += ingest.prediction_errors(g.project, item, index)
    if errors:
        raise _invalid(errors if batch else [_unwrap(e, prefix) for e in errors])
    return items


def _unwrap(error: dict[str, str], prefix: tuple[str | int, ...]) -> dict[str, str]:
    """A single prediction was sent: report paths relative to it (``/output``)."""
    head = "/" + "/".join(str(p) for p in prefix)
    path = error["path"]
    return {**error, "path": path[len(head) :] or "/"} if path.startswith(head) else error


def _invalid(errors: list[dict[str, str]]) -> ApiProblem:
    return ApiProblem(
        422,
        "Invalid predictions",
        "nothing in this request was stored; fix the fields listed in errors",
        errors,
        type="validation",
    )


def _result(entry: ingest.LoggedPrediction) -> dict[str, str]:
    token = token_signer().sign(
        project_id=g.project.id,
        prediction_id=entry.row_id,
        prediction=entry.client_id,
        end_user=entry.end_user,
    )
    return {"id": entry.client_id, "status": entry.status, "token": token}


document(
    Operation(
        path="/predictions",
        method="post",
        summary="Log one prediction or a batch (up to 1,000); get a feedback token for each",
        keys=("secret",),
        request=[PredictionIn, PredictionBatch],
        responses={
            201: ("at least one prediction was new", PredictionsResponse),
            200: ("every prediction was logged before with identical content", PredictionsResponse),
            409: ("an id was logged before with different content; nothing stored", None),
        },
        description="All or nothing: if any prediction is invalid or conflicts, nothing in "
        "the request is stored. Re-sending identical content is a no-op.",
        errors=(401, 403, 409, 413, 415, 422, 429),
    )
)
