"""Event factory and a canonical snapshot of what processing produced, for comparisons."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from corrigenda.db import transaction
from corrigenda.models import Example, FeedbackEvent, PendingEvent, Prediction, Project, ReviewItem
from corrigenda.processing import mark_pending

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def make_event(
    session: Session,
    prediction: Prediction,
    kind: str = "correct",
    value: Any = None,
    *,
    end_user: str | None = "u1",
    seconds: float = 0.0,
    received_seconds: float | None = None,
    event_id: uuid.UUID | None = None,
) -> FeedbackEvent:
    event = FeedbackEvent(
        event_id=event_id or uuid.uuid4(),
        project_id=prediction.project_id,
        prediction_id=prediction.id,  # type: ignore[arg-type]
        kind=kind,
        value=value,
        end_user=end_user,
        client_time=T0 + timedelta(seconds=seconds),
        received_at=T0
        + timedelta(seconds=seconds if received_seconds is None else received_seconds),
    )
    session.add(event)
    session.flush()
    mark_pending(session, event_ids=[event.id])  # type: ignore[list-item]
    return event


def snapshot(engine: Engine) -> dict[str, Any]:
    """Live examples and open review items by prediction client id; clusters as a partition."""
    with Session(engine) as session:
        names = dict(session.exec(select(Prediction.id, Prediction.client_id)).all())
        examples = sorted(
            (names[e.prediction_id], repr(e.target), e.agreement, e.source)
            for e in session.exec(select(Example).where(col(Example.deleted_at).is_(None)))
        )
        items = sorted(
            (names[i.prediction_id], i.reason, round(i.priority, 6), i.status)
            for i in session.exec(select(ReviewItem))
        )
        groups: dict[int, list[str]] = {}
        for prediction in session.exec(select(Prediction)):
            groups.setdefault(prediction.cluster_id or -prediction.id, []).append(
                prediction.client_id
            )
        partition = sorted(sorted(g) for g in groups.values())
        pending = session.exec(select(func.count()).select_from(PendingEvent)).one()
    return {"examples": examples, "items": items, "clusters": partition, "pending": pending}


def set_policy(engine: Engine, project_id: int, **values: Any) -> None:
    with transaction(engine) as session:
        project = session.get(Project, project_id)
        assert project is not None
        project.policy = {**project.policy, **values}
        session.add(project)


TEXTS = [
    "My invoice shows the wrong amount for March",
    "The app crashes when I upload a photo from the gallery",
    "Please add a dark mode to the dashboard settings page",
    "I was charged twice for the same subscription this month",
    "Search results do not load after the latest update on android",
]
LABELS = ["billing", "bug", "feature", "other"]


def variant(text: str, n: int) -> str:
    """Exact duplicates after normalisation (case, spacing, a signature) of ``text``."""
    forms = [text, text.upper(), f"  {text}  ", f"{text}\n\nThanks,\nAnn", text.replace(" ", "\t")]
    return forms[n % len(forms)]


def build_workload(
    engine: Engine,
    *,
    predictions: int = 30,
    users: int = 6,
    events: int = 120,
    seed: int = 7,
    slug: str = "work",
) -> list[int]:
    """A project, predictions over a few repeated inputs, and a noisy event stream."""
    import random

    from tests.factories import make_prediction, make_project

    rng = random.Random(seed)
    with transaction(engine) as session:
        project = make_project(session, slug)
        project.policy = {**project.policy, "audit_rate": 0.2}
        made = [
            make_prediction(
                session,
                project,
                f"{slug}-{i:03d}",
                input={"text": variant(TEXTS[i % len(TEXTS)], i // len(TEXTS))},
                output=LABELS[i % 3],
                confidence=round(0.5 + (i % 5) / 10, 2),
            )
            for i in range(predictions)
        ]
        ids = []
        for _ in range(events):
            prediction = rng.choice(made)
            kind = rng.choice(["view", "view", "accept", "correct", "correct", "correct", "reject"])
            truth = LABELS[(made.index(prediction) % len(TEXTS)) % 3]
            noisy = rng.choice(LABELS[:3]) if rng.random() < 0.2 else truth
            value = noisy if kind == "correct" else None
            event = make_event(
                session,
                prediction,
                kind,
                value,
                end_user=f"user{rng.randrange(users)}",
                seconds=rng.randrange(100),
                event_id=uuid.UUID(int=rng.getrandbits(128)),
            )
            ids.append(event.id)
        return ids
