"""Helpers for driving the review web app through Flask's test client."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from tests.factories import PASSWORD

TOKEN = re.compile(r'name="csrf-token" content="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    match = TOKEN.search(page)
    assert match, "page has no CSRF meta tag"
    return match.group(1)


def log_in(client: FlaskClient, email: str, password: str = PASSWORD) -> str:
    """Log in; returns the session's CSRF token for later POSTs."""
    token = csrf_token(client)
    response = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return csrf_token(client, "/review/")
