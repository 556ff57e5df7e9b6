"""Main-thread time the widget adds to a page load, in headless Chromium.

Serves the built widget from the real web app and a host page (another origin) with three
<corrigenda-feedback> elements, then loads the page N times with the widget and N times
without it (interleaved, same run). For each load it reads, once the widgets are rendered:

- main-thread busy time (Chromium's Performance domain: TaskDuration, ScriptDuration);
- the Performance API's navigation timing (loadEventEnd).

Prints medians and the with/without difference and ratio. Loopback only; ~20 s.

    /work/venv/bin/python bench/widget_load.py [--loads 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
from pathlib import Path

from flask import Flask
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from corrigenda.db import make_engine
from corrigenda.models import metadata
from webapp import create_app

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

WIDGETS = [
    'prediction="p1" task-type="classification" labels="a,b,c" output="a"',
    'prediction="p2" task-type="text" output="hello"',
    'prediction="p3" task-type="multilabel" labels="a,b" output="a"',
]
BODY = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>bench</title>'
    "{script}</head><body><h1>Answers</h1>"
    + "".join(f"<p>Answer</p><corrigenda-feedback {w}></corrigenda-feedback>" for w in WIDGETS)
    + "</body></html>"
)
TWO_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
WIDGETS_READY = (
    "() => [...document.querySelectorAll('corrigenda-feedback')].every(e => e.shadowRoot)"
)


class LiveServer:
    """A WSGI app on 127.0.0.1 and a free port, served from a thread."""

    def __init__(self, app: Flask) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


def host(api_url: str) -> Flask:
    app = Flask("bench_host")
    script = f'<script src="{api_url}/widget.js" data-key="pk_bench" async></script>'

    @app.get("/with")
    def with_widget() -> str:
        return BODY.format(script=script)

    @app.get("/without")
    def without_widget() -> str:
        return BODY.format(script="")

    @app.get("/favicon.ico")
    def favicon() -> tuple[str, int]:
        return "", 204

    return app


def measure(page, cdp, url: str, with_widget: bool) -> dict[str, float]:  # type: ignore[no-untyped-def]
    page.goto("about:blank")
    before = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    # An async script delays the load event, so at "load" the widget has run and upgraded
    # its elements; two animation frames more include their style, layout and paint.
    page.goto(url, wait_until="load")
    page.evaluate(TWO_FRAMES)
    if with_widget:
        assert page.evaluate(WIDGETS_READY)
    after = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    load = page.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventEnd")
    return {
        "task_ms": (after["TaskDuration"] - before["TaskDuration"]) * 1000,
        "script_ms": (after["ScriptDuration"] - before["ScriptDuration"]) * 1000,
        "load_ms": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", type=int, default=15)
    loads = parser.parse_args().loads
    data = Path(tempfile.mkdtemp())
    url = f"sqlite:///{data / 'bench.db'}"
    engine = make_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    api = create_app({"database_url": url, "data_dir": data, "secret_key": "bench" * 8})
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    with LiveServer(api) as api_server, LiveServer(host(api_server.url)) as host_server:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            context = browser.new_context()
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable")
            measure(page, cdp, f"{host_server.url}/with", True)  # warm caches once
            for _ in range(loads):
                for with_widget in (False, True):
                    path = "/with" if with_widget else "/without"
                    results[with_widget].append(
                        measure(page, cdp, host_server.url + path, with_widget)
                    )
            browser.close()
    shutil.rmtree(data, ignore_errors=True)
    report(results, loads)


def report(results: dict[bool, list[dict[str, float]]], loads: int) -> None:
    def median(with_widget: bool, key: str) -> float:
        return statistics.median(r[key] for r in results[with_widget])

    print(f"{loads} loads each, interleaved, medians; three widgets on the page")
    print(f"{'metric':<34}{'without':>10}{'with':>10}{'added':>10}{'ratio':>8}")
    for key, name in [
        ("task_ms", "main-thread busy time (ms)"),
        ("script_ms", "script execution time (ms)"),
        ("load_ms", "loadEventEnd (ms)"),
    ]:
        a, b = median(False, key), median(True, key)
        print(f"{name:<34}{a:>10.1f}{b:>10.1f}{b - a:>10.1f}{b / a if a else 0:>8.2f}")


if __name__ == "__main__":
    main()
