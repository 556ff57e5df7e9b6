"""Writing labeled examples. Every change gets a new ``seq`` so the stream can resume by cursor."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from .models import Example, Prediction, utcnow


def next_seq(session: Session, project_id: int) -> int:
    # Walking-skeleton cursor: the datasets issue replaces this with a commit-safe sequence.
    current = session.exec(
        select(func.max(Example.seq)).where(Example.project_id == project_id)
    ).one()
    return (current or 0) + 1


def upsert_example(
    session: Session,
    *,
    prediction: Prediction,
    target: Any,
    source: str,
    provenance: dict[str, Any],
    agreement: float | None = None,
) -> Example:
    """Write (or revise) the example for ``prediction``; a change bumps revision and seq."""
    example = session.exec(
        select(Example).where(
            Example.project_id == prediction.project_id, Example.prediction_id == prediction.id
        )
    ).first()
    if example is None:
        example = Example(project_id=prediction.project_id, prediction_id=prediction.id, revision=0)
    example.input = prediction.input
    example.model_output = prediction.output
    example.cluster_id = prediction.cluster_id
    example.target = target
    example.source = source
    example.provenance = provenance
    example.agreement = agreement
    example.revision += 1
    example.deleted_at = None
    example.updated_at = utcnow()
    example.seq = next_seq(session, prediction.project_id)
    session.add(example)
    session.flush()
    return example
