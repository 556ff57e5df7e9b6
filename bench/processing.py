"""Events processed per second by one worker process on PostgreSQL.

    python bench/processing.py --events 50000

Loads the same event stream twice into a throw-away database (COPY) — once for a project
with near-duplicate clustering on, once with exact hashes only (the baseline) — and drains
each with the workers' own batch function (``workers.jobs.BATCH`` = 5,000 events per
transaction, as the drain loop and the sweeper's tasks do; ``--batch`` to compare). Inputs
are support e-mails with 20 % planted near-duplicates. Also prints how many clusters,
examples and review items came out, the seconds spent in clustering (``assign_clusters``)
per pass, and Dawid–Skene vs majority accuracy on simulated noisy labelers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common_workers import corpus, throwaway_database  # noqa: E402
from sqlalchemy import text  # noqa: E402

from corrigenda import processing  # noqa: E402
from corrigenda.aggregate import dawid_skene  # noqa: E402
from corrigenda.db import make_engine  # noqa: E402
from corrigenda.models import default_policy, metadata  # noqa: E402
from workers.jobs import BATCH, process_batch  # noqa: E402

LABELS = ["billing", "bug", "feature", "account", "other"]
KINDS = ["view"] * 8 + ["accept"] * 4 + ["correct"] * 6 + ["reject", "flag"]


def load(url: str, slug: str, texts: list[str], events: int, near: bool, seed: int) -> int:
    """COPY a project, its predictions and ``events`` feedback events; returns project id."""
    rng = random.Random(seed)
    engine = make_engine(url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        policy = {**default_policy(), "near_duplicates": near}
        cursor.execute(
            "INSERT INTO project (slug, name, task_type, labels, allowed_origins, policy,"
            " created_at) VALUES (%s, %s, 'classification', %s, '[]', %s, now()) RETURNING id",
            (slug, slug, json.dumps(LABELS), json.dumps(policy)),
        )
        project_id = cursor.fetchone()[0]
        now = datetime.now(UTC)
        with cursor.copy(
            "COPY prediction (project_id, client_id, model_version, input, output, confidence,"
            " segment, created_at) FROM STDIN"
        ) as copy:
            for i, body in enumerate(texts):
                copy.write_row(
                    (
                        project_id,
                        f"p{i}",
                        "v1",
                        json.dumps({"text": body}),
                        json.dumps(rng.choice(LABELS)),
                        round(rng.random(), 3),
                        "{}",
                        now,
                    )
                )
        cursor.execute("SELECT id FROM prediction WHERE project_id = %s ORDER BY id", (project_id,))
        ids = [row[0] for row in cursor.fetchall()]
        with cursor.copy(
            "COPY feedback_event (event_id, project_id, prediction_id, kind, value, end_user,"
            " source, client_time, received_at) FROM STDIN"
        ) as copy:
            for n in range(events):
                kind = rng.choice(KINDS)
                value = json.dumps(rng.choice(LABELS)) if kind == "correct" else None
                moment = now - timedelta(seconds=rng.randrange(86_400))
                copy.write_row(
                    (
                        uuid.uuid5(uuid.NAMESPACE_URL, f"{slug}/{n}"),
                        project_id,
                        rng.choice(ids),
                        kind,
                        value,
                        f"user{rng.randrange(2000)}",
                        "api",
                        moment,
                        moment,
                    )
                )
        # Queued for processing, as ingestion does with each insert.
        cursor.execute(
            "INSERT INTO pending_event (id) SELECT id FROM feedback_event WHERE project_id = %s",
            (project_id,),
        )
        raw.commit()
        # What autovacuum does after a bulk load anyway; without statistics the planner
        # takes the freshly loaded tables for empty ones.
        cursor.execute("ANALYZE prediction")
        cursor.execute("ANALYZE feedback_event")
        cursor.execute("ANALYZE pending_event")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    return project_id


_clustering_seconds = [0.0]


def _timed_assign_clusters(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Wraps the clustering step processing calls, to tell how much of a pass it takes."""
    started = time.perf_counter()
    try:
        return _assign_clusters(*args, **kwargs)
    finally:
        _clustering_seconds[0] += time.perf_counter() - started


_assign_clusters = processing.assign_clusters
processing.assign_clusters = _timed_assign_clusters


def drain(url: str, project_id: int, batch: int = BATCH) -> tuple[float, int]:
    """Seconds to drain the project's events, and how many were processed."""
    _clustering_seconds[0] = 0.0
    engine = make_engine(url)
    # The project's events were copied in one go: its queue is one id range (the workers'
    # drain reads the whole queue in the same order, ``processing.pending_event_ids``).
    with engine.connect() as connection:
        first, last = connection.execute(
            text("SELECT min(id), max(id) FROM feedback_event WHERE project_id = :p"),
            {"p": project_id},
        ).one()
    pending = text(
        "SELECT id FROM pending_event WHERE id BETWEEN :first AND :last ORDER BY id LIMIT :n"
    )
    done = 0
    started = time.perf_counter()
    while True:
        with engine.connect() as connection:
            found = connection.execute(pending, {"first": first, "last": last, "n": batch})
            ids = [r[0] for r in found]
        if not ids:
            break
        done += process_batch(engine, ids)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, done


def outcome(url: str, project_id: int) -> str:
    engine = make_engine(url)
    with engine.connect() as connection:
        counts = [
            connection.execute(text(sql), {"p": project_id}).scalar_one()
            for sql in (
                "SELECT count(*) FROM cluster WHERE project_id = :p",
                "SELECT count(*) FROM example WHERE project_id = :p AND deleted_at IS NULL",
                "SELECT count(*) FROM review_item WHERE project_id = :p",
            )
        ]
    engine.dispose()
    return f"clusters {counts[0]:,}, examples {counts[1]:,}, review items {counts[2]:,}"


def crowd_accuracy(items: int = 100_000, workers: int = 30, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, items)
    skill = rng.uniform(0.45, 0.95, workers)
    item = np.repeat(np.arange(items), 3)
    who = np.concatenate([rng.choice(workers, 3, replace=False) for _ in range(items)])
    right = rng.random(item.size) < skill[who]
    given = np.where(right, truth[item], (truth[item] + rng.integers(1, 4, item.size)) % 4)
    started = time.perf_counter()
    posteriors, _, _ = dawid_skene(item, who, given, n_labels=4)
    seconds = time.perf_counter() - started
    votes = np.zeros((items, 4))
    np.add.at(votes, (item, given), 1.0)
    votes += rng.random(votes.shape) * 1e-6  # random tie-break
    print(
        f"Dawid-Skene accuracy {(posteriors.argmax(1) == truth).mean():.3f} vs majority "
        f"{(votes.argmax(1) == truth).mean():.3f} ({items:,} items x 3 of {workers} labelers, "
        f"{seconds:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=BATCH, help="events per task")
    parser.add_argument("--skip-crowd", action="store_true")
    args = parser.parse_args()
    texts, _ = corpus(max(1000, args.events // 4), seed=7)
    with throwaway_database() as url:
        engine = make_engine(url)
        metadata.create_all(engine)
        engine.dispose()
        exact = load(url, "exact", texts, args.events, near=False, seed=1)
        lsh = load(url, "lsh", texts, args.events, near=True, seed=1)
        load_before = os.getloadavg()[0]
        exact_seconds, exact_done = drain(url, exact, args.batch)
        exact_clustering = _clustering_seconds[0]
        lsh_seconds, lsh_done = drain(url, lsh, args.batch)
        lsh_clustering = _clustering_seconds[0]
        print(
            f"events: {args.events:,} on {len(texts):,} predictions (20 % near-duplicates),"
            f" {args.batch:,} events per batch"
        )
        print(
            f"exact-hash only: {exact_done / exact_seconds:,.0f} events/s ({exact_seconds:.1f} s,"
            f" clustering {exact_clustering:.1f} s); {outcome(url, exact)}"
        )
        print(
            f"with MinHash LSH: {lsh_done / lsh_seconds:,.0f} events/s ({lsh_seconds:.1f} s,"
            f" clustering {lsh_clustering:.1f} s); {outcome(url, lsh)}"
        )
        print(f"LSH / exact throughput ratio: {exact_seconds / lsh_seconds:.2f}")
        print(f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    if not args.skip_crowd:
        crowd_accuracy()


if __name__ == "__main__":
    main()
