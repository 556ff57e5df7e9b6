"""The Python client against a real server on loopback: batches, retries, problem errors."""

from __future__ import annotations

import threading

import pytest
from werkzeug.wrappers import Request, Response

from corrigenda.client import ApiError, Client
from tests.browser.conftest import LiveServer
from tests.conftest import make_test_settings
from webapp import create_app

from .conftest import count_events, count_predictions, prediction


class RecordingClient(Client):
    """Records each backoff wait (and still waits for real)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.waits: list[float] = []

    def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        super()._sleep(seconds)


def test_log_predictions_and_send_feedback_in_batches(live_server, keys, engine) -> None:
    with Client(live_server.url, keys["sk"]) as client:
        logged = client.log_predictions([prediction(f"p-{i}") for i in range(25)], batch_size=10)
        assert [r["status"] for r in logged] == ["created"] * 25
        again = client.log_predictions([prediction("p-0")])
        assert again[0]["status"] == "unchanged"
        events = [{"prediction": f"p-{i}", "kind": "accept"} for i in range(25)]
        results = client.send_feedback(events, batch_size=7)
    assert [r["status"] for r in results] == ["accepted"] * 25
    assert count_predictions(engine) == 25 and count_events(engine) == 25


def test_api_error_carries_the_problem_document(live_server, keys) -> None:
    with Client(live_server.url, keys["sk"]) as client:
        with pytest.raises(ApiError) as caught:
            client.log_predictions([prediction(output="not-a-label")])
        assert caught.value.status == 422
        assert caught.value.errors[0]["path"] == "/predictions/0/output"
        assert "/predictions/0/output" in str(caught.value)
        client.log_predictions([prediction()])
        with pytest.raises(ApiError) as conflict:
            client.log_predictions([prediction(output="billing")])
        assert conflict.value.status == 409


def test_client_retries_429_honouring_retry_after(db_url, tmp_path, keys, engine) -> None:
    app = create_app(make_test_settings(db_url, tmp_path, rate_limit_per_key="2/second"))
    with LiveServer(app) as server, RecordingClient(server.url, keys["sk"]) as client:
        for i in range(4):
            client.log_predictions([prediction(f"p-{i}")])
    assert count_predictions(engine) == 4
    assert client.waits and all(0 <= wait <= 2 for wait in client.waits)
    app.extensions["corrigenda.engine"].dispose()


def test_client_retries_server_errors_then_succeeds(keys) -> None:
    failures = {"left": 2}
    lock = threading.Lock()

    @Request.application
    def flaky(request: Request) -> Response:
        with lock:
            if failures["left"]:
                failures["left"] -= 1
                return Response("busy", status=503, headers={"Retry-After": "0"})
        return Response(
            '{"predictions": [{"id": "p-1", "status": "created", "token": "t"}]}',
            mimetype="application/json",
            status=201,
        )

    with LiveServer(flaky) as server, RecordingClient(server.url, "sk_x", backoff=0.01) as client:
        assert client.log_prediction(prediction())["status"] == "created"
    assert client.waits == [0.0, 0.0]
