"""Big batches (the fast path) against small ones and against SQLite, on both databases."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from corrigenda.clustering import minhash, similarity
from corrigenda.db import transaction
from corrigenda.models import Cluster, Prediction, Project, ReviewItem
from corrigenda.normalize import normalize_text
from corrigenda.processing import process_events, reaggregate_project
from tests.factories import make_prediction, make_project
from tests.workers.helpers import LABELS, make_event, snapshot, variant
from workers.jobs import BATCH, drain_events

WORDS = (
    "invoice refund crash upload photo dark mode dashboard charged twice subscription search "
    "android login password reset email export report slow timeout billing plan upgrade"
).split()


def build(
    engine: Engine, *, texts: int, predictions: int, users: int, events: int, seed: int
) -> list[int]:
    """Many distinct inputs (each repeated in exact-duplicate variants), a few users who
    mostly agree, every kind of event, several per (prediction, user)."""
    rng = random.Random(seed)
    bodies = [" ".join(rng.sample(WORDS, 12)) for _ in range(texts)]
    with transaction(engine) as session:
        project = make_project(session, "batching")
        project.policy = {**project.policy, "audit_rate": 0.2, "review_overlap": 2}
        made = [
            make_prediction(
                session,
                project,
                f"b-{i:03d}",
                input={"text": variant(bodies[i % texts], i // texts)},
                output=LABELS[i % 3],
                confidence=round(0.5 + (i % 5) / 10, 2),
            )
            for i in range(predictions)
        ]
        kinds = ["view", "accept", "accept", "correct", "correct", "reject", "flag"]
        ids = []
        for _ in range(events):
            index = rng.randrange(predictions)
            kind = rng.choice(kinds) if rng.random() < 0.9 else "view"
            truth = LABELS[(index % texts) % 4]
            value = truth if rng.random() < 0.85 else rng.choice(LABELS)
            event = make_event(
                session,
                made[index],
                kind,
                value if kind == "correct" else None,
                end_user=f"user{rng.randrange(users)}",
                seconds=rng.randrange(200),
                received_seconds=rng.randrange(200),
                event_id=uuid.UUID(int=rng.getrandbits(128)),
            )
            ids.append(event.id)
        return ids  # type: ignore[return-value]


def _process_in(engine: Engine, ids: list[int], size: int) -> None:
    for start in range(0, len(ids), size):
        with transaction(engine) as session:
            process_events(session, event_ids=ids[start : start + size])


def _stored(engine: Engine) -> dict[str, Any]:
    """What the snapshot leaves out: item columns the fast insert writes, cluster stamps."""
    with Session(engine) as session:
        items = sorted(
            (i.prediction_id, i.cluster_id, i.required_reviews, i.needs_adjudication)
            for i in session.exec(select(ReviewItem))
        )
        clusters = list(session.exec(select(Cluster)))
    return {
        "items": items,
        "never_touched": sum(c.touched_at is None for c in clusters),
        "stale": sum(
            c.touched_at is not None and (c.aggregated_at is None or c.touched_at > c.aggregated_at)
            for c in clusters
        ),
    }


def test_one_big_batch_equals_many_small_ones_and_the_sqlite_baseline(
    engine: Engine, undisturbed: Callable[[Callable[[Any], Any]], dict[str, Any]]
) -> None:
    def workload(target: Engine) -> list[int]:
        return build(target, texts=40, predictions=120, users=6, events=900, seed=11)

    expected = undisturbed(workload)  # SQLite, drained by the workers' loop (500 a batch)
    ids = workload(engine)
    assert len(ids) < BATCH  # so the whole stream is one batch here
    _process_in(engine, ids, len(ids))
    outcome = snapshot(engine)
    assert outcome == expected
    assert outcome["pending"] == 0 and outcome["examples"] and outcome["items"]
    stored = _stored(engine)
    assert stored["stale"] == 0  # routed in the same transaction that changed them
    assert stored["never_touched"] == len(outcome["clusters"])  # nothing waits for re-routing
    assert {(r, a) for _, _, r, a in stored["items"]} == {(2, False)}

    # Re-aggregation finds nothing to re-route and changes nothing.
    with transaction(engine) as session:
        project = session.get(Project, 1)
        assert project is not None
        assert reaggregate_project(session, project=project, learn=False).clusters_routed == 0
    assert snapshot(engine) == expected


def test_small_batches_and_the_drain_loop_agree(
    engine: Engine, undisturbed: Callable[[Callable[[Any], Any]], dict[str, Any]]
) -> None:
    def workload(target: Engine) -> list[int]:
        return build(target, texts=30, predictions=60, users=5, events=400, seed=3)

    expected = undisturbed(workload)
    ids = workload(engine)
    _process_in(engine, ids[: len(ids) // 2], 37)  # half in small batches, in id order
    drain_events(engine)  # the rest by the workers' loop
    assert snapshot(engine) == expected
    assert _stored(engine)["stale"] == 0
    assert len(ids) == 400


def test_near_duplicate_clusters_do_not_depend_on_how_the_stream_is_cut(engine: Engine) -> None:
    """A ~ B and B ~ C but not A ~ C: the greedy choice depends on which text comes first.
    Texts are clustered in stream order, so one batch gives what one event at a time gives."""
    rng = random.Random(5)
    words = [f"w{rng.randrange(10**6)}x" for _ in range(60)]
    texts = {name: " ".join(words[8 * i : 8 * i + 40]) for i, name in enumerate("ABC")}
    signatures = minhash([normalize_text(t) for t in texts.values()])
    pair = {(i, j): float(similarity(signatures[i : i + 1], signatures[j : j + 1])[0])
            for i, j in ((0, 1), (1, 2), (0, 2))}  # fmt: skip
    assert pair[0, 1] > 0.55 and pair[1, 2] > 0.55 and pair[0, 2] < 0.45, pair  # threshold 0.5

    def partition(slug: str, batch: int) -> set[frozenset[str]]:
        with transaction(engine) as session:
            project = make_project(session, slug)
            made = {
                name: make_prediction(session, project, f"{slug}-{name}", input={"text": text})
                for name, text in texts.items()  # prediction ids in the order A, B, C
            }
            # The stream reaches them in the opposite order: C first, A last.
            ids = [make_event(session, made[name], "view").id for name in "CBA"]
        _process_in(engine, ids, batch)  # type: ignore[arg-type]
        with Session(engine) as session:
            by_cluster: dict[int, set[str]] = {}
            for name, prediction in made.items():
                cluster = session.get(Prediction, prediction.id).cluster_id  # type: ignore[union-attr]
                by_cluster.setdefault(cluster, set()).add(name)  # type: ignore[arg-type]
        return {frozenset(names) for names in by_cluster.values()}

    one_at_a_time = partition("one-by-one", 1)
    assert one_at_a_time == {frozenset("BC"), frozenset("A")}  # C came first and took B
    assert partition("one-batch", 3) == one_at_a_time
