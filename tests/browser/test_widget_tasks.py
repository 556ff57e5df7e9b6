"""Each task type's interaction, the flag, translation, dark mode and contrast — in Chromium,
on the same hostile foreign page, against the real API (context fetched when attributes are
missing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.browser.test_widget_delivery import (  # noqa: F401 - fixtures
    Console,
    db_url,
    decisions,
    until,
    wait_state,
)
from tests.factories import setup_project_with_keys
from tests.widget.host import log_predictions, page_html, widget_tag

pytestmark = pytest.mark.browser

CONTRAST_JS = """() => {
  const root = document.querySelector('corrigenda-feedback').shadowRoot;
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => {
    const [r, g, b] = rgb(c).map((v) => { v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05); };
  const bg = getComputedStyle(root.querySelector('.r')).backgroundColor;
  return [...root.querySelectorAll('.q, button, .s, textarea, input, .h')]
    .filter((el) => el.getClientRects().length)
    .map((el) => { const s = getComputedStyle(el);
      const own = s.backgroundColor === 'rgba(0, 0, 0, 0)' ? bg : s.backgroundColor;
      return [el.className || el.localName, ratio(s.color, own)]; });
}"""


def project(app: Flask, host_url: str, task_type: str, labels: list[str]) -> dict[str, Any]:
    engine = app.extensions["corrigenda.engine"]
    keys = setup_project_with_keys(
        engine, task_type, allowed_origins=[host_url], labels=labels, task_type=task_type
    )
    return {**keys, "engine": engine}


def show(page, host, api, pk: str, widgets: str, lang: str = "en") -> Console:  # type: ignore[no-untyped-def]
    host[1]["/"] = page_html(api[0].url, pk, widgets, lang=lang)
    console = Console(page)
    page.goto(host[0].url + "/")
    until(page, "() => customElements.get('corrigenda-feedback') !== undefined")
    return console


def shoot(page, artifacts_dir: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    page.locator("corrigenda-feedback").screenshot(path=artifacts_dir / f"widget-{name}.png")


def test_text_edit_is_prefilled_and_sends_the_corrected_text(
    page, host, api, app, artifacts_dir
) -> None:  # type: ignore[no-untyped-def]
    shop = project(app, host[0].url, "text", [])
    token = log_predictions(
        app.test_client(), shop["sk"], [{"id": "a-1", "input": {"text": "q"}, "output": "Paris"}]
    )["a-1"]
    console = show(
        page, host, api, shop["pk"], widget_tag(token, "a-1", task_type="text", output="Paris")
    )
    page.get_by_role("button", name="No").click()
    box = page.get_by_role("textbox", name="Correct the text")
    assert box.input_value() == "Paris"
    box.fill("Paris, France")
    shoot(page, artifacts_dir, "text-edit")
    page.get_by_role("button", name="Send").click()
    wait_state(page, "saved")
    (event,) = decisions(shop["engine"])
    assert (event.kind, event.value) == ("correct", "Paris, France")
    console.assert_clean()


def test_multilabel_toggles_with_labels_from_the_server_in_french(page, host, api, app) -> None:  # type: ignore[no-untyped-def]
    shop = project(app, host[0].url, "multilabel", ["urgent", "billing", "legal"])
    token = log_predictions(
        app.test_client(),
        shop["sk"],
        [{"id": "m-1", "input": {"text": "q"}, "output": ["urgent", "billing"]}],
    )["m-1"]
    # No task type, labels or output on the element: the widget asks the API for them.
    console = show(page, host, api, shop["pk"], widget_tag(token, "m-1"), lang="fr")
    assert page.get_by_role("status").count() == 1
    page.get_by_role("button", name="Non").click()
    urgent = page.get_by_role("button", name="urgent")
    assert urgent.get_attribute("aria-pressed") == "true", "pre-set to the model's output"
    assert page.get_by_role("button", name="legal").get_attribute("aria-pressed") == "false"
    urgent.click()
    page.get_by_role("button", name="legal").click()
    page.get_by_role("button", name="Envoyer").click()
    wait_state(page, "saved")
    assert page.get_by_role("status").inner_text() == "Enregistré, merci"
    (event,) = decisions(shop["engine"])
    assert (event.kind, sorted(event.value)) == ("correct", ["billing", "legal"])
    console.assert_clean()


def test_flag_with_a_comment_and_escape_closes_the_panel(page, host, api, app) -> None:  # type: ignore[no-untyped-def]
    shop = project(app, host[0].url, "classification", ["ok", "spam"])
    token = log_predictions(
        app.test_client(), shop["sk"], [{"id": "f-1", "input": {"text": "q"}, "output": "ok"}]
    )["f-1"]
    tag = widget_tag(token, "f-1", task_type="classification", labels=["ok", "spam"], output="ok")
    console = show(page, host, api, shop["pk"], tag)
    report = page.get_by_role("button", name="Report")
    report.click()
    assert report.get_attribute("aria-expanded") == "true"
    page.keyboard.press("Escape")
    assert report.get_attribute("aria-expanded") == "false"
    assert page.evaluate("document.activeElement.shadowRoot.activeElement.textContent") == "Report"
    report.click()
    page.get_by_role("textbox", name="Comment (optional)").fill("offensive wording")
    page.get_by_role("button", name="Send").click()
    wait_state(page, "saved")
    (event,) = decisions(shop["engine"])
    assert (event.kind, event.comment) == ("flag", "offensive wording")
    console.assert_clean()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_default_theme_meets_wcag_aa_contrast(
    browser, host, api, app, scheme, artifacts_dir
) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(color_scheme=scheme, reduced_motion="reduce")
    page = context.new_page()
    try:
        shop = project(app, host[0].url, "classification", ["ok", "spam"])
        token = log_predictions(
            app.test_client(), shop["sk"], [{"id": "c-1", "input": {"text": "q"}, "output": "ok"}]
        )["c-1"]
        tag = widget_tag(
            token, "c-1", task_type="classification", labels=["ok", "spam"], output="ok"
        )
        console = show(page, host, api, shop["pk"], tag)
        page.get_by_role("button", name="No").click()
        page.get_by_role("button", name="spam").click()
        page.get_by_role("button", name="Send").click()
        wait_state(page, "saved")
        shoot(page, artifacts_dir, f"{scheme}-mode")
        ratios = page.evaluate(CONTRAST_JS)
        assert len(ratios) >= 4
        low = [(name, round(r, 2)) for name, r in ratios if r < 4.5]
        assert low == [], f"below 4.5:1 in {scheme} mode"
        transition = page.evaluate(
            "getComputedStyle(document.querySelector('corrigenda-feedback').shadowRoot"
            ".querySelector('button')).transitionDuration"
        )
        assert transition == "0s", "no motion when the user asks for reduced motion"
        console.assert_clean()
    finally:
        context.close()
