from __future__ import annotations

import pytest
from sqlmodel import select

from corrigenda.db import transaction
from corrigenda.models import ApiKey, AuditLog, Decision, Project
from tests.conftest import make_test_settings
from tests.factories import make_prediction, make_project, make_user
from tests.review.conftest import make_event, make_review_item
from tests.review.web import csrf_token, log_in
from webapp import create_app

XSS_TEXT = '<script>alert("x")</script><b>bold</b>'
XSS_COMMENT = '<img src=x onerror="alert(1)">'


@pytest.fixture
def world(app):  # type: ignore[no-untyped-def]
    engine = app.extensions["corrigenda.engine"]
    with transaction(engine) as session:
        demo = make_project(session, "demo")
        other = make_project(session, "other")
        for p in (demo, other):
            p.policy = {**p.policy, "gold_rate": 0}
            session.add(p)
        reviewer = make_user(session, demo, "reviewer", email="rev@example.com")
        make_user(session, demo, "viewer", email="view@example.com")
        make_user(session, demo, "admin", email="admin@example.com")
        prediction = make_prediction(session, demo, input={"text": XSS_TEXT}, cluster_id=5)
        make_event(session, prediction, value="billing", comment=XSS_COMMENT)
        item = make_review_item(session, demo, prediction)
        foreign = make_review_item(session, other, make_prediction(session, other, "o-1"))
        return {
            "engine": engine,
            "item": item.id,
            "foreign": foreign.id,
            "reviewer": reviewer.id,
        }


def test_login_page_logs_in_and_out(client, world) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/review/").status_code == 302
    token = log_in(client, "rev@example.com")
    page = client.get("/review/").get_data(as_text=True)
    assert "demo" in page and "other" not in page
    client.post("/logout", data={"csrf_token": token})
    assert client.get("/review/").status_code == 302


def test_failed_logins_are_rate_limited(db_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_test_settings(db_url, tmp_path, login_rate_limit="3/minute"))
    with transaction(app.extensions["corrigenda.engine"]) as session:
        make_user(session, email="rev@example.com")
    client = app.test_client()
    token = csrf_token(client)
    codes = [
        client.post(
            "/login", data={"email": "rev@example.com", "password": "wrong!!!", "csrf_token": token}
        ).status_code
        for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]
    app.extensions["corrigenda.engine"].dispose()


def test_a_post_without_csrf_token_is_refused_and_changes_nothing(client, world) -> None:  # type: ignore[no-untyped-def]
    log_in(client, "rev@example.com")
    client.get("/review/demo")
    response = client.post(
        f"/review/demo/items/{world['item']}/decide", data={"action": "keep_model"}
    )
    assert response.status_code == 400
    with transaction(world["engine"]) as session:
        assert session.exec(select(Decision)).all() == []


def test_reviewer_decides_by_htmx_and_gets_the_next_item(client, world) -> None:  # type: ignore[no-untyped-def]
    token = log_in(client, "rev@example.com")
    page = client.get("/review/demo").get_data(as_text=True)
    assert f'data-item-id="{world["item"]}"' in page
    response = client.post(
        f"/review/demo/items/{world['item']}/decide",
        data={"action": "accept_correction", "duration_ms": "1500"},
        headers={"HX-Request": "true", "X-CSRFToken": token},
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert "data-queue-empty" in body and "HX-Request" in response.headers["Vary"]
    with transaction(world["engine"]) as session:
        decision = session.exec(select(Decision)).one()
        assert (decision.value, decision.duration_ms) == ("billing", 1500)


def test_untrusted_input_and_comments_render_inert(client, world) -> None:  # type: ignore[no-untyped-def]
    log_in(client, "rev@example.com")
    page = client.get("/review/demo").get_data(as_text=True)
    assert XSS_TEXT not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=" in page


REVIEW_ROUTES = [
    ("get", "/review/{slug}"),
    ("get", "/review/{slug}/items/{item}"),
    ("post", "/review/{slug}/items/{item}/decide"),
    ("post", "/review/{slug}/undo"),
    ("post", "/review/{slug}/items/{item}/lease"),
]
ADMIN_ROUTES = [
    ("get", "/admin/demo/"),
    ("get", "/admin/demo/stats"),
    ("get", "/admin/demo/adjudicate"),
    ("get", "/admin/demo/gold"),
    ("get", "/admin/demo/audit"),
    ("post", "/admin/demo/labels"),
    ("post", "/admin/demo/origins"),
    ("post", "/admin/demo/policy"),
    ("post", "/admin/demo/members"),
    ("post", "/admin/demo/keys"),
    ("post", "/admin/demo/keys/1/revoke"),
    ("post", "/admin/demo/members/1/remove"),
    ("post", "/admin/demo/adjudicate/1"),
    ("post", "/admin/demo/gold/1"),
    ("get", "/admin/users"),
    ("post", "/admin/users"),
    ("post", "/admin/users/1/active"),
]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("method", "path"), REVIEW_ROUTES)
def test_a_reviewer_cannot_reach_another_projects_items(client, world, method, path) -> None:  # type: ignore[no-untyped-def]
    token = log_in(client, "rev@example.com")
    url = path.format(slug="other", item=world["foreign"])
    response = getattr(client, method)(url, data={"csrf_token": token, "action": "keep_model"})
    assert response.status_code == 404
    cross = path.format(slug="demo", item=world["foreign"])
    if "{item}" in path:
        response = getattr(client, method)(
            cross, data={"csrf_token": token, "action": "keep_model"}
        )
        assert response.status_code in (404, 409)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_a_reviewer_cannot_open_admin_pages(client, world, method, path) -> None:  # type: ignore[no-untyped-def]
    token = log_in(client, "rev@example.com")
    response = getattr(client, method)(path, data={"csrf_token": token, "kind": "secret"})
    assert response.status_code == 403
    with transaction(world["engine"]) as session:
        assert session.exec(select(ApiKey)).all() == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("method", "path"), [r for r in REVIEW_ROUTES if r[0] == "post"])
def test_a_viewer_cannot_decide(client, world, method, path) -> None:  # type: ignore[no-untyped-def]
    token = log_in(client, "view@example.com")
    url = path.format(slug="demo", item=world["item"])
    response = client.post(url, data={"csrf_token": token, "action": "keep_model"})
    assert response.status_code == 403
    with transaction(world["engine"]) as session:
        assert session.exec(select(Decision)).all() == []


def test_viewer_browses_read_only(client, world) -> None:  # type: ignore[no-untyped-def]
    log_in(client, "view@example.com")
    page = client.get("/review/demo").get_data(as_text=True)
    assert "you can look at items but not decide" in page
    item_page = client.get(f"/review/demo/items/{world['item']}").get_data(as_text=True)
    assert "data-decide-form" not in item_page and "billing" in item_page


def test_admin_changes_labels_policy_and_keys_with_an_audit_trail(client, world) -> None:  # type: ignore[no-untyped-def]
    token = log_in(client, "admin@example.com")
    client.post("/admin/demo/labels", data={"csrf_token": token, "labels": "a\nb\n<c>"})
    bad = client.post(
        "/admin/demo/policy",
        data={
            "csrf_token": token,
            "review_overlap": "0",
            "audit_rate": "0.1",
            "gold_rate": "0",
            "confidence_threshold": "0.5",
            "auto_accept_min_agreeing": "2",
        },
        follow_redirects=True,
    )
    assert "review_overlap: must be between 1 and 10" in bad.get_data(as_text=True)
    created = client.post(
        "/admin/demo/keys", data={"csrf_token": token, "kind": "secret", "name": "ci"}
    ).get_data(as_text=True)
    assert "sk_" in created
    settings_page = client.get("/admin/demo/").get_data(as_text=True)
    with transaction(world["engine"]) as session:
        project = session.exec(select(Project).where(Project.slug == "demo")).one()
        key = session.exec(select(ApiKey)).one()
        actions = [a.action for a in session.exec(select(AuditLog).order_by(AuditLog.id))]
    assert project.labels == ["a", "b", "<c>"] and project.policy["review_overlap"] == 1
    assert key.prefix in settings_page and created.count("sk_") == 1
    assert actions[-2:] == ["project.labels", "key.create"]
    assert "&lt;c&gt;" in settings_page


def test_pending_counts_on_the_landing_page(client, world) -> None:  # type: ignore[no-untyped-def]
    log_in(client, "admin@example.com")
    page = client.get("/review/").get_data(as_text=True)
    assert 'data-pending="demo">1<' in page
