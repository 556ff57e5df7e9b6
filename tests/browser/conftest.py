"""Real headless Chromium (Debian's package) driven by Playwright, and live servers on loopback."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from tests.services import unavailable
from tests.widget.host import Faults, host_app

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def chromium_path() -> str | None:
    return os.environ.get("CORRIGENDA_CHROMIUM") or shutil.which("chromium")


class LiveServer:
    """A WSGI app served from a background thread on 127.0.0.1 and a free port."""

    def __init__(self, app: Flask | object) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)  # type: ignore[arg-type]
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


# The widget's API and a host page on another origin (the widget tests' two servers).
@pytest.fixture
def api(app: Flask) -> Iterator[tuple[LiveServer, Faults]]:
    faults = Faults(app.wsgi_app)
    app.wsgi_app = faults  # type: ignore[method-assign]
    with LiveServer(app) as server:
        yield server, faults


@pytest.fixture
def host(api: tuple[LiveServer, Faults]) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    wsgi, pages = host_app(api[0].url)
    with LiveServer(wsgi) as server:
        yield server, pages


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    path = chromium_path()
    if not path:
        unavailable("Chromium (/usr/bin/chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator[object]:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
