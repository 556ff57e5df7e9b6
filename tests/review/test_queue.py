from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from corrigenda.db import transaction
from corrigenda.decisions import decide
from corrigenda.models import ReviewClaim, ReviewItem, utcnow
from corrigenda.review import QueueFilter, ReviewError, claim_next_item, expire_leases
from tests.factories import make_prediction, make_project, make_user
from tests.review.conftest import make_review_item


def _setup(engine, n_items=3, overlap=1, **project_kwargs):  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        project = make_project(session, **project_kwargs)
        project.policy = {**project.policy, "review_overlap": overlap, "gold_rate": 0}
        session.add(project)
        users = [make_user(session, project, email=f"r{i}@example.com") for i in range(3)]
        items = []
        for i in range(n_items):
            prediction = make_prediction(session, project, client_id=f"p-{i}")
            items.append(make_review_item(session, project, prediction, priority=float(i)))
        return project, users, [item.id for item in items]


def test_claims_follow_priority_and_resume_the_held_item(engine) -> None:  # type: ignore[no-untyped-def]
    project, (alice, bob, _), ids = _setup(engine)
    with transaction(engine) as session:
        first = claim_next_item(session, project=project, user=alice)
        again = claim_next_item(session, project=project, user=alice)
        other = claim_next_item(session, project=project, user=bob)
    assert first is not None and first.id == ids[2]
    assert again is not None and again.id == first.id
    assert other is not None and other.id == ids[1]


def test_an_item_is_never_held_by_more_than_required(engine) -> None:  # type: ignore[no-untyped-def]
    project, (a, b, c), ids = _setup(engine, n_items=1, overlap=2)
    with transaction(engine) as session:
        got = [claim_next_item(session, project=project, user=u) for u in (a, b, c)]
    assert [g.id if g else None for g in got] == [ids[0], ids[0], None]
    with transaction(engine) as session:
        assert session.get(ReviewItem, ids[0]).status == "claimed"


def test_skip_frees_the_slot_and_never_returns_to_the_skipper(engine) -> None:  # type: ignore[no-untyped-def]
    project, (alice, bob, _), ids = _setup(engine, n_items=1)
    with transaction(engine) as session:
        item = claim_next_item(session, project=project, user=alice)
        assert claim_next_item(session, project=project, user=bob) is None
        decide(session, item_id=item.id, user=alice, action="skip")
    with transaction(engine) as session:
        assert claim_next_item(session, project=project, user=alice) is None
        assert claim_next_item(session, project=project, user=bob).id == ids[0]


def test_expired_leases_return_items_to_the_queue(engine) -> None:  # type: ignore[no-untyped-def]
    project, (alice, bob, _), ids = _setup(engine, n_items=1)
    with transaction(engine) as session:
        claim_next_item(session, project=project, user=alice, lease_seconds=60)
        claim = session.exec(select(ReviewClaim)).one()
        claim.lease_expires_at = utcnow() - timedelta(seconds=1)
        session.add(claim)
    with transaction(engine) as session:
        assert expire_leases(session=session) == 1
        assert session.get(ReviewItem, ids[0]).status == "pending"
    with transaction(engine) as session:
        assert claim_next_item(session, project=project, user=bob).id == ids[0]
        with pytest.raises(ReviewError, match="lease ran out"):
            decide(session, item_id=ids[0], user=alice, action="keep_model")


def test_filters_by_model_version_label_segment_and_reason(engine) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        project = make_project(session)
        user = make_user(session, project)
        p1 = make_prediction(session, project, "a", output="bug", segment={"locale": "de"})
        p2 = make_prediction(session, project, "b", output="billing", model_version="v2")
        i1 = make_review_item(session, project, p1, priority=0.0)
        i2 = make_review_item(session, project, p2, priority=5.0, reason="audit")
        ids = {"i1": i1.id, "i2": i2.id}
    cases = [
        (QueueFilter(model_version="v1"), ids["i1"]),
        (QueueFilter(predicted_label="billing"), ids["i2"]),
        (QueueFilter(segment={"locale": "de"}), ids["i1"]),
        (QueueFilter(reason="audit"), ids["i2"]),
        (QueueFilter(segment={"locale": "fr"}), None),
    ]
    for filters, expected in cases:
        with transaction(engine) as session:
            got = claim_next_item(session, project=project, user=user, filters=filters)
            assert (got.id if got else None) == expected, filters
