"""The dashboard pages, their guards and alert acknowledgement, through the real app."""

from __future__ import annotations

from sqlmodel import Session, select

from corrigenda.db import transaction
from corrigenda.models import MetricAlert, Project
from tests.factories import PASSWORD

from .conftest import csrf_from, log_in


def test_dashboard_needs_a_member(client, known) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/dashboard/ka").status_code in (302, 401)
    log_in(client, "outsider@example.com", PASSWORD)
    assert client.get("/dashboard/ka").status_code == 404


def test_dashboard_page_and_fragment(client, known) -> None:  # type: ignore[no-untyped-def]
    log_in(client, "viewer@example.com", PASSWORD)
    page = client.get("/dashboard/ka")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<svg" in html and "<html" in html
    assert "NOT YET KNOWN" in html and "v2-cand" in html
    assert "40.0 %" in html  # override rate 2/5
    assert "bug</strong> → should be <strong>billing" in html
    fragment = client.get("/dashboard/ka?segment=locale:de", headers={"HX-Request": "true"})
    body = fragment.get_data(as_text=True)
    assert "HX-Request" in fragment.headers["Vary"]
    assert "<html" not in body and 'id="dash-results"' in body
    assert client.get("/dashboard/").status_code == 200
    assert "ka" in client.get("/dashboard/").get_data(as_text=True)


def test_small_cells_say_not_enough_data(client, known, engine) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as s:
        project = s.get(Project, known["project_id"])
        project.policy = {**project.policy, "min_cell_size": 20}  # type: ignore[union-attr]
    log_in(client, "viewer@example.com", PASSWORD)
    html = client.get("/dashboard/ka").get_data(as_text=True)
    assert "not enough data" in html and "40.0 %" not in html


def test_acknowledging_an_alert(client, known, engine) -> None:  # type: ignore[no-untyped-def]
    log_in(client, "viewer@example.com", PASSWORD)
    token = csrf_from(client.get("/dashboard/ka").get_data(as_text=True))
    with Session(engine) as s:
        alert_id = s.exec(select(MetricAlert.id)).one()
    url = f"/dashboard/ka/alerts/{alert_id}/acknowledge"
    assert client.post(url, headers={"HX-Request": "true"}).status_code == 400  # no CSRF token
    response = client.post(url, headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 200 and "acknowledged" in response.get_data(as_text=True)
    with Session(engine) as s:
        assert s.get(MetricAlert, alert_id).acknowledged_at is not None  # type: ignore[union-attr]
    assert "Acknowledge</button>" not in client.get("/dashboard/ka").get_data(as_text=True)
