"""HTTP plumbing for the client (owned by the ingestion work)."""

from __future__ import annotations


class ApiError(Exception):
    """The server refused a request; carries the problem document."""


class HttpClient:
    def __init__(self, base_url: str, secret_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret_key = secret_key
