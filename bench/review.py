"""Review queue benchmark on PostgreSQL.

Seeds N pending review items (default 1,000,000) in a throw-away database, then measures
the server time of "decide + claim next" against a plain primary-key read of a review item
in the same run, twice: the domain calls alone (one transaction, as the decide view runs
them) and the whole htmx request in the Flask app (guard, decide, claim, item context,
rendering), with the SQL statements each one sends. Finally the keypress-to-next-item time
a reviewer sees in headless Chromium (a real key press, until the next item is painted).

    python bench/review.py [--items 1000000] [--rounds 400] [--browser-rounds 40]

Needs PostgreSQL (CORRIGENDA_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test)
and, for the browser part, /usr/bin/chromium. Loopback only; bounded in count and time.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from corrigenda.db import make_engine, transaction  # noqa: E402
from corrigenda.decisions import decide  # noqa: E402
from corrigenda.models import ReviewItem, metadata  # noqa: E402
from corrigenda.projects import create_project  # noqa: E402
from corrigenda.review import claim_next_item  # noqa: E402
from corrigenda.users import create_user, grant_role  # noqa: E402

ADMIN_URL = os.environ.get(
    "CORRIGENDA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
PASSWORD = "bench password 1"


def create_database() -> tuple[str, str]:
    name = f"corrigenda_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name, ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(engine, items: int):  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        project = create_project(session, slug="bench", labels=["billing", "bug", "other"])
        project.policy = {**project.policy, "gold_rate": 0}
        session.add(project)
        user = create_user(session, email="bench@example.com", password=PASSWORD)
        grant_role(session, user=user, project=project, role="reviewer")
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO prediction (project_id, client_id, model_version, input, output,"
                " confidence, segment, created_at) SELECT :p, 'c' || g, 'v1',"
                " jsonb_build_object('text', 'ticket number ' || g), '\"bug\"'::jsonb,"
                " random(), '{}'::jsonb, now() FROM generate_series(1, :n) g"
            ),
            {"p": project.id, "n": items},
        )
        connection.execute(
            text(
                "INSERT INTO review_item (project_id, prediction_id, reason, priority, status,"
                " required_reviews, needs_adjudication, created_at, updated_at)"
                " SELECT project_id, id, 'conflict', random(), 'pending', 1, false, now(), now()"
                " FROM prediction WHERE project_id = :p"
            ),
            {"p": project.id},
        )
    with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as connection:
        connection.execute(text("VACUUM ANALYZE review_item"))
        connection.execute(text("VACUUM ANALYZE prediction"))
    print(f"seeded {items:,} pending items in {time.perf_counter() - started:.1f} s")
    return project, user


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class StatementCounter:
    """Counts the SQL statements an engine sends (COMMIT is not a statement here)."""

    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *_args) -> None:  # type: ignore[no-untyped-def]
        self.count += 1


def pk_read(engine, max_id: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    with transaction(engine) as session:
        session.get(ReviewItem, random.randint(1, max_id))
    return (time.perf_counter() - started) * 1000


def measure_server(engine, project, user, rounds: int) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        item = claim_next_item(session, project=project, user=user)
        max_id = session.execute(text("SELECT max(id) FROM review_item")).scalar_one()
    counter = StatementCounter(engine)
    decide_next: list[float] = []
    statements: list[int] = []
    pk_reads: list[float] = []
    for _ in range(rounds):
        counter.count = 0
        started = time.perf_counter()
        with transaction(engine) as session:
            decide(
                session,
                item_id=item.id,
                user=user,
                action="keep_model",
                duration_ms=900,
                project=project,
            )
            item = claim_next_item(session, project=project, user=user)
        decide_next.append((time.perf_counter() - started) * 1000)
        statements.append(counter.count)
        pk_reads.append(pk_read(engine, max_id))
    explain_pick(engine, project, user)
    report("decide + claim next (domain)", decide_next, statements)
    report("primary-key read (baseline)", pk_reads)
    print_ratio("decide+claim / pk read", decide_next, pk_reads)


def explain_pick(engine, project, user) -> None:  # type: ignore[no-untyped-def]
    """The plan of the queue pick after the rounds (rolled back): it must walk an index."""
    from corrigenda.review import _pending_for

    pick = _pending_for(project.id, user.id)
    sql = str(pick.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection, connection.begin() as outer:
        plan = connection.execute(text(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}")).scalars()
        print("pick plan:", " | ".join(line.strip() for line in plan))
        outer.rollback()


def print_ratio(label: str, values: list[float], baseline: list[float]) -> None:
    ratio50 = statistics.median(values) / statistics.median(baseline)
    ratio95 = percentile(values, 0.95) / percentile(baseline, 0.95)
    print(f"ratio {label}: p50 {ratio50:.1f}x, p95 {ratio95:.1f}x")


def measure_request(app, engine, rounds: int) -> None:  # type: ignore[no-untyped-def]
    """The decide view end to end in the app (no network): what the server spends per key."""
    client = app.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))
    client.post(
        "/login", data={"email": "bench@example.com", "password": PASSWORD, "csrf_token": token}
    )
    page = client.get("/review/bench").get_data(as_text=True)
    token, item_id = csrf_of(page), item_of(page)
    max_id = int(item_id) * 2
    counter = StatementCounter(app.extensions["corrigenda.engine"])
    times: list[float] = []
    statements: list[int] = []
    pk_reads: list[float] = []
    headers = {"HX-Request": "true", "X-CSRFToken": token}
    for _ in range(rounds):
        counter.count = 0
        started = time.perf_counter()
        response = client.post(
            f"/review/bench/items/{item_id}/decide",
            data={"action": "keep_model", "duration_ms": "900"},
            headers=headers,
        )
        times.append((time.perf_counter() - started) * 1000)
        statements.append(counter.count)
        assert response.status_code == 200 and "data-saved" in response.get_data(as_text=True)
        item_id = item_of(response.get_data(as_text=True))
        pk_reads.append(pk_read(engine, max_id))
    report("decide + next, htmx request", times, statements)
    report("primary-key read (baseline)", pk_reads)
    print_ratio("request / pk read", times, pk_reads)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf[-_]token" (?:content|value)="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def item_of(html: str) -> str:
    return html.split('data-item-id="', 1)[1].split('"', 1)[0]


def report(label: str, values: list[float], statements: list[int] | None = None) -> None:
    sent = f" statements={min(statements)}-{max(statements)}" if statements else ""
    print(
        f"{label:32s} n={len(values)} p50={statistics.median(values):.2f} ms"
        f" p95={percentile(values, 0.95):.2f} ms max={max(values):.2f} ms{sent}"
    )


# Armed before each real key press: from the keydown event to the frame after the next
# item is in the page (requestAnimationFrame + a macrotask ~ the paint).
ARM_JS = """() => {
  const before = document.querySelector('#item').dataset.itemId;
  window.__nextItem = new Promise((resolve) => {
    let pressed = null;
    const onKey = (e) => { pressed = e.timeStamp; };
    document.addEventListener('keydown', onKey, {capture: true, once: true});
    const observer = new MutationObserver(() => {
      const item = document.querySelector('#item');
      if (item && item.dataset.itemId && item.dataset.itemId !== before) {
        observer.disconnect();
        requestAnimationFrame(() => setTimeout(() => resolve(performance.now() - pressed)));
      }
    });
    const watch = {childList: true, subtree: true, attributes: true};
    observer.observe(document.querySelector('#main'), watch);
  });
}"""


def make_app(url: str, data_dir: Path):  # type: ignore[no-untyped-def]
    from webapp import create_app

    return create_app({"database_url": url, "secret_key": "bench-secret-key", "data_dir": data_dir})


def measure_browser(app, rounds: int) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--headless", "--no-sandbox", "--disable-gpu"],
            )
            page = browser.new_page()
            page.goto(f"{base}/login?next=/review/bench")
            page.fill("input[name=email]", "bench@example.com")
            page.fill("input[name=password]", PASSWORD)
            page.keyboard.press("Enter")
            page.wait_for_selector("#item[data-item-id]")
            page.wait_for_load_state("load")
            navigations: list[str] = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url))
            times = []
            for _ in range(rounds):
                page.evaluate(ARM_JS)
                page.keyboard.press("k")
                times.append(page.evaluate("window.__nextItem"))
            browser.close()
        report("keypress to next item (Chromium)", times)
        print(f"full page loads during the key presses: {len(navigations)}")
    finally:
        server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--browser-rounds", type=int, default=40)
    args = parser.parse_args()
    name, url = create_database()
    engine = make_engine(url)
    try:
        metadata.create_all(engine)
        project, user = seed(engine, args.items)
        measure_server(engine, project, user, args.rounds)
        app = make_app(url, Path("/tmp") / name)
        try:
            measure_request(app, engine, args.rounds)
            if args.browser_rounds:
                measure_browser(app, args.browser_rounds)
        finally:
            app.extensions["corrigenda.engine"].dispose()
    finally:
        engine.dispose()
        drop_database(name)


if __name__ == "__main__":
    main()
