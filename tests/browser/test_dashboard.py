"""The dashboard in real Chromium: log in, read the charts, filter with htmx, acknowledge."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from corrigenda.db import make_engine, transaction
from corrigenda.metrics.jobs import update_metrics
from corrigenda.models import Example, FeedbackEvent, MetricAlert, Prediction, ReviewItem
from tests.factories import PASSWORD, make_project, make_user

pytestmark = pytest.mark.browser
START = date(2025, 3, 1)
LABELS = ["billing", "bug", "feature", "other"]


def seed(db_url: str) -> None:
    """Two model versions over ten days, 40 shown predictions a day each, half audited."""
    rng = random.Random(3)
    engine = make_engine(db_url)
    with transaction(engine) as s:
        project = make_project(s, "support", name="Support triage")
        project.policy = {
            **project.policy,
            "requirement": {"metric": "audited_accuracy", "threshold": 0.8, "min_n": 300},
        }
        make_user(s, project, role="viewer", email="pm@example.com")
        for offset in range(10):
            day = START + timedelta(days=offset)
            stamp = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
            for version, error_rate in (("v1", 0.25), ("v2", 0.12 + 0.01 * offset)):
                for i in range(40):
                    _one(s, project, rng, version, error_rate, stamp, f"{version}-{day}-{i}")
        s.add(
            MetricAlert(
                project_id=project.id,
                kind="override_rise",
                model_version="v2",
                day=START + timedelta(days=9),
                observed=0.3,
                baseline=0.15,
                p_value=0.0004,
                message="Override rate of v2 rose to 30.0% on 2025-03-10",
            )
        )
    update_metrics(engine)
    engine.dispose()


def _one(s, project, rng, version, error_rate, stamp, client_id) -> None:  # type: ignore[no-untyped-def]
    truth = rng.choice(LABELS)
    wrong = rng.random() < error_rate
    output = rng.choice([label for label in LABELS if label != truth]) if wrong else truth
    locale = rng.choice(["de", "en", "fr"])
    p = Prediction(
        project_id=project.id,
        client_id=client_id,
        model_version=version,
        output=output,
        confidence=rng.random(),
        segment={"locale": locale},
        input={"text": f"ticket {client_id} about {truth}"},
        created_at=stamp,
    )
    s.add(p)
    s.flush()
    kind = "correct" if wrong and rng.random() < 0.7 else rng.choice(["view", "accept"])
    s.add(
        FeedbackEvent(
            event_id=uuid.uuid4(),
            project_id=project.id,
            prediction_id=p.id,
            kind=kind,
            end_user="u",
            client_time=stamp,
            time_to_decision_ms=rng.randint(800, 9000),
        )
    )
    if rng.random() < 0.5:
        s.add(ReviewItem(project_id=project.id, prediction_id=p.id, reason="audit", status="done"))
        s.add(
            Example(
                project_id=project.id,
                prediction_id=p.id,
                input=p.input,
                target=truth,
                model_output=output,
                source="reviewed",
                seq=p.id,
            )
        )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_dashboard_in_chromium(db_url, live_server, page, artifacts_dir) -> None:  # type: ignore[no-untyped-def]
    seed(db_url)
    page.goto(f"{live_server.url}/login?next=/dashboard/support")
    page.fill("input[name=email]", "pm@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard/support")
    assert page.locator("svg.chart").count() == 4
    assert page.locator("svg.chart polygon.band").count() >= 2  # interval bands drawn
    assert page.locator(".dash-requirement .verdict").inner_text() in (
        "PASS",
        "FAIL",
        "NOT YET KNOWN",
    )
    assert page.locator("svg.heatmap rect").count() == 16
    page.screenshot(path=str(artifacts_dir / "dashboard.png"), full_page=True)

    # htmx: choosing a segment swaps only the results and pushes the URL.
    page.select_option("select[name=segment]", "locale:de")
    page.wait_for_url("**segment=locale%3Ade**")
    page.wait_for_function("document.querySelector('#dash-results') !== null")
    assert page.locator("h1").count() == 1

    page.click("text=Acknowledge")
    page.wait_for_selector(".dash-alert.acknowledged")
    page.screenshot(path=str(artifacts_dir / "dashboard-filtered.png"), full_page=True)
