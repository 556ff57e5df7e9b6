"""A reviewer in real Chromium: log in, claim, decide by keyboard only, undo, cluster action,
shortcut overlay."""

from __future__ import annotations

import pytest
from sqlmodel import select

from corrigenda.db import transaction
from corrigenda.models import Decision, Example, ReviewItem
from tests.factories import PASSWORD, make_prediction, make_project, make_user
from tests.review.conftest import make_event, make_review_item

pytestmark = pytest.mark.browser


def _seed(app):  # type: ignore[no-untyped-def]
    with transaction(app.extensions["corrigenda.engine"]) as session:
        project = make_project(session)
        project.policy = {**project.policy, "gold_rate": 0}
        session.add(project)
        make_user(session, project, email="rev@example.com")
        first = make_prediction(
            session, project, "p1", input={"text": "Refund <b>now</b>"}, cluster_id=9
        )
        make_event(session, first, value="billing", comment="<script>window.pwned=1</script>")
        twin = make_prediction(session, project, "p2", input={"text": "Refund now!"}, cluster_id=9)
        lone = make_prediction(session, project, "p3", input={"text": "App crashes"})
        items = [
            make_review_item(session, project, p, priority=3 - i)
            for i, p in enumerate((first, twin, lone))
        ]
        return [i.id for i in items], [first.id, twin.id, lone.id]


def _showing(page, item_id: int) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector(f'#item[data-item-id="{item_id}"]', timeout=10_000)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_review_by_keyboard_only(app, live_server, page, artifacts_dir) -> None:  # type: ignore[no-untyped-def]
    (first, twin, lone), predictions = _seed(app)
    page.goto(f"{live_server.url}/login?next=/review/demo")
    page.keyboard.type("rev@example.com")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    _showing(page, first)
    assert page.evaluate("window.pwned") is None
    assert "<script>window.pwned=1</script>" in page.inner_text("[data-opinions]")

    page.keyboard.press("?")
    page.wait_for_selector("dialog[data-shortcuts][open]")
    page.screenshot(path=str(artifacts_dir / "review-shortcuts.png"))
    page.keyboard.press("Escape")
    page.wait_for_selector("dialog[data-shortcuts]:not([open])", state="attached")

    page.keyboard.press("a")  # accept the user's correction
    _showing(page, twin)
    page.keyboard.press("u")  # undo: the first item comes back
    _showing(page, first)

    page.keyboard.press("c")  # apply to the near-duplicates...
    assert page.is_checked("input[name=cluster]")
    page.keyboard.press("2")  # ...with label 2 ("bug")
    _showing(page, lone)
    page.screenshot(path=str(artifacts_dir / "review-queue.png"), full_page=True)
    page.keyboard.press("k")  # keep the model's output
    page.wait_for_selector("[data-queue-empty]")

    with transaction(app.extensions["corrigenda.engine"]) as session:
        examples = {e.prediction_id: e for e in session.exec(select(Example))}
        actions = [d.action for d in session.exec(select(Decision).order_by(Decision.id))]
        statuses = {i.id: i.status for i in session.exec(select(ReviewItem))}
        durations = [d.duration_ms for d in session.exec(select(Decision))]
    assert [examples[p].target for p in predictions] == ["bug", "bug", "bug"]
    assert all(examples[p].deleted_at is None for p in predictions)
    assert actions == ["accept_correction", "undo", "relabel", "relabel", "keep_model"]
    assert set(statuses.values()) == {"done"}
    assert all(d is not None and d >= 0 for d in durations if d is not None)


RAPID_KEYS_JS = """() => new Promise((resolve) => {
  // Press K the moment each new item is in the DOM, before htmx's settle step runs.
  const seen = new Set([document.querySelector('#item').dataset.itemId]);
  const observer = new MutationObserver(() => {
    const item = document.querySelector('#item');
    if (!item) return;
    if (item.querySelector('[data-queue-empty]')) {
      observer.disconnect();
      resolve(seen.size);
      return;
    }
    if (!seen.has(item.dataset.itemId)) {
      seen.add(item.dataset.itemId);
      document.dispatchEvent(new KeyboardEvent('keydown', {key: 'k', bubbles: true}));
    }
  });
  const options = {childList: true, subtree: true, attributes: true};
  observer.observe(document.querySelector('#main'), options);
  document.dispatchEvent(new KeyboardEvent('keydown', {key: 'k', bubbles: true}));
})"""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_keys_pressed_right_after_a_swap_stay_in_page(app, live_server, page) -> None:  # type: ignore[no-untyped-def]
    """A key pressed the instant the next item appears swaps in place, no full page load."""
    (first, _, _), _ = _seed(app)
    page.goto(f"{live_server.url}/login?next=/review/demo")
    page.fill("input[name=email]", "rev@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.keyboard.press("Enter")
    _showing(page, first)
    page.wait_for_load_state("load")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    assert page.evaluate(RAPID_KEYS_JS) == 3
    assert navigations == []
    with transaction(app.extensions["corrigenda.engine"]) as session:
        actions = [d.action for d in session.exec(select(Decision))]
    assert actions == ["keep_model"] * 3
