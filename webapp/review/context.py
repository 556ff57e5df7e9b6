"""Everything a reviewer sees about one item, loaded in one read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from corrigenda.decisions import opinions, user_correction
from corrigenda.models import Decision, Example, FeedbackEvent, Prediction, ReviewItem, User

SIBLINGS_SHOWN = 10


@dataclass
class ItemContext:
    item: ReviewItem
    prediction: Prediction | None
    opinions: list[FeedbackEvent] = field(default_factory=list)
    correction: Any = None
    siblings: list[tuple[Prediction, Any]] = field(default_factory=list)
    cluster_size: int = 0
    history: list[tuple[Decision, str, bool]] = field(default_factory=list)

    @property
    def shown_reason(self) -> str:
        # Gold items must look like any other item, or reviewers would treat them apart.
        return "audit" if self.item.reason == "gold" else self.item.reason

    @property
    def text(self) -> str | None:
        value = (self.prediction.input or {}).get("text") if self.prediction else None
        return value if isinstance(value, str) else None

    @property
    def fields(self) -> dict[str, Any]:
        data = dict(self.prediction.input or {}) if self.prediction else {}
        data.pop("text", None)
        return data


def item_context(session: Session, item: ReviewItem) -> ItemContext:
    prediction = session.get(Prediction, item.prediction_id) if item.prediction_id else None
    context = ItemContext(item=item, prediction=prediction)
    if prediction is None:
        return context
    context.opinions = opinions(session, prediction)
    context.correction = user_correction(session, prediction, events=context.opinions)
    context.siblings, context.cluster_size = _siblings(session, prediction)
    if item.reason != "gold":
        context.history = _history(session, item)
    return context


def _siblings(session: Session, prediction: Prediction) -> tuple[list[tuple[Prediction, Any]], int]:
    if prediction.cluster_id is None:
        return [], 0
    statement = (
        select(Prediction, Example.target)
        .outerjoin(
            Example,
            (col(Example.prediction_id) == Prediction.id) & col(Example.deleted_at).is_(None),
        )
        .where(
            Prediction.project_id == prediction.project_id,
            Prediction.cluster_id == prediction.cluster_id,
            Prediction.id != prediction.id,
        )
        .order_by(col(Prediction.id).desc())
        .limit(SIBLINGS_SHOWN + 1)
    )
    rows = [(p, target) for p, target in session.exec(statement)]
    return rows[:SIBLINGS_SHOWN], len(rows)


def _history(session: Session, item: ReviewItem) -> list[tuple[Decision, str, bool]]:
    statement = (
        select(Decision, User.email)
        .outerjoin(User, col(User.id) == Decision.reviewer_id)
        .where(Decision.review_item_id == item.id)
        .order_by(col(Decision.id))
    )
    rows = list(session.exec(statement))
    undone = {d.undoes_id for d, _ in rows if d.action == "undo"}
    return [(d, email or "deleted user", d.id in undone) for d, email in rows]
