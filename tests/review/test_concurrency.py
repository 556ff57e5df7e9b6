"""Many reviewers claiming at once on PostgreSQL: nobody collides, nobody exceeds N."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlmodel import select

from corrigenda.db import make_engine, transaction
from corrigenda.decisions import decide
from corrigenda.models import ReviewClaim, ReviewItem
from corrigenda.review import claim_next_item
from tests.factories import make_prediction, make_project, make_user
from tests.review.conftest import make_review_item

REVIEWERS = 8
ITEMS = 40


def _seed(url: str, overlap: int):  # type: ignore[no-untyped-def]
    engine = make_engine(url)
    with transaction(engine) as session:
        project = make_project(session)
        project.policy = {**project.policy, "review_overlap": overlap, "gold_rate": 0}
        session.add(project)
        users = [make_user(session, project, email=f"r{i}@example.com") for i in range(REVIEWERS)]
        for i in range(ITEMS):
            make_review_item(session, project, make_prediction(session, project, f"p{i}"))
    engine.dispose()
    return project, users


def _review_until_empty(url, project, user, served, errors):  # type: ignore[no-untyped-def]
    engine = make_engine(url, pool_size=2)
    try:
        while True:
            with transaction(engine) as session:
                item = claim_next_item(session, project=project, user=user)
                if item is None:
                    return
                served.append((item.id, user.id))
            with transaction(engine) as session:
                decide(session, item_id=item.id, user=user, action="keep_model")
    except Exception as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("overlap", [1, 2])
def test_concurrent_claimers_never_collide_or_exceed_overlap(pg_url: str, overlap: int) -> None:
    project, users = _seed(pg_url, overlap)
    served: list[tuple[int, int]] = []
    errors: list[Exception] = []
    threads = [
        threading.Thread(target=_review_until_empty, args=(pg_url, project, u, served, errors))
        for u in users
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    per_item = Counter(item_id for item_id, _ in served)
    assert len(set(served)) == len(served), "an item was served twice to one reviewer"
    assert set(per_item.values()) == {overlap}, per_item
    assert len(per_item) == ITEMS
    engine = make_engine(pg_url)
    with transaction(engine) as session:
        statuses = Counter(i.status for i in session.exec(select(ReviewItem)))
        claims = Counter(c.status for c in session.exec(select(ReviewClaim)))
    engine.dispose()
    assert statuses == {"done": ITEMS}
    assert claims == {"decided": ITEMS * overlap}
