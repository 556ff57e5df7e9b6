"""A constructed data set with hand-computed metrics (see test_known_answer.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from corrigenda.db import transaction
from corrigenda.keys import create_api_key
from corrigenda.metrics import drain
from corrigenda.models import (
    Example,
    FeedbackEvent,
    MetricAlert,
    MetricRollup,
    Prediction,
    Project,
    ReviewItem,
)
from tests.factories import make_project, make_user

DAY = date(2025, 3, 3)
NOON = datetime(2025, 3, 3, 12, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return NOON + timedelta(seconds=seconds)


def predict(session: Session, project: Project, client_id: str, **kwargs: Any) -> Prediction:
    kwargs.setdefault("model_version", "v1")
    kwargs.setdefault("input", {"text": f"input of {client_id}"})
    kwargs.setdefault("created_at", NOON)
    prediction = Prediction(project_id=project.id, client_id=client_id, **kwargs)
    session.add(prediction)
    session.flush()
    return prediction


def event(
    session: Session,
    prediction: Prediction,
    kind: str,
    user: str | None = "u1",
    client_seconds: float | None = 0,
    ttd: int | None = None,
    value: Any = None,
) -> FeedbackEvent:
    row = FeedbackEvent(
        event_id=uuid.uuid4(),
        project_id=prediction.project_id,
        prediction_id=prediction.id,
        kind=kind,
        value=value,
        end_user=user,
        client_time=at(client_seconds) if client_seconds is not None else None,
        time_to_decision_ms=ttd,
    )
    session.add(row)
    session.flush()
    return row


def settle(
    session: Session, prediction: Prediction, label: Any, *, audit: bool, deleted: bool = False
) -> None:
    reason = "audit" if audit else "single_correction"
    session.add(
        ReviewItem(
            project_id=prediction.project_id,
            prediction_id=prediction.id,
            reason=reason,
            status="done",
        )
    )
    session.add(
        Example(
            project_id=prediction.project_id,
            prediction_id=prediction.id,
            input=prediction.input,
            target=label,
            model_output=prediction.output,
            source="reviewed",
            seq=(prediction.id or 0) + 1000,
            deleted_at=NOON if deleted else None,
        )
    )
    session.flush()


def build_known_dataset(engine, slug: str = "ka") -> int:  # type: ignore[no-untyped-def]
    """The hand-computed data set of test_known_answer.py; returns the project id."""
    with transaction(engine) as s:
        project = make_project(s, slug)
        project.policy = {
            **project.policy,
            "confidence_threshold": 0.5,
            "min_cell_size": 2,
            "manual_handling_seconds": 60,
            "cost_matrix": {"bug": {"other": 5}},
        }
        s.add(project)
        de, en = {"locale": "de"}, {"locale": "en"}
        p1 = predict(s, project, "p1", output="billing", confidence=0.9, segment=de)
        p2 = predict(s, project, "p2", output="bug", confidence=0.3, segment=de)
        p3 = predict(s, project, "p3", output="feature", confidence=0.8, segment=en)
        p4 = predict(s, project, "p4", output="bug", confidence=0.6, segment=en, shown_at=NOON)
        p5 = predict(s, project, "p5", output="other", confidence=None, segment=en)
        predict(s, project, "p6", output="billing", confidence=0.95, segment=de)
        event(s, p1, "view")
        event(s, p1, "accept", ttd=1000)
        event(s, p2, "view")
        event(s, p2, "reject", client_seconds=10, ttd=2000)  # arrives first, happened last
        event(s, p2, "accept", client_seconds=5, ttd=900)
        event(s, p3, "view")
        event(s, p5, "accept", user="u1", ttd=3000)
        event(s, p5, "correct", user="u2", ttd=3000, value="bug")
        settle(s, p1, "billing", audit=True)
        settle(s, p2, "billing", audit=True)
        settle(s, p3, "feature", audit=False)
        settle(s, p4, "bug", audit=True, deleted=True)
        settle(s, p5, "bug", audit=True)
        cand = {"model_version": "v2-cand", "segment": de}
        predict(s, project, "c1", output="billing", shadow_of="p1", **cand)
        predict(s, project, "c2", output="billing", shadow_of="p2", **cand)
        predict(s, project, "c3", output="other", shadow_of="p5", **cand)
        return project.id  # type: ignore[return-value]


def rollup_snapshot(engine) -> list[tuple[Any, ...]]:  # type: ignore[no-untyped-def]
    """Every rollup row as a comparable tuple (zero rows dropped)."""
    with Session(engine) as session:
        rows = session.exec(select(MetricRollup)).all()
        out = []
        for r in rows:
            values = r.model_dump(exclude={"id"})
            if not any(v for k, v in values.items() if isinstance(v, float)):
                continue
            out.append(tuple(sorted((k, _canonical(v)) for k, v in values.items())))
        return sorted(out)


def _canonical(value: Any) -> str:
    return repr(sorted(value.items())) if isinstance(value, dict) else repr(value)


def csrf_from(html: str) -> str:
    import re

    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def log_in(client, email: str, password: str) -> str:  # type: ignore[no-untyped-def]
    """Log in through the real login form; returns the session's CSRF token."""
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token}
    )
    assert response.status_code in (302, 303), response.get_data(as_text=True)[:500]
    return token


@pytest.fixture
def known(app, engine):  # type: ignore[no-untyped-def]
    project_id = build_known_dataset(engine)
    with transaction(engine) as s:
        project = s.get(Project, project_id)
        _, secret = create_api_key(s, project=project, kind="secret")  # type: ignore[arg-type]
        _, publishable = create_api_key(s, project=project, kind="publishable")  # type: ignore[arg-type]
        make_user(s, project, role="viewer", email="viewer@example.com")
        make_user(s, None, email="outsider@example.com")
        project.policy = {  # type: ignore[union-attr]
            **project.policy,  # type: ignore[union-attr]
            "requirement": {"metric": "audited_accuracy", "threshold": 0.5, "min_n": 500},
        }
        s.add(
            MetricAlert(
                project_id=project_id,
                kind="override_rise",
                model_version="v1",
                day=DAY,
                observed=0.4,
                baseline=0.1,
                p_value=0.001,
                message="Override rate of v1 rose to 40.0%",
            )
        )
    drain(lambda: transaction(engine))
    return {"project_id": project_id, "sk": secret, "pk": publishable}
