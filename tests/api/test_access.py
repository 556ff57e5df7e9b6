"""Keys, scopes, origins (CORS), rate limits and body limits on the ingestion API."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from sqlmodel import Session, select

from corrigenda.db import transaction
from corrigenda.keys import find_active_key, revoke_api_key
from corrigenda.models import ApiKey
from tests.conftest import make_test_settings
from webapp import create_app
from webapp.api.limits import RedisCounters, Window

from .conftest import ORIGIN, count_events, count_predictions, event, log, pk, prediction, sk

PREDICTIONS = "/api/v1/predictions"
FEEDBACK = "/api/v1/feedback"


def test_missing_and_unknown_keys_are_401(client, keys) -> None:
    missing = client.post(PREDICTIONS, json=prediction())
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.mimetype == "application/problem+json"
    unknown = client.post(PREDICTIONS, json=prediction(), headers={"Authorization": "Bearer sk_x"})
    assert unknown.status_code == 401


def test_revoked_key_is_refused(db_url, tmp_path, engine, keys) -> None:
    app = create_app(make_test_settings(db_url, tmp_path))
    client = app.test_client()
    assert client.post(PREDICTIONS, json=prediction(), headers=sk(keys)).status_code == 201
    with transaction(engine) as session:
        revoke_api_key(session, key=find_active_key(session, keys["sk"]))
    app.extensions["corrigenda.key_cache"].forget()  # or wait API_KEY_CACHE_SECONDS
    refused = client.post(PREDICTIONS, json=prediction("p-2"), headers=sk(keys))
    assert refused.status_code == 401 and count_predictions(engine) == 1
    app.extensions["corrigenda.engine"].dispose()


def test_publishable_key_can_never_log_predictions(client, keys, engine) -> None:
    response = client.post(PREDICTIONS, json=prediction(), headers=pk(keys))
    assert response.status_code == 403 and "secret key" in response.json["detail"]
    assert count_predictions(engine) == 0


@pytest.mark.parametrize("origin", [None, "http://evil.example", "null", "http://127.0.0.1:5051"])
def test_publishable_key_from_a_wrong_or_missing_origin(client, keys, engine, origin) -> None:
    token = log(client, keys)
    response = client.post(FEEDBACK, json=event(token=token), headers=pk(keys, origin))
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    assert count_events(engine) == 0


def test_origin_comparison_ignores_case_and_trailing_slash(client, keys) -> None:
    token = log(client, keys)
    response = client.post(FEEDBACK, json=event(token=token), headers=pk(keys, ORIGIN.upper()))
    assert response.status_code == 202


def test_preflight_only_for_allowed_origins(client, keys) -> None:
    asks = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    ok = client.options(FEEDBACK, headers={**asks, "Origin": ORIGIN})
    assert ok.status_code == 204 and ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "authorization" in ok.headers["Access-Control-Allow-Headers"].lower()
    evil = client.options(FEEDBACK, headers={**asks, "Origin": "http://evil.example"})
    assert evil.status_code == 403 and "Access-Control-Allow-Origin" not in evil.headers
    keyed = client.options(f"{FEEDBACK}?key={keys['pk']}", headers={**asks, "Origin": ORIGIN})
    assert keyed.status_code == 204
    secret_only = client.options(PREDICTIONS, headers={**asks, "Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in secret_only.headers


def test_preflight_by_key_refuses_another_projects_origin(client, engine, keys) -> None:
    from tests.factories import setup_project_with_keys

    other = setup_project_with_keys(engine, "other", allowed_origins=["https://other.example"])
    asks = {"Access-Control-Request-Method": "POST", "Origin": "https://other.example"}
    assert client.options(f"{FEEDBACK}?key={keys['pk']}", headers=asks).status_code == 403
    assert client.options(f"{FEEDBACK}?key={other['pk']}", headers=asks).status_code == 204
    # Without a key the origin is listed by some project, so the preflight passes, but the
    # real request with this project's key from that origin is refused.
    assert client.options(FEEDBACK, headers=asks).status_code == 204
    token = log(client, keys)
    real = client.post(FEEDBACK, json=event(token=token), headers=pk(keys, "https://other.example"))
    assert real.status_code == 403


def _limited_app(db_url, tmp_path, **overrides):  # type: ignore[no-untyped-def]
    return create_app(make_test_settings(db_url, tmp_path, **overrides))


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_rate_limit_per_key_answers_429_with_retry_after(
    request, db_url, tmp_path, keys, storage
) -> None:
    overrides = {"rate_limit_per_key": "3/minute"}
    if storage == "redis":
        overrides["redis_url"] = request.getfixturevalue("redis_url")
    app = _limited_app(db_url, tmp_path, **overrides)
    client = app.test_client()
    answers = [
        client.post(PREDICTIONS, json=prediction(f"p-{i}"), headers=sk(keys)) for i in range(4)
    ]
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    limited = answers[-1]
    assert limited.mimetype == "application/problem+json"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert "Retry-After" not in answers[0].headers
    app.extensions["corrigenda.engine"].dispose()


def test_rate_limit_per_address(db_url, tmp_path, keys) -> None:
    app = _limited_app(db_url, tmp_path, rate_limit_per_address="2/minute")
    client = app.test_client()
    codes = [
        client.post(PREDICTIONS, json=prediction(f"p-{i}"), headers=sk(keys)).status_code
        for i in range(3)
    ]
    assert codes == [201, 201, 429]
    app.extensions["corrigenda.engine"].dispose()


@pytest.mark.redis
def test_redis_counters_shared_by_processes_never_admit_more_than_the_limit(redis_url) -> None:
    """Two processes' counters on one Redis window, reserving in blocks: together they admit
    at most the limit, and refuse early by no more than the last small blocks left unused."""
    key = f"corrigenda:test:rl:{uuid.uuid4().hex}:key:k:1000/60:{int(time.time()) + 3600}"
    window = [Window(key, 1000, 60)]
    processes = [RedisCounters(redis_url), RedisCounters(redis_url)]
    now = time.time()
    admitted = [0, 0]
    for n in range(1200):
        which = 0 if n % 3 else 1  # uneven traffic
        (count,) = processes[which].hit(window, now)
        admitted[which] += count <= 1000
    assert 1000 - 2 * 4 <= sum(admitted) <= 1000
    assert min(admitted) > 0
    total = int(redis.Redis.from_url(redis_url).get(key) or 0)
    assert total >= 1200 - 2 * RedisCounters.MAX_BLOCK  # refused requests are counted too
    redis.Redis.from_url(redis_url).delete(key)


@pytest.mark.redis
def test_small_limits_are_counted_one_request_at_a_time(redis_url) -> None:
    key = f"corrigenda:test:rl:{uuid.uuid4().hex}:key:k:20/60:{int(time.time()) + 3600}"
    counters = RedisCounters(redis_url)
    store = redis.Redis.from_url(redis_url)
    for n in range(1, 6):
        assert counters.hit([Window(key, 20, 60)], time.time()) == [n]
        assert int(store.get(key) or 0) == n  # nothing reserved ahead
    store.delete(key)


def test_body_over_the_limit_is_413(db_url, tmp_path, keys, engine) -> None:
    app = _limited_app(db_url, tmp_path, max_request_bytes=10_000)
    client = app.test_client()
    batch = {"predictions": [prediction(f"p-{i}") for i in range(200)]}
    response = client.post(PREDICTIONS, json=batch, headers=sk(keys))
    assert response.status_code == 413 and response.mimetype == "application/problem+json"
    assert count_predictions(engine) == 0
    app.extensions["corrigenda.engine"].dispose()


def test_unknown_route_and_wrong_method_are_problems(client) -> None:
    assert client.get("/api/v1/nope").mimetype == "application/problem+json"
    wrong = client.get(PREDICTIONS)
    assert wrong.status_code == 405 and "POST" in wrong.headers["Allow"]
    assert wrong.mimetype == "application/problem+json"


def test_last_used_is_written_once_per_minute_not_per_request(client, keys, engine) -> None:
    for i in range(5):
        client.post(PREDICTIONS, json=prediction(f"p-{i}"), headers=sk(keys))
    with Session(engine) as session:
        first = session.exec(select(ApiKey.last_used_at).where(ApiKey.kind == "secret")).one()
    assert first is not None
    client.post(PREDICTIONS, json=prediction("p-9"), headers=sk(keys))
    with Session(engine) as session:
        later = session.exec(select(ApiKey.last_used_at).where(ApiKey.kind == "secret")).one()
    assert later == first


def test_a_same_origin_page_may_use_a_publishable_key_without_origin(client, keys) -> None:  # type: ignore[no-untyped-def]
    """A widget on a page this server serves (e.g. the demo) sends GETs without Origin; the
    browser marks them same-origin, and that origin must still be on the project's list."""
    token = log(client, keys)
    path = f"/api/v1/feedback/context?token={token}&key={keys['pk']}"
    same_origin = {"Sec-Fetch-Site": "same-origin"}
    allowed = client.get(path, headers=same_origin, base_url=ORIGIN)
    assert allowed.status_code == 200, allowed.get_data(as_text=True)
    assert allowed.get_json()["prediction"] == "p-1"
    unlisted = client.get(path, headers=same_origin, base_url="http://elsewhere.example")
    assert unlisted.status_code == 403
    assert client.get(path, base_url=ORIGIN).status_code == 403  # not marked same-origin
