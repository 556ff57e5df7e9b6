"""POST /api/v1/predictions: create, idempotent re-send, conflicts, and the bad-input matrix."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, select

from corrigenda.models import Prediction
from corrigenda.tokens import TokenSigner
from tests.conftest import TEST_SECRET

from .conftest import count_predictions, prediction, sk

URL = "/api/v1/predictions"


def test_single_prediction_is_stored_and_gets_a_verifiable_token(client, keys, engine) -> None:
    response = client.post(URL, json=prediction(end_user="u-1"), headers=sk(keys))
    assert response.status_code == 201
    [result] = response.json["predictions"]
    assert result["id"] == "p-1" and result["status"] == "created"
    claims = TokenSigner(TEST_SECRET, 60).verify(result["token"], project_id=keys["project_id"])
    assert claims.prediction == "p-1" and claims.end_user == "u-1"
    with Session(engine) as session:
        row = session.exec(select(Prediction)).one()
    assert (row.output, row.confidence, row.input["fields"]) == ("bug", 0.7, {"plan": "pro"})
    assert claims.prediction_id == row.id


def test_identical_resend_is_unchanged_and_different_content_is_409(client, keys, engine) -> None:
    assert client.post(URL, json=prediction(), headers=sk(keys)).status_code == 201
    again = client.post(URL, json=prediction(), headers=sk(keys))
    assert again.status_code == 200 and again.json["predictions"][0]["status"] == "unchanged"
    changed = client.post(
        URL,
        json={"predictions": [prediction("p-2"), prediction(output="billing")]},
        headers=sk(keys),
    )
    assert changed.status_code == 409
    assert changed.mimetype == "application/problem+json"
    assert changed.json["errors"][0]["path"] == "/predictions/1/id"
    assert count_predictions(engine) == 1  # p-2 was not stored either: all or nothing


def test_same_id_twice_in_one_batch(client, keys, engine) -> None:
    same = client.post(URL, json={"predictions": [prediction(), prediction()]}, headers=sk(keys))
    assert [r["status"] for r in same.json["predictions"]] == ["created", "created"]
    other = {"predictions": [prediction("p-9"), prediction("p-9", confidence=0.1)]}
    assert client.post(URL, json=other, headers=sk(keys)).status_code == 409
    assert count_predictions(engine) == 1


def test_batch_of_1000_in_one_request(client, keys, engine) -> None:
    batch = {"predictions": [prediction(f"b-{i}") for i in range(1000)]}
    response = client.post(URL, json=batch, headers=sk(keys))
    assert response.status_code == 201 and len(response.json["predictions"]) == 1000
    assert count_predictions(engine) == 1000


@pytest.mark.parametrize(
    ("body", "path", "fragment"),
    [
        (prediction(bogus=1), "/bogus", "unknown field"),
        (prediction(input={"text": "x", "extra": 1}), "/input/extra", "unknown field"),
        (prediction(confidence="0.5"), "/confidence", "number"),
        (prediction(confidence=1.5), "/confidence", "less than or equal"),
        (prediction(output="nope"), "/output", "not one of the project's labels"),
        (prediction(output=["bug"]), "/output", "one label"),
        (
            prediction(alternatives=[{"label": "zzz", "score": 0.2}]),
            "/alternatives/0/label",
            "labels",
        ),
        (prediction(input={"text": "x" * 20_001}), "/input/text", "at most 20000"),
        (prediction(id=""), "/id", "at least 1"),
        (prediction(id=7), "/id", "string"),
        (prediction(input={"text": "a\x00b"}), "/input/text", "NUL"),
        (prediction(segment={"locale": [1]}), "/segment/locale", "valid"),
    ],
)
def test_bad_prediction_names_the_field_and_stores_nothing(
    client, keys, engine, body, path, fragment
) -> None:
    response = client.post(URL, json=body, headers=sk(keys))
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"
    messages = {e["path"]: e["message"] for e in response.json["errors"]}
    assert path in messages and fragment in messages[path], messages
    assert count_predictions(engine) == 0


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ('{"id": "p", "input": {}, "confidence": NaN}', "/confidence"),
        ('{"id": "p", "input": {}, "confidence": 1e400}', "/confidence"),
        ('{"id": "p", "input": {}, "confidence": 123456789012345678901234567890}', "/confidence"),
        ('{"id": "p", "input": {"text": "bad \\ud800 surrogate"}}', "/input/text"),
    ],
)
def test_non_finite_numbers_and_lone_surrogates_are_field_errors(
    client, keys, engine, raw, path
) -> None:
    headers = {**sk(keys), "Content-Type": "application/json"}
    response = client.post(URL, data=raw, headers=headers)
    assert response.status_code == 422, response.json
    assert path in {e["path"] for e in response.json["errors"]}
    assert count_predictions(engine) == 0


def test_rtl_and_combining_characters_round_trip(client, keys, engine) -> None:
    text = "שלום עולם \u202e evil \u202c e\u0301 Z\u0351\u0352 🇺🇦"
    response = client.post(URL, json=prediction(input={"text": text}), headers=sk(keys))
    assert response.status_code == 201
    with Session(engine) as session:
        assert session.exec(select(Prediction)).one().input["text"] == text


def test_batch_over_1000_is_rejected(client, keys, engine) -> None:
    batch = {"predictions": [prediction(f"b-{i}") for i in range(1001)]}
    response = client.post(URL, json=batch, headers=sk(keys))
    assert response.status_code == 422
    assert response.json["errors"][0]["path"] == "/predictions"
    assert count_predictions(engine) == 0


def test_multilabel_and_text_projects_validate_by_task_type(client, engine, app) -> None:
    from tests.factories import setup_project_with_keys

    multi = setup_project_with_keys(engine, "multi", task_type="multilabel")
    text = setup_project_with_keys(engine, "texts", task_type="text", labels=[])
    ok = client.post(URL, json=prediction(output=["bug", "billing"]), headers=sk(multi))
    assert ok.status_code == 201
    bad = client.post(URL, json=prediction("p-2", output=["bug", "bug"]), headers=sk(multi))
    assert bad.json["errors"][0] == {"path": "/output", "message": "lists a label more than once"}
    assert (
        client.post(URL, json=prediction(output="free text"), headers=sk(text)).status_code == 201
    )
    wrong = client.post(URL, json=prediction("p-3", output=["a"]), headers=sk(text))
    assert wrong.status_code == 422


def test_malformed_json_and_wrong_content_type(client, keys, engine) -> None:
    bad = client.post(URL, data='{"id": ', headers={**sk(keys), "Content-Type": "application/json"})
    assert bad.status_code == 400 and "line 1" in bad.json["detail"]
    form = client.post(
        URL, data=json.dumps(prediction()), headers={**sk(keys), "Content-Type": "text/plain"}
    )
    assert form.status_code == 415 and form.mimetype == "application/problem+json"
    assert count_predictions(engine) == 0
