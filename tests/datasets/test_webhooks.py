from __future__ import annotations

import orjson
import pytest

from corrigenda.webhooks import SIGNATURE_HEADER, send_webhook, verify_signature
from tests.datasets.receiver import Receiver


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def test_delivery_is_signed_and_verifiable(receiver: Receiver) -> None:
    result = send_webhook(receiver.url, "s3cret", "dataset.ready", {"number": 3})
    assert result.delivered and result.attempts == 1
    (delivery,) = receiver.deliveries
    assert delivery.headers["Corrigenda-Event"] == "dataset.ready"
    assert orjson.loads(delivery.body)["data"] == {"number": 3}
    header = delivery.headers[SIGNATURE_HEADER]
    assert verify_signature("s3cret", header, delivery.body)
    assert not verify_signature("other", header, delivery.body)
    assert not verify_signature("s3cret", header, delivery.body + b" ")


def test_old_signature_is_refused(receiver: Receiver) -> None:
    send_webhook(receiver.url, "k", "x", {})
    delivery = receiver.deliveries[0]
    header = delivery.headers[SIGNATURE_HEADER]
    timestamp = int(header.split(",")[0][2:])
    assert not verify_signature("k", header, delivery.body, now=timestamp + 3600)


def test_transient_failures_are_retried_with_same_delivery_id(receiver: Receiver) -> None:
    receiver.statuses = [503, 500]
    waits: list[float] = []
    result = send_webhook(receiver.url, "k", "dataset.failed", {}, sleep=waits.append)
    assert result.delivered and result.attempts == 3
    assert waits == [0.5, 1.0]
    ids = {d.headers["Corrigenda-Delivery"] for d in receiver.deliveries}
    assert len(ids) == 1 and len(receiver.deliveries) == 3


def test_client_errors_are_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [400]
    result = send_webhook(receiver.url, "k", "x", {}, sleep=lambda _: None)
    assert not result.delivered and result.attempts == 1 and result.status_code == 400


def test_unreachable_receiver_gives_up_without_raising() -> None:
    result = send_webhook("http://127.0.0.1:9/hook", "k", "x", {}, attempts=2, sleep=lambda _: None)
    assert not result.delivered and result.attempts == 2 and result.error
