"""The ingestion write path: no pre-ping on PostgreSQL, so a connection that died in the pool
(database restart, idle timeout) must cost a retry, never an accepted event or a 500."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from corrigenda.db import transaction
from corrigenda.ingest import EventToStore, record_feedback
from corrigenda.models import FeedbackEvent
from corrigenda.processing import pending_event_ids
from corrigenda.schemas.ingest import FeedbackEventIn
from tests.factories import make_prediction, make_project

from .conftest import ORIGIN, count_events, event, log, pk


# PostgreSQL only: an embedded SQLite file has no server to drop connections.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_feedback_survives_pooled_connections_killed_by_the_server(client, keys, engine) -> None:  # type: ignore[no-untyped-def]
    token = log(client, keys)
    first = client.post("/api/v1/feedback", json=event(token=token), headers=pk(keys))
    assert first.status_code == 202
    with engine.connect() as admin:  # what a database restart does to idle connections
        killed = admin.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    assert killed >= 1
    again = client.post("/api/v1/feedback", json=event(token=token), headers=pk(keys))
    assert again.status_code == 202
    assert again.json["results"][0]["status"] == "accepted"
    assert count_events(engine) == 2


def test_single_events_keep_their_stored_form(client, keys, engine) -> None:  # type: ignore[no-untyped-def]
    """The one-event fast path writes on the driver's cursor: the row must read back through
    the models exactly as the batch path stores it (UUID, JSON value, UTC times)."""
    token = log(client, keys)
    when = "2026-11-27T10:00:00.5+01:00"
    sent = event(token=token, kind="correct", value="billing", comment="é\u200f", end_user="u1",
                 session="s1", client_time=when, time_to_decision_ms=7)  # fmt: skip
    response = client.post("/api/v1/feedback", json=sent, headers=pk(keys))
    assert response.json["results"][0]["status"] == "accepted", response.json
    with Session(engine) as session:
        stored = session.exec(select(FeedbackEvent)).one()
    assert str(stored.event_id) == sent["id"]
    assert stored.value == "billing"
    assert (stored.comment, stored.end_user, stored.session_id) == ("é\u200f", "u1", "s1")
    assert stored.client_time == datetime(2026, 11, 27, 9, 0, 0, 500000, tzinfo=UTC)
    assert (stored.time_to_decision_ms, stored.source) == (7, "widget")
    assert stored.origin == ORIGIN


@pytest.mark.parametrize("size", [1, 3])
def test_new_events_are_queued_with_the_insert_and_duplicates_are_not(engine, size) -> None:  # type: ignore[no-untyped-def]
    """Each form of the insert (one event, a batch; per database) writes the pending rows."""
    with transaction(engine) as session:
        project = make_project(session)
        prediction_id = make_prediction(session, project).id

    def store(events: list[FeedbackEventIn]) -> list[int]:
        with engine.begin() as connection:
            items = [EventToStore(i, e, prediction_id) for i, e in enumerate(events)]
            outcome = record_feedback(
                connection, project=project, events=items, source="api", origin=None
            )
        return sorted(outcome.accepted.values())

    events = [FeedbackEventIn(id=uuid.uuid4(), kind="accept") for _ in range(size)]
    accepted = store(events)
    assert len(accepted) == size
    assert store(events) == []  # all duplicates
    with Session(engine) as session:
        assert pending_event_ids(session=session, limit=10) == accepted
