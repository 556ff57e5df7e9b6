"""The whole flywheel, thin but real at every layer, on both back ends.

A secret key logs a prediction; a publishable key sends a ``correct`` event for it from an
allowed origin; a worker (a real Celery process on PostgreSQL + Redis, or the embedded
in-process worker on SQLite) turns it into a review item; a reviewer accepts the correction
in the review app; the example stream serves it as JSONL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlmodel import select

from corrigenda.db import transaction
from corrigenda.models import Example, Prediction, ReviewItem
from tests.conftest import make_test_settings
from tests.factories import make_user, setup_project_with_keys
from tests.review.web import log_in
from tests.services import wait_for
from webapp import create_app
from workers.embedded import EmbeddedWorker

SHOP = "https://shop.example"


@pytest.fixture
def postgres_app(
    pg_url: str, redis_url: str, celery_queue: str, celery_worker, tmp_path: Path
) -> Iterator[Flask]:  # type: ignore[no-untyped-def]
    settings = make_test_settings(pg_url, tmp_path, redis_url=redis_url, celery_queue=celery_queue)
    app = create_app(settings)
    yield app
    app.extensions["corrigenda.engine"].dispose()


@pytest.fixture
def embedded_app(sqlite_url: str, tmp_path: Path) -> Iterator[Flask]:
    app = create_app(make_test_settings(sqlite_url, tmp_path))
    worker = EmbeddedWorker(app.extensions["corrigenda.engine"], interval=0.2)
    worker.start()
    yield app
    worker.stop()
    worker.join(10)
    app.extensions["corrigenda.engine"].dispose()


@pytest.mark.parametrize("backend", ["postgres_app", "embedded_app"])
def test_feedback_becomes_a_reviewed_example(backend: str, request: pytest.FixtureRequest) -> None:
    app: Flask = request.getfixturevalue(backend)
    engine = app.extensions["corrigenda.engine"]
    keys = setup_project_with_keys(engine, "tickets", allowed_origins=[SHOP])
    client = app.test_client()

    token = log_prediction(client, keys["sk"])
    send_correction(client, keys["pk"], token)
    item_id = wait_for_review_item(engine)
    accept_in_review_app(app, engine, item_id)

    # On PostgreSQL the stream serves rows once every older transaction in the cluster has
    # ended (its commit-safe horizon), so poll rather than expect it on the next request.
    lines: list[dict] = []  # type: ignore[type-arg]
    wait_for(lambda: bool(lines.extend(stream_examples(client, keys["sk"])) or lines), timeout=30)
    assert len(lines) == 1
    assert lines[0]["target"] == "billing"
    assert lines[0]["model_output"] == "bug"
    assert lines[0]["input"]["text"] == "I was charged twice"


def log_prediction(client, secret_key: str) -> str:  # type: ignore[no-untyped-def]
    response = client.post(
        "/api/v1/predictions",
        json={
            "id": "ticket-1",
            "model_version": "v1",
            "input": {"text": "I was charged twice"},
            "output": "bug",
            "confidence": 0.55,
        },
        headers={"Authorization": f"Bearer {secret_key}"},
    )
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    return response.get_json()["predictions"][0]["token"]


def send_correction(client, publishable_key: str, token: str) -> None:  # type: ignore[no-untyped-def]
    event = {
        "id": str(uuid.uuid4()),
        "prediction": "ticket-1",
        "token": token,
        "kind": "correct",
        "value": "billing",
        "end_user": "u-1",
    }
    response = client.post(
        "/api/v1/feedback",
        json={"events": [event]},
        headers={"Authorization": f"Bearer {publishable_key}", "Origin": SHOP},
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["results"][0]["status"] == "accepted"


def wait_for_review_item(engine) -> int:  # type: ignore[no-untyped-def]
    found: list[int] = []

    def review_item_exists() -> bool:
        with transaction(engine) as session:
            item = session.exec(
                select(ReviewItem)
                .join(Prediction, ReviewItem.prediction_id == Prediction.id)
                .where(Prediction.client_id == "ticket-1", ReviewItem.reason != "audit")
            ).first()
            found.extend([item.id] if item else [])
        return bool(found)

    wait_for(review_item_exists, timeout=60, message="the worker never created a review item")
    return found[0]


def accept_in_review_app(app: Flask, engine, item_id: int) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        project_id = session.exec(
            select(ReviewItem.project_id).where(ReviewItem.id == item_id)
        ).one()
        from corrigenda.models import Project

        make_user(session, session.get(Project, project_id), role="reviewer")
    reviewer = app.test_client()
    csrf = log_in(reviewer, "rev@example.com")
    page = reviewer.get("/review/tickets")
    assert "I was charged twice" in page.get_data(as_text=True)
    response = reviewer.post(
        f"/review/tickets/items/{item_id}/decide",
        data={"action": "accept_correction", "csrf_token": csrf},
    )
    assert response.status_code in (200, 302), response.get_data(as_text=True)
    with transaction(engine) as session:
        assert session.exec(select(Example)).one().target == "billing"


def stream_examples(client, secret_key: str) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    response = client.get(
        "/api/v1/projects/tickets/examples?since=0",
        headers={"Authorization": f"Bearer {secret_key}"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/x-ndjson"
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines() if line]
