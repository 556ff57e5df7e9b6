"""HTTP plumbing for the Python client: one place for auth, retries and errors.

Feature mixins (``ingest.py``, ``datasets.py``) call two methods:

- ``self._request(method, path, **kw) -> httpx.Response`` sends with the secret key, retries
  429 / 5xx / connection errors with exponential backoff (honouring ``Retry-After``), and
  raises ``ApiError`` for any other non-2xx answer. ``kw`` goes to ``httpx.Client.request``
  (``json=``, ``params=``, ``content=``, ``headers=``, ``timeout=``).
- ``self._json(method, path, **kw) -> Any`` is the same, returning the decoded JSON body.

Only use them for idempotent requests (every Corrigenda write is: predictions and events
carry their own ids), since a retried request may have reached the server the first time.
"""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ApiError(Exception):
    """The server refused a request. ``problem`` is its RFC 9457 problem document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.title = str(problem.get("title") or f"HTTP {status}")
        self.detail = problem.get("detail")
        self.errors: list[dict[str, str]] = list(problem.get("errors") or [])
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = f"{self.status} {self.title}"
        if self.detail:
            text += f": {self.detail}"
        for error in self.errors[:5]:
            text += f"\n  {error.get('path')}: {error.get('message')}"
        if len(self.errors) > 5:
            text += f"\n  … and {len(self.errors) - 5} more"
        return text


class HttpClient:
    """Base of ``Client``: holds the connection pool, the key and the retry policy."""

    def __init__(
        self,
        base_url: str,
        secret_key: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret_key = secret_key
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {secret_key}", "User-Agent": "corrigenda-client"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send; retry 429/5xx/connection errors; raise ApiError on other failures."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError:
                if attempt >= self.max_retries:
                    raise
                self._sleep(self._delay(attempt, None))
                attempt += 1
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                self._sleep(self._delay(attempt, response.headers.get("Retry-After")))
                attempt += 1
                continue
            if response.is_success:
                return response
            raise ApiError(response.status_code, _problem_of(response))

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """``_request`` returning the decoded JSON body."""
        return self._request(method, path, **kwargs).json()

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait: the server's Retry-After if given, else jittered exponential."""
        hinted = _parse_retry_after(retry_after)
        if hinted is not None:
            return min(hinted, self.max_backoff)
        return min(self.backoff * (2**attempt), self.max_backoff) * random.uniform(0.5, 1.0)

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)  # a hook, so callers (and tests) can observe the waits


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _problem_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {
        "title": response.reason_phrase,
        "status": response.status_code,
        "detail": response.text[:500],
    }
