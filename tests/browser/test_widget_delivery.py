"""The widget on a foreign page (another origin, strict CSP, hostile CSS) against the real web
app: feedback arrives exactly once through offline spells, reloads, server errors and
timeouts; the host page never sees an error of ours; a refused origin is reported."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.browser.conftest import LiveServer
from tests.factories import setup_project_with_keys
from tests.services import wait_for
from tests.widget.host import (
    log_predictions,
    page_html,
    stored_events,
    widget_tag,
)

pytestmark = pytest.mark.browser

LABELS = ["billing", "bug", "feature", "account", "refund", "shipping", "security", "other"]
# Network failures the browser itself logs when we cut the connection on purpose.
NETWORK_NOISE = re.compile(r"Failed to load resource|net::ERR_|Failed to fetch|CORS policy")


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url  # one database is enough here; the API tests cover both


@pytest.fixture
def shop(app: Flask, host: tuple[LiveServer, dict[str, str]]) -> dict[str, Any]:
    engine = app.extensions["corrigenda.engine"]
    keys = setup_project_with_keys(
        engine, "shop", allowed_origins=[host[0].url], labels=LABELS, task_type="classification"
    )
    tokens = log_predictions(
        app.test_client(),
        keys["sk"],
        [
            {
                "id": "t-1",
                "input": {"text": "My invoice is wrong"},
                "output": "bug",
                "alternatives": [
                    {"label": "refund", "score": 0.2},
                    {"label": "billing", "score": 0.6},
                ],
            }
        ],
    )
    return {**keys, "engine": engine, "token": tokens["t-1"]}


class Console:
    """Everything the host page's console and error handler saw."""

    def __init__(self, page) -> None:  # type: ignore[no-untyped-def]
        self.errors: list[str] = []
        self.page_errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    def assert_clean(self, allow_network: bool = False) -> None:
        assert self.page_errors == []
        errors = [e for e in self.errors if not (allow_network and NETWORK_NOISE.search(e))]
        assert errors == []


def open_host(page, host, api, shop, widgets: str, **kw: Any) -> Console:  # type: ignore[no-untyped-def]
    server, pages = host
    pages["/"] = page_html(api[0].url, shop["pk"], widgets, **kw)
    console = Console(page)
    page.goto(server.url + "/")
    until(page, "() => customElements.get('corrigenda-feedback') !== undefined")
    return console


def until(page, script: str, arg: Any = None, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    """Poll a predicate in the page. (Playwright's wait_for_function evaluates strings with
    eval, which the host page's strict CSP rightly forbids.)"""
    wait_for(lambda: page.evaluate(script, arg), timeout, message=script)


def decisions(engine) -> list[Any]:  # type: ignore[no-untyped-def]
    return [e for e in stored_events(engine) if e.kind != "view"]


def state(page) -> str:  # type: ignore[no-untyped-def]
    return page.evaluate(
        "document.querySelector('corrigenda-feedback').shadowRoot.querySelector('.r').dataset.state"
    )


def wait_state(page, name: str) -> None:  # type: ignore[no-untyped-def]
    until(
        page,
        "n => document.querySelector('corrigenda-feedback').shadowRoot"
        ".querySelector('.r').dataset.state === n",
        name,
    )


def go_offline(page, api) -> None:  # type: ignore[no-untyped-def]
    # Chromium's offline emulation still lets loopback requests through, so also abort
    # every request to the Corrigenda server; and since beacons sent while a page unloads
    # escape request routing, the server side answers 503 (storing nothing) meanwhile.
    page.context.set_offline(True)
    page.context.route(f"{api[0].url}/api/**", lambda route: route.abort("internetdisconnected"))
    api[1].down = True


def go_online(page, api) -> None:  # type: ignore[no-untyped-def]
    api[1].down = False
    page.context.unroute(f"{api[0].url}/api/**")
    page.context.set_offline(False)


def assert_once(engine, expected: Counter) -> None:  # type: ignore[no-untyped-def]
    events = decisions(engine)
    assert len({e.event_id for e in events}) == len(events)
    assert Counter(e.kind for e in events) == expected


def test_keyboard_only_correction_is_stored_once_with_view_and_timing(
    page, host, api, shop, artifacts_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    integrity = api[0].server and _integrity(api[0].url)
    console = open_host(
        page,
        host,
        api,
        shop,
        widget_tag(
            shop["token"],
            "t-1",
            task_type="classification",
            labels=LABELS,
            output="bug",
            alternatives=["refund", "billing"],
        ),
        integrity=integrity,
    )
    wait_for(
        lambda: [e.kind for e in stored_events(shop["engine"])] == ["view"],
        20,
        message="a view event when the widget is on screen",
    )
    page.locator("corrigenda-feedback").screenshot(path=artifacts_dir / "widget-idle.png")

    # Tab from the host's own button into the widget: Yes, then No.
    page.focus("#host-button")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.localName") == "corrigenda-feedback"
    page.keyboard.press("Enter")
    finder = page.get_by_role("searchbox", name="Filter labels")
    finder.wait_for()
    options = page.locator("corrigenda-feedback .o button")
    assert options.all_inner_texts()[:2] == ["refund", "billing"], "top-k alternatives first"
    assert "bug" not in options.all_inner_texts(), "the rejected output is not offered"
    page.keyboard.type("sec")
    assert [b for b in options.all() if b.is_visible()][0].inner_text() == "security"
    page.locator("corrigenda-feedback").screenshot(path=artifacts_dir / "widget-label-picker.png")
    page.keyboard.press("Enter")  # picks the first match
    page.keyboard.press("Tab")  # to the comment box
    page.keyboard.type("it is a hack attempt")
    page.keyboard.press("Tab")  # Send
    page.keyboard.press("Enter")
    wait_state(page, "saved")
    assert page.get_by_role("status").inner_text() == "Saved, thank you"
    page.locator("corrigenda-feedback").screenshot(path=artifacts_dir / "widget-saved.png")

    (event,) = decisions(shop["engine"])
    assert (event.kind, event.value, event.comment) == (
        "correct",
        "security",
        "it is a hack attempt",
    )
    assert event.time_to_decision_ms is not None and event.time_to_decision_ms > 0
    assert event.session_id and event.origin == host[0].url
    log = page.evaluate("window.hostLog")
    assert [e["type"] for e in log if e["type"] != "corrigenda:error"].count(
        "corrigenda:feedback"
    ) == 2
    assert any(e["type"] == "corrigenda:sent" for e in log)
    assert page.evaluate("localStorage.length") == 0, "nothing left in the queue"
    _assert_style_isolated(page)
    console.assert_clean()


def _integrity(api_url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(api_url + "/widget.js.sri") as response:  # loopback only
        return response.read().decode().strip()


def _assert_style_isolated(page) -> None:  # type: ignore[no-untyped-def]
    style = page.evaluate(
        """() => { const b = document.querySelector('corrigenda-feedback').shadowRoot
             .querySelector('button'); const s = getComputedStyle(b);
           return [s.fontSize, s.backgroundColor, s.marginTop]; }"""
    )
    assert style[0] == "14px" and style[1] != "rgb(0, 255, 0)" and style[2] == "0px"


def test_offline_then_online_delivers_exactly_once(page, host, api, shop, artifacts_dir) -> None:  # type: ignore[no-untyped-def]
    console = open_host(
        page,
        host,
        api,
        shop,
        widget_tag(shop["token"], "t-1", task_type="classification", labels=LABELS, output="bug"),
    )
    go_offline(page, api)
    page.get_by_role("button", name="Yes").click()
    wait_state(page, "retry")
    page.locator("corrigenda-feedback").screenshot(path=artifacts_dir / "widget-retrying.png")
    assert decisions(shop["engine"]) == []
    assert "accept" in page.evaluate("localStorage.getItem(Object.keys(localStorage)[0])")
    go_online(page, api)  # fires `online`: the widget flushes at once
    wait_state(page, "saved")
    page.evaluate("Corrigenda.flush()")
    assert_once(shop["engine"], Counter(accept=1))
    assert page.evaluate("window.hostTicks") > 0
    console.assert_clean(allow_network=True)


def test_reload_while_offline_resumes_on_the_next_load(page, host, api, shop) -> None:  # type: ignore[no-untyped-def]
    tag = widget_tag(shop["token"], "t-1", task_type="classification", labels=LABELS, output="bug")
    console = open_host(page, host, api, shop, tag)
    go_offline(page, api)
    page.get_by_role("button", name="No").click()
    page.get_by_role("button", name="billing").click()
    page.get_by_role("button", name="Send").click()
    wait_state(page, "retry")
    try:
        page.reload()
    except Exception:  # noqa: BLE001 - offline reloads fail before the error page shows
        pass
    page.wait_for_load_state()
    assert decisions(shop["engine"]) == [], "nothing may have slipped out while offline"
    go_online(page, api)
    page.goto(host[0].url + "/")
    wait_for(lambda: len(decisions(shop["engine"])) == 1, 20, message="resumed after reload")
    until(page, "() => localStorage.length === 0")
    assert_once(shop["engine"], Counter(correct=1))
    assert decisions(shop["engine"])[0].value == "billing"
    console.assert_clean(allow_network=True)


def test_server_errors_and_a_timeout_still_deliver_exactly_once(page, host, api, shop) -> None:  # type: ignore[no-untyped-def]
    faults = api[1]
    console = open_host(
        page,
        host,
        api,
        shop,
        widget_tag(shop["token"], "t-1", task_type="classification", labels=LABELS, output="bug"),
    )
    wait_for(lambda: len(stored_events(shop["engine"])) == 1, 20, message="the view event")
    faults.fail_next, faults.stall_next = 2, 1
    page.get_by_role("button", name="Yes").click()
    # 503, 503 (Retry-After: 1), then a request that outlives the 1.5 s client timeout.
    wait_for(lambda: faults.seen_posts >= 4, 30, message="retried after 503s and a stall")
    until(page, "() => window.hostLog.some(e => e.detail && e.detail.code === 'network')")
    assert state(page) == "retry"
    faults.release.set()  # the stalled request now stores the event; the retry is a duplicate
    wait_state(page, "saved")
    assert_once(shop["engine"], Counter(accept=1))
    errors = [
        e["detail"] for e in page.evaluate("window.hostLog") if e["type"] == "corrigenda:error"
    ]
    assert {e["code"] for e in errors} >= {"http", "network"}
    assert any(e.get("status") == 503 and e["retryInMs"] >= 1000 for e in errors), "Retry-After"
    console.assert_clean(allow_network=True)


def test_host_keeps_working_when_the_server_is_down(page, host, api, shop) -> None:  # type: ignore[no-untyped-def]
    console = open_host(
        page,
        host,
        api,
        shop,
        widget_tag(shop["token"], "t-1", task_type="classification", labels=LABELS, output="bug"),
    )
    until(page, "() => window.hostLog.some(e => e.type === 'corrigenda:sent')")
    api[0].server.shutdown()  # the Corrigenda server goes away
    ticks = page.evaluate("window.hostTicks")
    page.get_by_role("button", name="Yes").click()
    wait_state(page, "retry")
    page.click("#host-button")
    assert page.get_attribute("#host-button", "data-clicked") == "yes"
    until(page, "t => window.hostTicks > t + 5", ticks)
    assert page.evaluate("typeof Corrigenda.flush") == "function"
    assert page.evaluate("Corrigenda.flush()") is False, "flush resolves false, never throws"
    console.assert_clean(allow_network=True)


def test_page_on_an_origin_that_is_not_allowed_is_refused(page, host, api, app) -> None:  # type: ignore[no-untyped-def]
    engine = app.extensions["corrigenda.engine"]
    keys = setup_project_with_keys(engine, "other", allowed_origins=["https://elsewhere.example"])
    token = log_predictions(
        app.test_client(), keys["sk"], [{"id": "o-1", "input": {"text": "hi"}, "output": "bug"}]
    )["o-1"]
    shop = {"pk": keys["pk"]}
    console = open_host(
        page,
        host,
        api,
        shop,
        widget_tag(token, "o-1", task_type="classification", labels=["bug", "other"], output="bug"),
    )
    page.get_by_role("button", name="Yes").click()
    until(
        page,
        "() => window.hostLog.some(e => e.type === 'corrigenda:error'"
        " && e.detail.code === 'network')",
    )
    assert stored_events(engine) == []
    assert page.evaluate("window.hostTicks") > 0
    console.assert_clean(allow_network=True)
