"""Fixtures for the ingestion API: a project with keys, and request helpers."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from corrigenda.models import FeedbackEvent, Prediction
from tests.factories import setup_project_with_keys

ORIGIN = "http://127.0.0.1:5050"


@pytest.fixture
def keys(engine: Engine) -> dict[str, Any]:
    return setup_project_with_keys(engine)


def sk(keys: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys['sk']}"}


def pk(keys: dict[str, Any], origin: str | None = ORIGIN) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {keys['pk']}"}
    if origin:
        headers["Origin"] = origin
    return headers


def prediction(client_id: str = "p-1", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": client_id,
        "model_version": "v1",
        "input": {"text": "My invoice is wrong", "fields": {"plan": "pro"}},
        "output": "bug",
        "confidence": 0.7,
    }
    body.update(fields)
    return body


def log(client: FlaskClient, keys: dict[str, Any], client_id: str = "p-1", **fields: Any) -> str:
    """Log one prediction with the secret key; return its feedback token."""
    response = client.post(
        "/api/v1/predictions", json=prediction(client_id, **fields), headers=sk(keys)
    )
    assert response.status_code in (200, 201), response.json
    return response.json["predictions"][0]["token"]


def event(**fields: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "kind": "accept", **fields}


def count(engine: Engine, model: type) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(model)).scalar_one()


def count_events(engine: Engine) -> int:
    return count(engine, FeedbackEvent)


def count_predictions(engine: Engine) -> int:
    return count(engine, Prediction)


@pytest.fixture
def live_server(app):  # type: ignore[no-untyped-def]
    from tests.browser.conftest import LiveServer

    with LiveServer(app) as server:
        yield server
