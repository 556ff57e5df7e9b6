"""The dataset and example-stream endpoints, end to end through the Flask app."""

from __future__ import annotations

import hashlib

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import select

from corrigenda.datasets import build_pending
from corrigenda.db import transaction
from corrigenda.models import AuditLog, DatasetVersion
from tests.datasets.conftest import add_examples
from tests.factories import setup_project_with_keys
from tests.services import wait_for


@pytest.fixture
def keys(app: Flask) -> dict:
    engine = app.extensions["corrigenda.engine"]
    keys = setup_project_with_keys(engine)
    add_examples(engine, keys["project_id"], 25)
    return keys


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create(client: FlaskClient, keys: dict, body: dict) -> object:
    return client.post("/api/v1/projects/demo/datasets", json=body, headers=auth(keys["sk"]))


def build_all(app: Flask) -> None:
    build_pending(
        app.extensions["corrigenda.engine"], app.extensions["corrigenda.settings"].data_dir
    )


def test_create_poll_download_with_etag_and_range(
    app: Flask, client: FlaskClient, keys: dict
) -> None:
    answer = create(
        client, keys, {"formats": ["jsonl", "parquet"], "filter": {"sources": ["reviewed"]}}
    )
    assert answer.status_code == 202
    url = answer.headers["Location"]
    assert answer.json["status"] == "pending" and answer.json["url"] == url
    build_all(app)  # what the embedded worker's periodic job does

    version = client.get(url, headers=auth(keys["sk"])).json
    assert version["status"] == "ready" and version["progress"] == 1.0
    file = next(f for f in version["files"] if f["path"].startswith("jsonl/train"))
    whole = client.get(file["url"], headers=auth(keys["sk"]))
    assert whole.status_code == 200
    assert hashlib.sha256(whole.data).hexdigest() == file["sha256"]
    assert whole.headers["ETag"] == f'"{file["sha256"]}"'
    assert all(orjson.loads(line)["source"] == "reviewed" for line in whole.data.splitlines())

    again = client.get(
        file["url"], headers={**auth(keys["sk"]), "If-None-Match": whole.headers["ETag"]}
    )
    assert again.status_code == 304
    part = client.get(file["url"], headers={**auth(keys["sk"]), "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.data == whole.data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(whole.data)}"

    manifest = client.get(version["manifest_url"], headers=auth(keys["sk"])).json
    assert manifest["number"] == 1 and manifest["filter"] == {"sources": ["reviewed"]}
    sheet = client.get(version["datasheet_url"], headers=auth(keys["sk"]))
    assert sheet.mimetype == "text/markdown" and b"dataset version 1" in sheet.data
    listing = client.get("/api/v1/projects/demo/datasets", headers=auth(keys["sk"])).json
    assert [d["number"] for d in listing["datasets"]] == [1]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"formats": ["jsonl", "xml"]}, "/formats/1"),
        ({"formats": ["chat"]}, "/formats/0"),
        ({"filter": {"min_agreement": 2}}, "/filter/min_agreement"),
        ({"filter": {"sources": ["robots"]}}, "/filter/sources/0"),
        ({"filter": {"colour": "red"}}, "/filter/colour"),
    ],
)
def test_bad_requests_name_the_field_and_store_nothing(
    app: Flask, client: FlaskClient, keys: dict, body: dict, path: str
) -> None:
    answer = create(client, keys, body)
    assert answer.status_code == 422
    assert answer.mimetype == "application/problem+json"
    assert path in [e["path"] for e in answer.json["errors"]]
    with transaction(app.extensions["corrigenda.engine"]) as session:
        assert session.exec(select(DatasetVersion)).all() == []


def test_keys_guard_every_route(client: FlaskClient, keys: dict) -> None:
    base = "/api/v1/projects/demo"
    routes = [
        ("get", f"{base}/datasets"),
        ("post", f"{base}/datasets"),
        ("get", f"{base}/datasets/1"),
        ("delete", f"{base}/datasets/1"),
        ("get", f"{base}/examples"),
    ]
    for method, url in routes:
        assert getattr(client, method)(url).status_code == 401
        assert getattr(client, method)(url, headers=auth(keys["pk"])).status_code == 403
    assert (
        client.get(
            f"{base.replace('demo', 'other')}/examples", headers=auth(keys["sk"])
        ).status_code
        == 404
    )


def test_not_ready_versions_refuse_downloads(client: FlaskClient, keys: dict) -> None:
    url = create(client, keys, {}).headers["Location"]
    answer = client.get(f"{url}/manifest", headers=auth(keys["sk"]))
    assert answer.status_code == 409 and answer.json["type"].endswith("not-ready")


def test_delete_removes_files_and_is_audited(app: Flask, client: FlaskClient, keys: dict) -> None:
    url = create(client, keys, {"formats": ["jsonl"]}).headers["Location"]
    build_all(app)
    file_url = client.get(url, headers=auth(keys["sk"])).json["files"][0]["url"]
    assert client.delete(url, headers=auth(keys["sk"])).status_code == 204
    assert client.get(url, headers=auth(keys["sk"])).status_code == 404
    assert client.get(file_url, headers=auth(keys["sk"])).status_code == 404
    assert not (
        app.extensions["corrigenda.settings"].data_dir / "datasets" / "demo" / "v1"
    ).exists()
    with transaction(app.extensions["corrigenda.engine"]) as session:
        (entry,) = session.exec(select(AuditLog).where(AuditLog.action == "dataset.delete")).all()
    assert entry.after["status"] == "deleted" and entry.actor.startswith("api_key:")


def test_stream_pages_by_cursor_as_jsonl(client: FlaskClient, keys: dict) -> None:
    seen: list[dict] = []
    cursor = "0"

    def next_page() -> bool:
        # On PostgreSQL the stream lags while any writing transaction in the cluster is open.
        nonlocal cursor
        url = f"/api/v1/projects/demo/examples?since={cursor}&limit=10"
        answer = client.get(url, headers=auth(keys["sk"]))
        assert answer.status_code == 200 and answer.mimetype == "application/x-ndjson"
        seen.extend(orjson.loads(line) for line in answer.data.splitlines())
        cursor = answer.headers["Corrigenda-Next-Cursor"]
        return len(seen) >= 25 and answer.headers["Corrigenda-Has-More"] == "false"

    wait_for(next_page, timeout=30)
    assert len({r["id"] for r in seen}) == len(seen) == 25
    assert seen[-1]["cursor"] == cursor
    assert all(r["split"] in ("train", "validation", "test") for r in seen)


def test_stream_rejects_bad_cursor_and_limit(client: FlaskClient, keys: dict) -> None:
    for query, path in (("since=abc", "/since"), ("limit=0", "/limit"), ("limit=100000", "/limit")):
        answer = client.get(f"/api/v1/projects/demo/examples?{query}", headers=auth(keys["sk"]))
        assert answer.status_code == 422 and answer.json["errors"][0]["path"] == path
