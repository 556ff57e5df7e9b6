"""POST /api/v1/feedback: per-event results, tokens, duplicates, beacons; and the context."""

from __future__ import annotations

import json
import time

import pytest
from sqlmodel import Session, select

from corrigenda.models import FeedbackEvent, Prediction
from corrigenda.tokens import TokenSigner
from tests.conftest import TEST_SECRET
from tests.factories import setup_project_with_keys

from .conftest import ORIGIN, count_events, event, log, pk, sk

URL = "/api/v1/feedback"


def statuses(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 202, response.json
    return [r["status"] for r in response.json["results"]]


def test_mixed_batch_keeps_the_good_events(client, keys, engine) -> None:
    token = log(client, keys)
    batch = [
        event(token=token, kind="correct", value="billing", comment="wrong team"),
        event(token=token, kind="correct", value="not-a-label"),
        event(token=token, kind="view", bogus=True),
        event(token=token, kind="accept", comment="x\x00y"),
        event(token=token, kind="reject", client_time="2024-05-01T10:00:00+02:00"),
    ]
    response = client.post(URL, json={"events": batch}, headers=pk(keys))
    assert statuses(response) == ["accepted", "rejected", "rejected", "rejected", "accepted"]
    errors = [r.get("errors") for r in response.json["results"]]
    assert errors[1][0]["path"] == "/events/1/value"
    assert errors[2][0]["path"] == "/events/2/bogus"
    assert errors[3][0]["path"] == "/events/3/comment"
    with Session(engine) as session:
        rows = session.exec(select(FeedbackEvent).order_by(FeedbackEvent.id)).all()
    assert [(r.kind, r.value, r.source, r.origin) for r in rows] == [
        ("correct", "billing", "widget", ORIGIN),
        ("reject", None, "widget", ORIGIN),
    ]
    assert rows[1].client_time.isoformat() == "2024-05-01T08:00:00+00:00"


def test_a_batch_stores_each_event_as_sent(client, keys, engine) -> None:
    token = log(client, keys, "p-1", end_user="u-9")
    full = event(
        token=token,
        kind="correct",
        value="billing",
        comment="wrong team",
        session="s-1",
        client_time="2024-05-01T10:00:00+02:00",
        time_to_decision_ms=1500,
    )
    plain = event(token=token, kind="view")
    response = client.post(URL, json={"events": [full, plain]}, headers=pk(keys))
    assert statuses(response) == ["accepted", "accepted"]
    with Session(engine) as session:
        rows = session.exec(select(FeedbackEvent).order_by(FeedbackEvent.id)).all()
        prediction_id = session.exec(select(Prediction.id)).one()
    stored = [
        (str(r.event_id), r.project_id, r.prediction_id, r.kind, r.value, r.comment)
        + (r.end_user, r.session_id, r.source, r.origin, r.time_to_decision_ms)
        for r in rows
    ]
    project = keys["project_id"]
    assert stored == [
        (full["id"], project, prediction_id, "correct", "billing", "wrong team")
        + ("u-9", "s-1", "widget", ORIGIN, 1500),
        (plain["id"], project, prediction_id, "view", None, None)
        + ("u-9", None, "widget", ORIGIN, None),
    ]
    assert rows[0].client_time.isoformat() == "2024-05-01T08:00:00+00:00"
    assert rows[1].client_time is None
    assert rows[0].received_at == rows[1].received_at


def test_duplicates_in_one_batch_and_across_batches(client, keys, engine) -> None:
    token = log(client, keys)
    first = event(token=token, kind="accept")
    response = client.post(URL, json={"events": [first, first]}, headers=pk(keys))
    assert statuses(response) == ["accepted", "duplicate"]
    again = client.post(URL, json={"events": [first, event(token=token)]}, headers=pk(keys))
    assert statuses(again) == ["duplicate", "accepted"]
    assert count_events(engine) == 2


def test_secret_key_needs_only_the_prediction_id(client, keys, engine) -> None:
    log(client, keys, "p-1")
    batch = [event(prediction="p-1", kind="flag"), event(prediction="p-404"), event(kind="view")]
    response = client.post(URL, json={"events": batch}, headers=sk(keys))
    assert statuses(response) == ["accepted", "rejected", "rejected"]
    results = response.json["results"]
    assert results[1]["reason"] == "unknown_prediction"
    assert results[2]["errors"][0]["path"] == "/events/2/prediction"
    assert response.headers.get("Access-Control-Allow-Origin") is None  # secret keys: no CORS
    assert count_events(engine) == 1


def test_publishable_key_requires_a_token(client, keys, engine) -> None:
    log(client, keys)
    response = client.post(URL, json=event(prediction="p-1"), headers=pk(keys))
    assert response.json["results"][0]["reason"] == "token_required"
    assert count_events(engine) == 0


def test_expired_forged_other_project_and_other_user_tokens(client, keys, engine, app) -> None:
    good = log(client, keys, "p-1", end_user="u-1")
    other = setup_project_with_keys(engine, "other")
    other_token = log(client, other, "p-1")
    expired = TokenSigner(TEST_SECRET, -1).sign(
        project_id=keys["project_id"], prediction_id=1, prediction="p-1"
    )
    forged = TokenSigner("not-our-secret", 3600).sign(
        project_id=keys["project_id"], prediction_id=1, prediction="p-1"
    )
    batch = [
        event(token=expired),
        event(token=forged),
        event(token=other_token),
        event(token=good, end_user="u-2"),
        event(token=good, prediction="p-2"),
        event(token=good[:-3] + "abc"),
        event(token=good, end_user="u-1"),
    ]
    response = client.post(URL, json={"events": batch}, headers=pk(keys))
    results = response.json["results"]
    assert [r["status"] for r in results] == ["rejected"] * 6 + ["accepted"]
    assert "expired" in results[0]["errors"][0]["message"]
    assert "signature" in results[1]["errors"][0]["message"]
    assert "another project" in results[2]["errors"][0]["message"]
    assert results[3]["reason"] == "end_user_mismatch"
    assert results[4]["errors"][0]["path"] == "/events/4/prediction"
    with Session(engine) as session:
        assert session.exec(select(FeedbackEvent.end_user)).all() == ["u-1"]


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"kind": "correct"}, "/value"),
        ({"kind": "view", "value": "bug"}, "/value"),
        ({"kind": "shout"}, "/kind"),
        ({"kind": "accept", "id": "not-a-uuid"}, "/id"),
        ({"kind": "accept", "client_time": 1700000000}, "/client_time"),
        ({"kind": "accept", "client_time": "2024-05-01T10:00:00"}, "/client_time"),
        ({"kind": "accept", "time_to_decision_ms": -5}, "/time_to_decision_ms"),
        ({"kind": "accept", "comment": "c" * 2001}, "/comment"),
    ],
)
def test_single_bad_event_names_the_field(client, keys, engine, fields, path) -> None:
    token = log(client, keys)
    response = client.post(URL, json=event(token=token, **fields), headers=pk(keys))
    [result] = response.json["results"]
    assert result["status"] == "rejected" and result["errors"][0]["path"] == path, result
    assert count_events(engine) == 0


def test_envelope_errors_are_problems(client, keys, engine) -> None:
    token = log(client, keys)
    too_many = {"events": [event(token=token) for _ in range(501)]}
    assert client.post(URL, json=too_many, headers=pk(keys)).status_code == 422
    extra = client.post(URL, json={"events": [event(token=token)], "x": 1}, headers=pk(keys))
    assert extra.status_code == 422 and extra.json["errors"][0]["path"] == "/x"
    assert client.post(URL, json=[event(token=token)], headers=pk(keys)).status_code == 422
    assert count_events(engine) == 0


def test_sendbeacon_text_plain_with_key_in_query(client, keys, engine) -> None:
    token = log(client, keys)
    body = json.dumps({"events": [event(token=token, kind="view")]})
    headers = {"Content-Type": "text/plain;charset=UTF-8", "Origin": ORIGIN}
    response = client.post(f"{URL}?key={keys['pk']}", data=body, headers=headers)
    assert statuses(response) == ["accepted"]
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    bad = client.post(f"{URL}?key={keys['pk']}", data="{not json", headers=headers)
    assert bad.status_code == 400
    secret_in_url = client.post(f"{URL}?key={keys['sk']}", data=body, headers=headers)
    assert secret_in_url.status_code == 403
    secret_text = client.post(URL, data=body, headers={**sk(keys), "Content-Type": "text/plain"})
    assert secret_text.status_code == 415
    assert count_events(engine) == 1


def test_events_are_committed_before_the_answer(client, keys, engine) -> None:
    token = log(client, keys)
    ids = [event(token=token, kind="accept") for _ in range(50)]
    assert statuses(client.post(URL, json={"events": ids}, headers=pk(keys))) == ["accepted"] * 50
    with Session(engine) as session:  # a separate connection sees them at once
        stored = {str(e) for e in session.exec(select(FeedbackEvent.event_id)).all()}
    assert stored == {e["id"] for e in ids}


def test_feedback_context_for_the_widget(client, keys) -> None:
    token = log(client, keys, alternatives=[{"label": "billing", "score": 0.2}])
    url = f"{URL}/context?token={token}&key={keys['pk']}"
    response = client.get(url, headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert response.json == {
        "prediction": "p-1",
        "task_type": "classification",
        "labels": ["billing", "bug", "feature", "other"],
        "output": "bug",
        "alternatives": [{"label": "billing", "score": 0.2}],
    }
    assert client.get(url[:-10] + "x" * 10, headers={"Origin": ORIGIN}).status_code in (401, 403)
    forged = f"{URL}/context?token={token[:-2]}xx&key={keys['pk']}"
    assert client.get(forged, headers={"Origin": ORIGIN}).status_code == 403
    assert client.get(url).status_code == 403  # no Origin with a publishable key


def test_token_expiry_is_enforced(client, keys, engine) -> None:
    signer = TokenSigner(TEST_SECRET, 1)
    token = signer.sign(project_id=keys["project_id"], prediction_id=1, prediction="p-1")
    claims = signer.verify(token, project_id=keys["project_id"])
    assert not claims.expired() and claims.expired(now=time.time() + 2)
