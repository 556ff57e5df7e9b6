"""The set-based SQL summary (inputs.py) agrees with the per-event reference rule in
definitions.py on random traffic: ties, missing client times, anonymous users, ignored
events, settled and audited labels, negative times."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

from sqlmodel import Session, select

from corrigenda.db import transaction
from corrigenda.metrics import rebuild_all
from corrigenda.metrics.definitions import EventRow, Settled, production_contribution
from corrigenda.models import Example, FeedbackEvent, MetricFact, Prediction, Project, ReviewItem
from tests.factories import make_project

from .conftest import NOON, predict, settle

KINDS = ("view", "accept", "reject", "correct", "flag")
IGNORED = (None, None, None, "superseded", "quarantined", "rate_capped")


def _random_traffic(session: Session, rng: random.Random) -> int:
    project = make_project(session, "rnd")
    project.policy = {**project.policy, "confidence_threshold": 0.5, "cost_matrix": {}}
    session.add(project)
    for i in range(60):
        confidence = rng.choice([None, 0.2, 0.5, 0.9])
        output = rng.choice(["a", "b", None, ["x", "y"]])
        shown_at = NOON if rng.random() < 0.1 else None
        p = predict(
            session, project, f"r{i}", output=output, confidence=confidence, shown_at=shown_at
        )
        for _ in range(rng.randint(0, 7)):
            second = rng.choice([None, 0, 1, 1, 2, 3])  # ties and missing client times
            session.add(
                FeedbackEvent(
                    event_id=uuid.uuid4(),
                    project_id=project.id,
                    prediction_id=p.id,
                    kind=rng.choice(KINDS),
                    end_user=rng.choice([None, "", "u1", "u2", "u3"]),
                    client_time=None if second is None else NOON + timedelta(seconds=second),
                    received_at=NOON + timedelta(seconds=rng.randint(0, 3)),
                    time_to_decision_ms=rng.choice([None, -5, 50, 700, 12_000]),
                    ignored_reason=rng.choice(IGNORED),
                )
            )
        if rng.random() < 0.3:
            settle(session, p, rng.choice(["a", "b", ["y", "x"]]), audit=rng.random() < 0.5)
    session.flush()
    return project.id  # type: ignore[return-value]


def _reference(session: Session, project: Project, p: Prediction) -> dict[str, float]:
    events = session.exec(select(FeedbackEvent).where(FeedbackEvent.prediction_id == p.id)).all()
    counted = [
        EventRow(e.id, e.kind, e.end_user, e.client_time, e.received_at, e.time_to_decision_ms)  # type: ignore[arg-type]
        for e in events
        if e.ignored_reason in (None, "superseded")
    ]
    example = session.exec(
        select(Example).where(Example.prediction_id == p.id, Example.deleted_at.is_(None))  # type: ignore[union-attr]
    ).first()
    settled = None
    if example is not None:
        audited = session.exec(
            select(ReviewItem).where(
                ReviewItem.prediction_id == p.id,
                ReviewItem.reason == "audit",
                ReviewItem.status == "done",
            )
        ).first()
        settled = Settled(example.target, audited is not None)
    return production_contribution(
        policy=project.policy,
        output=p.output,
        confidence=p.confidence,
        shown_at=p.shown_at,
        events=counted,  # type: ignore[arg-type]
        settled=settled,
    )


def test_sql_summary_equals_the_reference_rule(engine) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(20250303)
    with transaction(engine) as session:
        project_id = _random_traffic(session, rng)
    with transaction(engine) as session:
        rebuild_all(session)
    with Session(engine) as session:
        project = session.get(Project, project_id)
        facts = {f.prediction_id: f for f in session.exec(select(MetricFact))}
        predictions = session.exec(select(Prediction)).all()
        assert len(facts) == len(predictions) == 60
        for p in predictions:
            assert facts[p.id].contribution == _reference(session, project, p), p.client_id  # type: ignore[arg-type, index]
