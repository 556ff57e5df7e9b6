"""Property: duplication, reordering and batching of one event set never change the outcome."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import select

from corrigenda.db import make_engine, transaction
from corrigenda.models import FeedbackEvent, Prediction, metadata
from corrigenda.processing import mark_pending, process_events
from tests.conftest import empty_postgres
from tests.factories import make_prediction, make_project
from tests.workers.helpers import LABELS, T0, TEXTS, snapshot, variant

PREDICTIONS = 5
event_strategy = st.tuples(
    st.integers(0, PREDICTIONS - 1),  # prediction
    st.sampled_from(["view", "accept", "reject", "correct", "flag"]),
    st.sampled_from(LABELS[:3]),
    st.integers(0, 2),  # end user
    st.integers(0, 5),  # client time (ties on purpose)
    st.integers(0, 5),  # received time
)


def fresh_sqlite(directory: Path, name: str) -> Engine:
    engine = make_engine(f"sqlite:///{directory / name}")
    metadata.create_all(engine)
    return seeded(engine)


def fresh_postgresql(url: str) -> Engine:
    empty_postgres(url)
    return seeded(make_engine(url))


def seeded(engine: Engine) -> Engine:
    with transaction(engine) as session:
        project = make_project(session, "prop")
        project.policy = {**project.policy, "audit_rate": 0.3}
        for i in range(PREDICTIONS):
            make_prediction(
                session,
                project,
                f"p{i}",
                input={"text": variant(TEXTS[i % 3], i)},
                output=LABELS[i % 2],
                confidence=0.6 + i / 40,
            )
    return engine


def insert(engine: Engine, events: list[tuple[int, tuple]]) -> list[int]:  # type: ignore[type-arg]
    ids = []
    with transaction(engine) as session:
        predictions = {p.client_id: p for p in session.exec(select(Prediction))}
        for number, (pred, kind, label, user, client, received) in events:
            prediction = predictions[f"p{pred}"]
            event = FeedbackEvent(
                event_id=uuid.UUID(int=number + 1),
                project_id=prediction.project_id,
                prediction_id=prediction.id,  # type: ignore[arg-type]
                kind=kind,
                value=label if kind == "correct" else None,
                end_user=f"user{user}",
                client_time=T0 + timedelta(seconds=client),
                received_at=T0 + timedelta(seconds=received),
            )
            session.add(event)
            session.flush()
            ids.append(event.id)
        mark_pending(session, event_ids=ids)
    return ids  # type: ignore[return-value]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    events=st.lists(event_strategy, min_size=1, max_size=30),
    data=st.data(),
)
def test_same_events_in_any_order_batching_and_duplication_give_the_same_outcome(
    database, request, tmp_path_factory, events, data
) -> None:  # type: ignore[no-untyped-def]
    """The baseline is always SQLite's single batch. PostgreSQL runs its own statements
    (claim, pipelined upsert, routing on opinions not written yet): cut and shuffled there,
    the events must still end as on SQLite."""
    directory = tmp_path_factory.mktemp("prop")
    if database == "postgresql":
        engine = fresh_postgresql(request.getfixturevalue("pg_url"))
    else:
        engine = fresh_sqlite(directory, "variant.db")
    assert_same_outcome(events, engine, directory, data)


def assert_same_outcome(events, engine: Engine, directory: Path, data) -> None:  # type: ignore[no-untyped-def]
    """The events in one batch on a fresh SQLite database (the baseline), then shuffled,
    redelivered and cut into batches on ``engine``: both must end in the same state."""
    numbered = list(enumerate(events))
    baseline = fresh_sqlite(directory, "baseline.db")
    try:
        with transaction(baseline) as session:
            process_events(session, event_ids=insert(baseline, numbered))

        shuffled = data.draw(st.permutations(numbered), label="arrival order")
        ids = insert(engine, shuffled)
        redelivered = data.draw(st.lists(st.sampled_from(ids), max_size=10), label="redelivered")
        deliveries = data.draw(st.permutations(ids + redelivered), label="delivery order")
        cuts = data.draw(st.sets(st.integers(1, len(deliveries)), max_size=5), label="cuts")
        bounds = sorted(cuts)
        for start, end in zip([0, *bounds], [*bounds, len(deliveries)], strict=True):
            with transaction(engine) as session:
                process_events(session, event_ids=deliveries[start:end])

        assert snapshot(engine) == snapshot(baseline)
    finally:  # a failing example must not keep its connections while hypothesis shrinks
        baseline.dispose()
        engine.dispose()
