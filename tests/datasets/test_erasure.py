"""Erasing an end user: events and opinions gone, examples withdrawn and re-settled,
dataset versions that may hold their data marked superseded, the stream announces it."""

from __future__ import annotations

from flask import Flask
from sqlmodel import Session, col, select

from corrigenda.datasets import build_pending
from corrigenda.db import transaction
from corrigenda.models import (
    AuditLog,
    DatasetVersion,
    EffectiveOpinion,
    Example,
    FeedbackEvent,
    ReviewItem,
)
from corrigenda.processing import pending_event_ids, process_events
from tests.factories import make_prediction, setup_project_with_keys
from tests.workers.helpers import make_event

TEXT = "My invoice for March shows the wrong amount although I downgraded in February"


def test_erasure_end_to_end(app: Flask) -> None:
    engine = app.extensions["corrigenda.engine"]
    keys = setup_project_with_keys(engine)
    headers = {"Authorization": f"Bearer {keys['sk']}"}
    with transaction(engine) as session:
        from corrigenda.models import Project

        project = session.get(Project, keys["project_id"])
        project.policy = {**project.policy, "audit_rate": 0.0}
        a = make_prediction(session, project, "a", input={"text": TEXT}, output="bug")
        b = make_prediction(session, project, "b", input={"text": TEXT + "!"}, output="bug")
        make_event(session, a, "correct", "billing", end_user="ann")
        make_event(session, b, "correct", "billing", end_user="bob")
        other = make_prediction(session, project, "c", input={"text": "unrelated words here"})
        make_event(session, other, "correct", "feature", end_user="bob")
        make_event(session, other, "correct", "feature", end_user="cy")
    with transaction(engine) as session:
        process_events(session, event_ids=pending_event_ids(session=session, limit=100))
    with Session(engine) as session:
        live = session.exec(select(Example).where(col(Example.deleted_at).is_(None))).all()
    assert {e.target for e in live} == {"billing", "feature"} and len(live) == 3

    client = app.test_client()
    client.post("/api/v1/projects/demo/datasets", json={"formats": ["jsonl"]}, headers=headers)
    build_pending(engine, app.extensions["corrigenda.settings"].data_dir)
    cursor = client.get("/api/v1/projects/demo/examples?limit=100", headers=headers).headers[
        "Corrigenda-Next-Cursor"
    ]

    answer = client.delete("/api/v1/projects/demo/end-users/ann", headers=headers)
    assert answer.status_code == 200, answer.json
    result = answer.json
    assert result["events"] == 1 and result["opinions"] == 1
    assert result["examples_withdrawn"] == 2  # the consensus of ann + bob across the cluster
    assert result["versions_superseded"] == [1]

    with Session(engine) as session:
        assert (
            session.exec(select(FeedbackEvent).where(FeedbackEvent.end_user == "ann")).all() == []
        )
        assert (
            session.exec(select(EffectiveOpinion).where(EffectiveOpinion.end_user == "ann")).all()
            == []
        )
        live = session.exec(select(Example).where(col(Example.deleted_at).is_(None))).all()
        assert [e.target for e in live] == ["feature"]  # bob alone no longer settles "billing"
        reasons = [i.reason for i in session.exec(select(ReviewItem))]
        assert "single_correction" in reasons  # re-settled: bob's lone correction needs review
        audit = session.exec(select(AuditLog).where(AuditLog.action == "end_user.erase")).one()
        assert "ann" not in str(audit.object_id) and audit.after["events"] == 1
        version = session.exec(select(DatasetVersion)).one()
    assert version.manifest["superseded"]["reason"].startswith("erasure")
    shown = client.get("/api/v1/projects/demo/datasets/1", headers=headers).json
    assert shown["superseded"] is not None

    tail = client.get(f"/api/v1/projects/demo/examples?since={cursor}", headers=headers)
    from tests.services import wait_for

    def tombstones() -> list:
        page = client.get(f"/api/v1/projects/demo/examples?since={cursor}", headers=headers)
        return [line for line in page.data.splitlines() if b'"deleted":true' in line]

    wait_for(lambda: len(tombstones()) == 2, timeout=30)
    assert tail.status_code == 200


def test_erasing_an_end_user_takes_their_pending_events_out_of_the_queue(engine) -> None:  # type: ignore[no-untyped-def]
    from corrigenda.erasure import erase_end_user
    from corrigenda.models import PendingEvent, Project

    keys = setup_project_with_keys(engine)
    with transaction(engine) as session:
        project = session.get(Project, keys["project_id"])
        a = make_prediction(session, project, "a", input={"text": TEXT}, output="bug")
        erased = make_event(session, a, "correct", "billing", end_user="ann").id
        kept = make_event(session, a, "correct", "billing", end_user="bob").id
    with transaction(engine) as session:
        project = session.get(Project, keys["project_id"])
        erase_end_user(session, project=project, end_user="ann", actor="test")  # type: ignore[arg-type]
    with transaction(engine) as session:
        assert session.get(PendingEvent, erased) is None
        assert pending_event_ids(session=session, limit=10) == [kept]
        assert process_events(session, event_ids=[erased, kept]).processed == 1
