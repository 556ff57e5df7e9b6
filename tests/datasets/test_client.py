"""The Python client and the ``corrigenda export`` CLI against a live server, with the
versions built by the real in-process worker (embedded) or a real Celery worker."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from flask import Flask

from corrigenda.cli import main
from corrigenda.client import Client
from corrigenda.db import transaction
from corrigenda.models import Project
from corrigenda.webhooks import verify_signature
from tests.browser.conftest import LiveServer
from tests.conftest import make_test_settings, worker_env
from tests.datasets.conftest import add_examples
from tests.datasets.receiver import Receiver
from tests.factories import setup_project_with_keys
from tests.services import CeleryWorkerProcess, wait_for
from webapp import create_app
from workers.embedded import EmbeddedWorker


@pytest.fixture
def served(app: Flask) -> Iterator[tuple[LiveServer, dict]]:
    engine = app.extensions["corrigenda.engine"]
    keys = setup_project_with_keys(engine)
    add_examples(engine, keys["project_id"], 30)
    worker = EmbeddedWorker(engine, interval=0.2)
    worker.start()
    with LiveServer(app) as server:
        yield server, keys
    worker.stop()
    worker.join(10)


def test_client_creates_downloads_and_streams(served, tmp_path: Path) -> None:
    server, keys = served
    with Client(server.url, keys["sk"]) as client:
        version = client.create_dataset("demo", formats=["jsonl", "parquet"], timeout=60)
        assert version["status"] == "ready"
        folder = client.download("demo", version["number"], tmp_path / "out")
        manifest = orjson.loads((folder / "manifest.json").read_bytes())
        for entry in manifest["files"]:
            data = (folder / entry["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]

        # A truncated file is resumed by range request and still verified.
        target = folder / manifest["files"][0]["path"]
        target.write_bytes(target.read_bytes()[:7])
        client.download("demo", version["number"], tmp_path / "out")
        assert hashlib.sha256(target.read_bytes()).hexdigest() == manifest["files"][0]["sha256"]

        wait_for(lambda: len(list(client.iter_examples("demo", limit=7))) == 30, timeout=30)
        rows = list(client.iter_examples("demo", limit=7))
        assert len({r["id"] for r in rows}) == 30
        assert list(client.iter_examples("demo", since=rows[-1]["cursor"])) == []
        assert [v["number"] for v in client.list_datasets("demo")] == [1]


def test_cli_export_commands(served, tmp_path: Path) -> None:
    server, keys = served
    runner = CliRunner()
    base = ["export", "--url", server.url, "--key", keys["sk"], "--project", "demo"]
    created = runner.invoke(main, [*base, "create", "--format", "csv", "--format", "jsonl"])
    assert created.exit_code == 0, created.output
    assert "version 1: ready" in created.output
    listed = runner.invoke(main, [*base, "list"])
    assert listed.output.startswith("v1\tready")
    downloaded = runner.invoke(
        main, [*base, "download", "1", "--dest", str(tmp_path), "--format", "csv"]
    )
    assert downloaded.exit_code == 0, (downloaded.output, downloaded.exception)
    assert list((tmp_path / "demo-v1" / "csv").glob("*.csv"))
    cursor_file = tmp_path / "cursor"

    def streamed_all() -> bool:
        result = runner.invoke(main, [*base, "stream", "--cursor-file", str(cursor_file)])
        assert result.exit_code == 0, result.output
        return (
            cursor_file.exists()
            and cursor_file.read_text() != "0"
            and "30 examples" in result.output
        )

    wait_for(streamed_all, timeout=30)
    again = runner.invoke(main, [*base, "stream", "--cursor-file", str(cursor_file)])
    assert "0 examples" in again.output  # resumed after the saved cursor
    bad = runner.invoke(main, [*base, "create", "--filter", '{"min_agreement": 5}'])
    assert bad.exit_code == 1 and "/filter/min_agreement" in bad.output


def test_celery_worker_builds_and_signs_the_webhook(
    pg_url: str, redis_url: str, celery_queue: str, tmp_path: Path
) -> None:
    receiver = Receiver().start()
    settings = make_test_settings(
        pg_url,
        tmp_path,
        redis_url=redis_url,
        celery_queue=celery_queue,
        data_dir=tmp_path / "worker-data",
    )
    app = create_app(settings)
    engine = app.extensions["corrigenda.engine"]
    keys = setup_project_with_keys(engine)
    with transaction(engine) as session:
        project = session.get(Project, keys["project_id"])
        project.webhook_url, project.webhook_secret = receiver.url, "whsec"
    add_examples(engine, keys["project_id"], 12)
    worker = CeleryWorkerProcess(
        worker_env(pg_url, redis_url, celery_queue, tmp_path), "dsw"
    ).start()
    try:
        client = app.test_client()
        answer = client.post(
            "/api/v1/projects/demo/datasets",
            json={"formats": ["jsonl"]},
            headers={"Authorization": f"Bearer {keys['sk']}"},
        )
        assert answer.status_code == 202
        wait_for(lambda: len(receiver.deliveries) == 1, timeout=60, message="no webhook")
    finally:
        worker.stop()
        receiver.stop()
        engine.dispose()
    delivery = receiver.deliveries[0]
    assert delivery.headers["Corrigenda-Event"] == "dataset.ready"
    assert verify_signature("whsec", delivery.headers["Corrigenda-Signature"], delivery.body)
    payload = orjson.loads(delivery.body)["data"]
    assert payload["number"] == 1 and sum(payload["counts"].values()) == 12
