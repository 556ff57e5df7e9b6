"""Review fixtures: items made directly (the workers create them in production)."""

from __future__ import annotations

import uuid
from typing import Any

from corrigenda.models import FeedbackEvent, Prediction, Project, ReviewItem


def make_review_item(
    session, project: Project, prediction: Prediction, **kwargs: Any
) -> ReviewItem:  # type: ignore[no-untyped-def]
    kwargs.setdefault("reason", "conflict")
    kwargs.setdefault("priority", 1.0)
    kwargs.setdefault("required_reviews", project.policy.get("review_overlap", 1))
    item = ReviewItem(
        project_id=project.id,  # type: ignore[arg-type]
        prediction_id=prediction.id,
        cluster_id=prediction.cluster_id,
        **kwargs,
    )
    session.add(item)
    session.flush()
    return item


def make_event(
    session, prediction: Prediction, kind: str = "correct", **kwargs: Any
) -> FeedbackEvent:  # type: ignore[no-untyped-def]
    kwargs.setdefault("end_user", f"u-{uuid.uuid4().hex[:6]}")
    event = FeedbackEvent(
        event_id=uuid.uuid4(),
        project_id=prediction.project_id,
        prediction_id=prediction.id,  # type: ignore[arg-type]
        kind=kind,
        source="widget",
        **kwargs,
    )
    session.add(event)
    session.flush()
    return event
