"""Reviewer statistics and agreement per project, computed from the decision log."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import combinations
from typing import Any

from sqlmodel import Session, col, select

from .agreement import cohen_kappa, fleiss_kappa, krippendorff_alpha, units_to_fleiss
from .decisions import standing_votes, vote_label
from .models import Decision, Example, ReviewItem, User

# A pause longer than this between two decisions ends a working session.
SESSION_GAP = timedelta(minutes=10)
RECENT_ITEMS = 5000


@dataclass
class ReviewerStats:
    user_id: int
    email: str
    decisions: int = 0
    items_per_hour: float | None = None
    median_seconds: float | None = None
    agreement: float | None = None
    gold_answered: int = 0
    gold_correct: int = 0

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_answered if self.gold_answered else None


@dataclass
class ProjectAgreement:
    items: int = 0
    fleiss: float | None = None
    krippendorff: float | None = None
    pairs: list[dict[str, Any]] = field(default_factory=list)


def _project_decisions(session: Session, project_id: int) -> dict[int, list[Decision]]:
    """Decisions of the most recent items, grouped by item, in id order."""
    recent = (
        select(ReviewItem.id)
        .where(ReviewItem.project_id == project_id)
        .order_by(col(ReviewItem.id).desc())
        .limit(RECENT_ITEMS)
    )
    statement = (
        select(Decision).where(col(Decision.review_item_id).in_(recent)).order_by(col(Decision.id))
    )
    grouped: dict[int, list[Decision]] = defaultdict(list)
    for decision in session.exec(statement):
        grouped[decision.review_item_id].append(decision)
    return grouped


def _gold_items(session: Session, project_id: int) -> dict[int, Any]:
    """Gold review item id → the gold target (a reject key when the example is None)."""
    statement = (
        select(ReviewItem.id, Example.target)
        .join(Example, col(Example.prediction_id) == ReviewItem.prediction_id)
        .where(
            ReviewItem.project_id == project_id,
            ReviewItem.reason == "gold",
            Example.is_gold == True,  # noqa: E712 - SQL comparison
        )
    )
    return dict(session.exec(statement).all())


def project_agreement(session: Session, project_id: int) -> ProjectAgreement:
    """Fleiss' kappa and Krippendorff's alpha over items with 2+ reviewers; Cohen per pair."""
    gold = _gold_items(session, project_id)
    units: list[dict[int, str]] = []
    for item_id, decisions in _project_decisions(session, project_id).items():
        votes = standing_votes(decisions)
        if item_id not in gold and len(votes) >= 2:
            units.append({uid: vote_label(d) for uid, d in votes.items()})
    result = ProjectAgreement(items=len(units))
    labels = [list(u.values()) for u in units]
    result.fleiss = fleiss_kappa(units_to_fleiss(labels))
    result.krippendorff = krippendorff_alpha(labels)
    result.pairs = _pairwise(session, units)
    return result


def _pairwise(session: Session, units: list[dict[int, str]]) -> list[dict[str, Any]]:
    shared: dict[tuple[int, int], list[tuple[str, str]]] = defaultdict(list)
    for unit in units:
        for a, b in combinations(sorted(unit), 2):
            shared[(a, b)].append((unit[a], unit[b]))
    emails = _emails(session, {uid for pair in shared for uid in pair})
    return [
        {
            "a": emails.get(a, str(a)),
            "b": emails.get(b, str(b)),
            "items": len(pairs),
            "kappa": cohen_kappa(pairs),
        }
        for (a, b), pairs in sorted(shared.items())
    ]


def _emails(session: Session, user_ids: set[int]) -> dict[int, str]:
    if not user_ids:
        return {}
    rows = session.exec(select(User.id, User.email).where(col(User.id).in_(user_ids)))
    return dict(rows.all())


def reviewer_stats(session: Session, project_id: int) -> list[ReviewerStats]:
    """Per reviewer: decisions, items per hour of working time, median seconds per item,
    agreement with the settled label of multi-reviewed items, accuracy on gold items."""
    gold = _gold_items(session, project_id)
    stats: dict[int, ReviewerStats] = {}
    times: dict[int, list[datetime]] = defaultdict(list)
    durations: dict[int, list[float]] = defaultdict(list)
    matches: dict[int, list[bool]] = defaultdict(list)
    for item_id, decisions in _project_decisions(session, project_id).items():
        votes = standing_votes(decisions)
        for d in decisions:
            if d.reviewer_id is None or d.action == "undo":
                continue
            times[d.reviewer_id].append(d.created_at)
            if d.duration_ms is not None:
                durations[d.reviewer_id].append(d.duration_ms / 1000)
        _score(item_id, votes, gold, stats, matches)
    emails = _emails(session, set(times))
    for uid, stamps in times.items():
        row = stats.setdefault(uid, ReviewerStats(user_id=uid, email=""))
        row.email = emails.get(uid, str(uid))
        row.decisions = len(stamps)
        row.items_per_hour = _per_hour(sorted(stamps))
        row.median_seconds = statistics.median(durations[uid]) if durations[uid] else None
        row.agreement = sum(matches[uid]) / len(matches[uid]) if matches[uid] else None
    return sorted(stats.values(), key=lambda s: -s.decisions)


def _score(
    item_id: int,
    votes: dict[int, Decision],
    gold: dict[int, Any],
    stats: dict[int, ReviewerStats],
    matches: dict[int, list[bool]],
) -> None:
    for uid, vote in votes.items():
        row = stats.setdefault(uid, ReviewerStats(user_id=uid, email=""))
        if item_id in gold:
            row.gold_answered += 1
            row.gold_correct += vote.action != "reject" and vote.value == gold[item_id]
        elif len(votes) >= 2:
            others = [vote_label(v) for u, v in votes.items() if u != uid]
            matches[uid].append(vote_label(vote) in others)


def _per_hour(stamps: list[datetime]) -> float | None:
    """Decisions per hour of working time (pauses over SESSION_GAP are not work)."""
    if len(stamps) < 2:
        return None
    worked = sum(
        (b - a).total_seconds()
        for a, b in zip(stamps, stamps[1:], strict=False)
        if b - a <= SESSION_GAP
    )
    return (len(stamps) - 1) / (worked / 3600) if worked > 0 else None
