"""Keeping rollups current (one bounded round at a time) and rebuilding them exactly.

A round reads what changed since the watermark — new feedback events and predictions by
id, new or revised examples by ``seq`` — recomputes the facts of the affected predictions
and moves the watermark, all in the caller's transaction. The watermark row is locked for
the round, so two workers never apply the same delta twice.

Ids are allocated before commit, so a scan can pass over an id whose transaction has not
committed yet. Such skipped ranges ("gaps") are rechecked on each round until they are
older than ``GAP_SETTLE_SECONDS``; recomputing a prediction twice is harmless.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import takewhile

from sqlalchemy import and_, delete, func, or_
from sqlmodel import Session, col, select

from ..db import is_sqlite
from ..models import (
    Example,
    FeedbackEvent,
    MetricFact,
    MetricRollup,
    MetricWatermark,
    PendingEvent,
    Prediction,
    Project,
    utcnow,
)
from .facts import FactBuilder, Groups, expand_groups, policies_of, refresh_facts, write_fresh_facts
from .inputs import rows_in_range
from .rollups import apply_deltas

WATERMARK = "rollups"
GAP_SETTLE_SECONDS = 300.0
MAX_GAPS = 500
SEQ_OVERLAP = 20  # re-read the last few example seqs: concurrent writers may share a seq


@dataclass
class RoundResult:
    predictions: int = 0
    changed: int = 0
    more: bool = False  # a scan hit the batch limit: run another round


def lock_watermark(session: Session) -> MetricWatermark:
    """The watermark row, created on first use and locked until the transaction ends."""
    query = select(MetricWatermark).where(MetricWatermark.name == WATERMARK)
    if not is_sqlite(session.get_bind()):  # SQLite: BEGIN IMMEDIATE already serialises
        query = query.with_for_update()
    mark = session.exec(query).first()
    if mark is None:
        mark = MetricWatermark(name=WATERMARK)
        session.add(mark)
        session.flush()
    return mark


def update_round(session: Session, *, batch: int = 2000) -> RoundResult:
    """One bounded round: recompute the predictions touched since the watermark."""
    mark = lock_watermark(session)
    now = time.time()
    before = (mark.last_event_id, mark.last_prediction_id)
    affected: set[int] = set()
    affected |= _scan_events(session, mark, batch, now)
    affected |= _scan_predictions(session, mark, batch, now)
    affected |= _scan_examples(session, mark, batch)
    changed = refresh_facts(session, affected) if affected else 0
    mark.updated_at = utcnow()
    session.add(mark)
    session.flush()
    moved = (mark.last_event_id, mark.last_prediction_id) != before
    more = moved and len(affected) >= batch // 2
    return RoundResult(predictions=len(affected), changed=changed, more=more)


def _scan_events(session: Session, mark: MetricWatermark, batch: int, now: float) -> set[int]:
    """New events in id order, up to the first one processing has not finished: processing
    may still mark it ignored (rate cap, quarantine), so the watermark waits for it."""
    rows = session.exec(
        select(FeedbackEvent.id, FeedbackEvent.prediction_id, col(PendingEvent.id).is_(None))
        .outerjoin(PendingEvent, col(PendingEvent.id) == FeedbackEvent.id)
        .where(col(FeedbackEvent.id) > mark.last_event_id)
        .order_by(col(FeedbackEvent.id))
        .limit(batch)
    ).all()
    done = list(takewhile(lambda r: r[2], rows))
    late = _in_gaps(session, FeedbackEvent, FeedbackEvent.prediction_id, mark.event_gaps)
    ids = [row[0] for row in done]
    mark.event_gaps = _next_gaps(mark.event_gaps, mark.last_event_id, ids, now)
    mark.last_event_id = ids[-1] if ids else mark.last_event_id
    return {row[1] for row in rows} | late


def _scan_predictions(session: Session, mark: MetricWatermark, batch: int, now: float) -> set[int]:
    ids = list(
        session.exec(
            select(Prediction.id)
            .where(col(Prediction.id) > mark.last_prediction_id)
            .order_by(col(Prediction.id))
            .limit(batch)
        )
    )
    late = _in_gaps(session, Prediction, Prediction.id, mark.prediction_gaps)
    mark.prediction_gaps = _next_gaps(mark.prediction_gaps, mark.last_prediction_id, ids, now)
    mark.last_prediction_id = ids[-1] if ids else mark.last_prediction_id
    return set(ids) | late


def _in_gaps(session: Session, table: type, column: object, gaps: list[list[float]]) -> set[int]:
    if not gaps:
        return set()
    ranges = [and_(table.id >= int(lo), table.id <= int(hi)) for lo, hi, _ in gaps]  # type: ignore[attr-defined]
    return set(session.exec(select(column).where(or_(*ranges))))  # type: ignore[call-overload]


def _next_gaps(
    gaps: list[list[float]], after: int, ids: Sequence[int], now: float
) -> list[list[float]]:
    """Drop settled gaps; add the id ranges this scan jumped over."""
    kept = [g for g in gaps if now - g[2] < GAP_SETTLE_SECONDS]
    previous = after
    for current in ids:
        if current > previous + 1:
            kept.append([previous + 1, current - 1, now])
        previous = current
    return kept[-MAX_GAPS:]


def _scan_examples(session: Session, mark: MetricWatermark, batch: int) -> set[int]:
    seqs = dict(mark.example_seqs or {})
    affected: set[int] = set()
    for project_id in session.exec(select(Project.id)):
        last = int(seqs.get(str(project_id), 0))
        rows = session.exec(
            select(Example.seq, Example.prediction_id)
            .where(Example.project_id == project_id, col(Example.seq) > last - SEQ_OVERLAP)
            .order_by(col(Example.seq))
            .limit(batch)
        ).all()
        affected.update(pid for _, pid in rows if pid is not None)
        if rows:
            seqs[str(project_id)] = max(last, max(seq for seq, _ in rows))
    mark.example_seqs = seqs
    return affected


def drain(session_factory, *, batch: int = 2000, max_rounds: int = 1000) -> RoundResult:  # type: ignore[no-untyped-def]
    """Run rounds, each in its own transaction, until nothing new is found."""
    total = RoundResult()
    for _ in range(max_rounds):
        with session_factory() as session:
            result = update_round(session, batch=batch)
        total.predictions += result.predictions
        total.changed += result.changed
        if not result.more:
            break
    return total


def rebuild_project(session: Session, project_id: int, *, batch: int = 20_000) -> int:
    """Delete and recompute every fact and rollup of one project from the raw tables.

    Predictions are read in keyset chunks of ``batch`` ids, each summarised by one query
    (``inputs.rows_in_range``); facts are written in bulk and rollups summed in memory,
    then written once."""
    lock_watermark(session)
    session.execute(delete(MetricFact).where(col(MetricFact.project_id) == project_id))
    session.execute(delete(MetricRollup).where(col(MetricRollup.project_id) == project_id))
    session.flush()
    builder = FactBuilder(policies_of(session, [project_id]))
    groups: Groups = {}
    low, total = 0, 0
    while (high := _chunk_end(session, project_id, low, batch)) is not None:
        rows = rows_in_range(session, project_id, low, high)
        total += write_fresh_facts(session, builder, rows, groups)
        low = high
    apply_deltas(session, expand_groups(groups))
    return total


def _chunk_end(session: Session, project_id: int, after: int, batch: int) -> int | None:
    """The id closing the next chunk of ``batch`` predictions after ``after``."""
    ids = (
        select(Prediction.id)
        .where(Prediction.project_id == project_id, col(Prediction.id) > after)
        .order_by(col(Prediction.id))
        .limit(batch)
        .subquery()
    )
    return session.exec(select(func.max(ids.c.id))).one()


def rebuild_all(session: Session, *, batch: int = 20_000) -> int:
    """Rebuild every project; the watermark moves to where the raw tables stood at the start
    (anything committed during the rebuild is read again by the next round — harmless)."""
    mark = lock_watermark(session)
    last_event = session.exec(select(func.max(FeedbackEvent.id))).one() or 0
    last_prediction = session.exec(select(func.max(Prediction.id))).one() or 0
    seqs = session.exec(
        select(Example.project_id, func.max(Example.seq)).group_by(col(Example.project_id))
    )
    example_seqs = {str(p): int(s or 0) for p, s in seqs}
    total = 0
    for project_id in list(session.exec(select(Project.id))):
        total += rebuild_project(session, project_id, batch=batch)  # type: ignore[arg-type]
    mark = lock_watermark(session)
    mark.last_event_id, mark.last_prediction_id = last_event, last_prediction
    mark.example_seqs = example_seqs
    session.add(mark)
    session.flush()
    return total
