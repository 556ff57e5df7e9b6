"""A host page on another origin for the widget's browser tests: strict CSP (no inline script
or style, Trusted Types required), aggressive CSS of its own, and a script that keeps ticking
and records every corrigenda:* event it hears."""

from __future__ import annotations

import html
import json
import threading
from typing import Any

from flask import Flask
from sqlmodel import Session, select

from corrigenda.models import FeedbackEvent

HOST_CSS = """
* { font-size: 31px !important; color: #f0f !important; background: #ff0 !important;
    border: 5px dotted red !important; margin: 9px !important; font-family: serif !important; }
button { background: lime !important; padding: 30px !important; }
corrigenda-feedback { --corrigenda-radius: 4px; }
"""

HOST_JS = """
window.hostLog = [];
window.hostTicks = 0;
setInterval(function () { window.hostTicks += 1; }, 50);
['corrigenda:feedback', 'corrigenda:sent', 'corrigenda:error'].forEach(function (name) {
  document.addEventListener(name, function (e) {
    window.hostLog.push({ type: name, detail: e.detail });
  });
});
document.addEventListener('DOMContentLoaded', function () {
  var b = document.getElementById('host-button');
  if (b) b.addEventListener('click', function () { b.dataset.clicked = 'yes'; });
});
"""


def host_app(api_url: str) -> tuple[Flask, dict[str, str]]:
    """The host site; put page bodies into the returned dict under a path ("/", "/x")."""
    app = Flask("corrigenda_widget_host")
    pages: dict[str, str] = {}
    csp = (
        "default-src 'none'; "
        f"script-src 'self' {api_url}; style-src 'self'; connect-src {api_url}; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; "
        "require-trusted-types-for 'script'"
    )

    @app.get("/", defaults={"path": ""})
    @app.get("/<path:path>")
    def page(path: str):  # type: ignore[no-untyped-def]
        if path == "host.css":
            return HOST_CSS, 200, {"Content-Type": "text/css"}
        if path == "host.js":
            return HOST_JS, 200, {"Content-Type": "text/javascript"}
        if path == "favicon.ico":
            return "", 204
        body = pages.get("/" + path)
        if body is None:
            return "not found", 404
        return body, 200, {"Content-Type": "text/html", "Content-Security-Policy": csp}

    return app, pages


def page_html(
    api_url: str,
    key: str,
    widgets: str,
    *,
    integrity: str | None = None,
    extra: str = "",
    lang: str = "en",
) -> str:
    sri = f' integrity="{integrity}" crossorigin="anonymous"' if integrity else ""
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>Host</title>
<link rel="stylesheet" href="/host.css">
<script src="/host.js"></script>
<script src="{api_url}/widget.js" data-key="{html.escape(key)}" data-timeout="1500"{extra}
 async{sri}></script>
</head><body>
<h1>Support ticket</h1>
<p>My invoice is wrong</p>
<button id="host-button" type="button">Host button</button>
{widgets}
</body></html>"""


def widget_tag(token: str, prediction: str, **attrs: Any) -> str:
    parts = [f'prediction="{html.escape(prediction)}"', f'token="{html.escape(token)}"']
    for name, value in attrs.items():
        text = value if isinstance(value, str) else json.dumps(value)
        parts.append(f'{name.replace("_", "-")}="{html.escape(text)}"')
    return f"<corrigenda-feedback {' '.join(parts)}></corrigenda-feedback>"


def log_predictions(client, secret: str, predictions: list[dict[str, Any]]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Log through the real API with the secret key; return {client id: feedback token}."""
    response = client.post(
        "/api/v1/predictions",
        json={"predictions": predictions},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code in (200, 201, 202), response.get_data(as_text=True)
    return {p["id"]: p["token"] for p in response.get_json()["predictions"]}


def stored_events(engine) -> list[FeedbackEvent]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return list(session.exec(select(FeedbackEvent).order_by(FeedbackEvent.id)))


class Faults:
    """WSGI middleware in front of the real app: fail or stall feedback POSTs on demand."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.fail_next = 0
        self.down = False
        self.stall_next = 0
        self.release = threading.Event()
        self.seen_posts = 0
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        is_post = (
            environ["REQUEST_METHOD"] == "POST" and environ.get("PATH_INFO") == "/api/v1/feedback"
        )
        if is_post:
            with self.lock:
                self.seen_posts += 1
                fail = self.down or self.fail_next > 0
                stall = not fail and self.stall_next > 0
                if fail and not self.down:
                    self.fail_next -= 1
                if stall:
                    self.stall_next -= 1
            origin = environ.get("HTTP_ORIGIN", "*")
            if fail:
                start_response(
                    "503 Service Unavailable",
                    [
                        ("Retry-After", "1"),
                        ("Access-Control-Allow-Origin", origin),
                        ("Content-Type", "text/plain"),
                    ],
                )
                return [b"down for maintenance"]
            if stall:
                # Past the widget's timeout, then store for real: the client gave up, so it
                # will send the same events again and the server must see a duplicate.
                self.release.wait(10)
        return self.app(environ, start_response)
