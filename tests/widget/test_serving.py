"""The web app serves the built widget with safe caching, an ETag, CORS and its SRI hash."""

from __future__ import annotations

import base64
import hashlib

import pytest
from flask.testing import FlaskClient

from webapp.widget import WIDGET_PATH


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url  # serving a file does not depend on the database


def test_widget_js_is_the_built_file_with_a_short_cache_and_cors(client: FlaskClient) -> None:
    response = client.get("/widget.js", headers={"Origin": "http://shop.example"})
    assert response.status_code == 200
    assert response.data == WIDGET_PATH.read_bytes()
    assert response.mimetype == "text/javascript"
    assert "max-age=300" in response.headers["Cache-Control"]
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["ETag"]


def test_etag_revalidation_answers_304_without_a_body(client: FlaskClient) -> None:
    etag = client.get("/widget.js").headers["ETag"]
    again = client.get("/widget.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""


def test_hashed_url_is_immutable_and_a_stale_hash_is_404(client: FlaskClient) -> None:
    sri = client.get("/widget.js.sri")
    hashed = sri.headers["X-Widget-Url"]
    digest = hashlib.sha256(WIDGET_PATH.read_bytes()).hexdigest()[:16]
    assert hashed == f"/widget.{digest}.js"
    assert client.get("/widget.js").headers["Link"] == f'<{hashed}>; rel="canonical"'
    response = client.get(hashed)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.data == WIDGET_PATH.read_bytes()
    assert client.get("/widget.0000000000000000.js").status_code == 404


def test_sri_value_matches_the_served_bytes(client: FlaskClient) -> None:
    body = client.get("/widget.js").data
    expected = "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()
    assert client.get("/widget.js.sri").get_data(as_text=True).strip() == expected


def test_built_widget_is_within_the_size_budget() -> None:
    import gzip

    assert len(gzip.compress(WIDGET_PATH.read_bytes(), compresslevel=9)) <= 6 * 1024


def test_docs_show_the_current_sri_hash(client: FlaskClient) -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "widget.md").read_text()
    assert client.get("/widget.js.sri").get_data(as_text=True).strip() in docs
