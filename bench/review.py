"""Review queue benchmark on PostgreSQL.

Seeds N pending review items (default 1,000,000) in a throw-away database, then measures
the server time of "decide + claim next" (one transaction each, as the view runs them)
against a plain primary-key read of a review item in the same run, and finally the
keypress-to-next-item time a reviewer sees in headless Chromium.

    python bench/review.py [--items 1000000] [--rounds 400] [--browser-rounds 40]

Needs PostgreSQL (CORRIGENDA_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test)
and, for the browser part, /usr/bin/chromium. Loopback only; bounded in count and time.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg

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


def measure_server(engine, project, user, rounds: int) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        item = claim_next_item(session, project=project, user=user)
        max_id = session.execute(text("SELECT max(id) FROM review_item")).scalar_one()
    decide_next: list[float] = []
    pk_reads: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        with transaction(engine) as session:
            decide(session, item_id=item.id, user=user, action="keep_model", duration_ms=900)
            item = claim_next_item(session, project=project, user=user)
        decide_next.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        with transaction(engine) as session:
            session.get(ReviewItem, random.randint(1, max_id))
        pk_reads.append((time.perf_counter() - started) * 1000)
    report("decide + claim next", decide_next)
    report("primary-key read (baseline)", pk_reads)
    ratio50 = statistics.median(decide_next) / statistics.median(pk_reads)
    ratio95 = percentile(decide_next, 0.95) / percentile(pk_reads, 0.95)
    print(f"ratio decide+claim / pk read: p50 {ratio50:.1f}x, p95 {ratio95:.1f}x")


def report(label: str, values: list[float]) -> None:
    print(
        f"{label:32s} n={len(values)} p50={statistics.median(values):.2f} ms"
        f" p95={percentile(values, 0.95):.2f} ms max={max(values):.2f} ms"
    )


KEYPRESS_JS = """() => new Promise((resolve) => {
  const before = document.querySelector('#item').dataset.itemId;
  const started = performance.now();
  const observer = new MutationObserver(() => {
    const item = document.querySelector('#item');
    if (item && item.dataset.itemId !== before) {
      observer.disconnect();
      requestAnimationFrame(() => resolve(performance.now() - started));
    }
  });
  observer.observe(document.querySelector('#main'), {childList: true, subtree: true});
  document.dispatchEvent(new KeyboardEvent('keydown', {key: 'k', bubbles: true}));
})"""


def measure_browser(url: str, data_dir: Path, rounds: int) -> None:
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from webapp import create_app

    app = create_app({"database_url": url, "secret_key": "bench-secret-key", "data_dir": data_dir})
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
            times = [page.evaluate(KEYPRESS_JS) for _ in range(rounds)]
            browser.close()
        report("keypress to next item (Chromium)", times)
    finally:
        server.shutdown()
        app.extensions["corrigenda.engine"].dispose()


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
        if args.browser_rounds:
            measure_browser(url, Path("/tmp") / name, args.browser_rounds)
    finally:
        engine.dispose()
        drop_database(name)


if __name__ == "__main__":
    main()
