from __future__ import annotations

from corrigenda.db import transaction
from corrigenda.demo import TICKETS, seed
from corrigenda.projects import get_project
from corrigenda.tokens import TokenSigner


def test_landing_page_links_the_main_places(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/").get_data(as_text=True)
    for link in ('href="/review"', 'href="/dashboard"', 'href="/demo"'):
        assert link in page


def test_demo_page_is_missing_until_seeded(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/demo").status_code == 404


def test_demo_page_embeds_the_widget_with_signed_predictions(app, client, settings) -> None:  # type: ignore[no-untyped-def]
    with transaction(app.extensions["corrigenda.engine"]) as session:
        facts = seed(session, settings=settings)
        project_id = get_project(session, facts["project"]).id
    page = client.get("/demo").get_data(as_text=True)
    assert f'data-key="{facts["publishable_key"]}"' in page
    assert page.count("<corrigenda-feedback") == len(TICKETS)
    token = page.split('token="', 1)[1].split('"', 1)[0]
    signer = TokenSigner(app.config["SECRET_KEY"], 60)
    claims = signer.verify(token, project_id=project_id)
    assert claims.prediction == "ticket-1"


def test_seeding_twice_keeps_one_demo_project(app, settings) -> None:  # type: ignore[no-untyped-def]
    engine = app.extensions["corrigenda.engine"]
    with transaction(engine) as session:
        first = seed(session, settings=settings)
    with transaction(engine) as session:
        second = seed(session, settings=settings)
    assert first == second
