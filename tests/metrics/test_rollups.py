"""Rollups kept incrementally equal a rebuild from the raw tables, exactly."""

from __future__ import annotations

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from corrigenda.db import transaction
from corrigenda.metrics import drain, rebuild_all, update_round
from corrigenda.models import (
    Example,
    FeedbackEvent,
    MetricFact,
    PendingEvent,
    Prediction,
    Project,
)
from corrigenda.processing import mark_pending

from .conftest import build_known_dataset, event, predict, rollup_snapshot, settle


def catch_up(engine) -> None:  # type: ignore[no-untyped-def]
    drain(lambda: transaction(engine), batch=3)  # tiny batches: many rounds


def rebuilt(engine) -> list:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        rebuild_all(session)
    return rollup_snapshot(engine)


def test_incremental_equals_rebuild_through_changes(engine) -> None:  # type: ignore[no-untyped-def]
    project_id = build_known_dataset(engine)
    catch_up(engine)
    first = rollup_snapshot(engine)
    assert first and first == rebuilt(engine)
    with transaction(engine) as s:
        project = s.get(Project, project_id)
        p1 = s.exec(select(Prediction).where(Prediction.client_id == "p1")).one()
        p3 = s.exec(select(Prediction).where(Prediction.client_id == "p3")).one()
        event(s, p1, "reject", client_seconds=60, ttd=4000)  # p1 now overridden
        event(s, p3, "accept", user="u9", ttd=500)
        new = predict(s, project, "p7", output="bug", confidence=0.7, segment={"plan": "pro"})  # type: ignore[arg-type]
        event(s, new, "view")
        settle(s, new, "bug", audit=True)
        example = s.exec(select(Example).where(Example.prediction_id == p1.id)).one()
        example.target, example.seq = "feature", 5000  # relabelled: p1 no longer right
        s.add(example)
    catch_up(engine)
    second = rollup_snapshot(engine)
    assert second != first
    assert second == rebuilt(engine)


def test_a_round_with_nothing_new_changes_nothing(engine) -> None:  # type: ignore[no-untyped-def]
    build_known_dataset(engine)
    catch_up(engine)
    before = rollup_snapshot(engine)
    with transaction(engine) as session:
        result = update_round(session)
    assert result.changed == 0 and rollup_snapshot(engine) == before


def test_recomputing_facts_twice_is_harmless(engine) -> None:  # type: ignore[no-untyped-def]
    from corrigenda.metrics.facts import refresh_facts

    build_known_dataset(engine)
    catch_up(engine)
    before = rollup_snapshot(engine)
    with transaction(engine) as session:
        ids = list(session.exec(select(Prediction.id)))
        assert refresh_facts(session, ids) == 0
    assert rollup_snapshot(engine) == before


def test_unprocessed_event_holds_the_watermark(engine) -> None:  # type: ignore[no-untyped-def]
    """Processing may still mark an event ignored, so the watermark waits for it."""
    build_known_dataset(engine)
    catch_up(engine)
    with transaction(engine) as s:
        p3 = s.exec(select(Prediction).where(Prediction.client_id == "p3")).one()
        pending = event(s, p3, "reject", user="spammer", ttd=10)
        mark_pending(s, event_ids=[pending.id])  # type: ignore[list-item]
        pending_id = pending.id
    catch_up(engine)
    with transaction(engine) as s:
        s.execute(delete(PendingEvent).where(col(PendingEvent.id) == pending_id))
        row = s.get(FeedbackEvent, pending_id)
        row.ignored_reason = "quarantined"  # type: ignore[union-attr]
        s.add(row)
    catch_up(engine)
    # The quarantined reject does not count, and the incremental state equals a rebuild.
    assert rollup_snapshot(engine) == rebuilt(engine)
    with Session(engine) as s:
        p3 = s.exec(select(Prediction).where(Prediction.client_id == "p3")).one()
        fact = s.exec(select(MetricFact).where(MetricFact.prediction_id == p3.id)).one()
        assert "overridden" not in fact.contribution


def test_late_committed_id_below_the_watermark_is_picked_up(engine) -> None:  # type: ignore[no-untyped-def]
    """An id allocated before the watermark moved but committed after is found in a gap."""
    build_known_dataset(engine)
    with transaction(engine) as s:
        p1 = s.exec(select(Prediction).where(Prediction.client_id == "p1")).one()
        hole = event(s, p1, "reject", client_seconds=99)
        later = event(s, p1, "view")
        hole_values = hole.model_dump(exclude={"id"})
        hole_id = hole.id
        s.delete(hole)  # leaves the id unused, as an uncommitted transaction would
        assert later.id > hole_id  # type: ignore[operator]
    catch_up(engine)
    with transaction(engine) as s:
        s.add(FeedbackEvent(id=hole_id, **hole_values))  # the "late commit"
    catch_up(engine)
    with Session(engine) as s:
        fact = s.exec(
            select(MetricFact)
            .join(Prediction, Prediction.id == MetricFact.prediction_id)
            .where(Prediction.client_id == "p1")
        ).one()
        assert fact.contribution.get("overridden") == 1.0
        assert s.exec(select(func.count()).select_from(MetricFact)).one() == 9
