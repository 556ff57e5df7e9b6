"""Signed, retried webhook delivery (dataset versions ready or failed, metric alerts).

Each delivery is a JSON POST with three headers:

* ``Corrigenda-Event``: the event type, e.g. ``dataset.ready``;
* ``Corrigenda-Delivery``: a unique id, the same across retries, so receivers can dedupe;
* ``Corrigenda-Signature``: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``.

Receivers check the signature with :func:`verify_signature` (or the same three lines in
any language) and reject old timestamps, which stops replays.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Corrigenda-Signature"
EVENT_HEADER = "Corrigenda-Event"
DELIVERY_HEADER = "Corrigenda-Delivery"
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass
class DeliveryResult:
    delivered: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, *, tolerance_seconds: int = 300, now: float | None = None
) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and is at most ``tolerance`` old."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


def send_webhook(
    url: str,
    secret: str,
    event_type: str,
    payload: dict[str, Any],
    *,
    attempts: int = 4,
    timeout: float = 5.0,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult:
    """POST ``payload`` to ``url``, signed with ``secret``; retry transient failures.

    Retries on connection errors, timeouts and 408/425/429/5xx with exponential backoff
    (``backoff``, 2×, 4×…). Never raises: the result says whether it was delivered.
    """
    delivery_id = str(uuid.uuid4())
    body = orjson.dumps({"type": event_type, "id": delivery_id, "data": payload})
    result = DeliveryResult(delivered=False, attempts=0)
    with httpx.Client(timeout=timeout, follow_redirects=False) as http:
        for attempt in range(1, attempts + 1):
            result.attempts = attempt
            retry = _attempt(http, url, secret, event_type, delivery_id, body, result)
            if result.delivered or not retry:
                break
            if attempt < attempts:
                sleep(backoff * 2 ** (attempt - 1))
    if not result.delivered:
        log.warning("webhook %s to %s failed: %s", event_type, url, result.error)
    return result


def _attempt(
    http: httpx.Client,
    url: str,
    secret: str,
    event_type: str,
    delivery_id: str,
    body: bytes,
    result: DeliveryResult,
) -> bool:
    """One POST; fills ``result``; returns whether a failure is worth retrying."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "corrigenda-webhooks",
        EVENT_HEADER: event_type,
        DELIVERY_HEADER: delivery_id,
        SIGNATURE_HEADER: sign(secret, body, int(time.time())),
    }
    try:
        response = http.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return True
    result.status_code = response.status_code
    if 200 <= response.status_code < 300:
        result.delivered = True
        result.error = None
        return False
    result.error = f"HTTP {response.status_code}"
    return response.status_code in RETRYABLE_STATUSES
