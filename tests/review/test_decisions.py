from __future__ import annotations

import pytest
from sqlmodel import select

from corrigenda.adjudication import adjudicate, mark_gold
from corrigenda.db import transaction
from corrigenda.decisions import decide
from corrigenda.models import AuditLog, Decision, Example, ReviewItem
from corrigenda.review import ReviewError, claim_next_item
from corrigenda.undo import undo_last
from tests.factories import make_prediction, make_project, make_user
from tests.review.conftest import make_event, make_review_item


def _project(session, overlap=1):  # type: ignore[no-untyped-def]
    project = make_project(session)
    project.policy = {**project.policy, "review_overlap": overlap, "gold_rate": 0}
    session.add(project)
    return project


def _example(session, prediction_id):  # type: ignore[no-untyped-def]
    return session.exec(select(Example).where(Example.prediction_id == prediction_id)).first()


def test_accepting_the_user_correction_writes_a_reviewed_example(engine) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        project = _project(session)
        alice = make_user(session, project)
        prediction = make_prediction(session, project)
        event = make_event(session, prediction, value="billing", comment="it is billing")
        make_review_item(session, project, prediction)
    with transaction(engine) as session:
        item = claim_next_item(session, project=project, user=alice)
        decision = decide(session, item_id=item.id, user=alice, action="accept_correction")
    with transaction(engine) as session:
        example = _example(session, prediction.id)
        assert example.target == "billing" and example.source == "reviewed"
        assert example.provenance == {"decision_ids": [decision.id], "event_ids": [event.id]}
        assert session.get(ReviewItem, item.id).status == "done"
        audit = session.exec(select(AuditLog).where(AuditLog.action == "review.accept_correction"))
        assert audit.one().actor == alice.email


def test_relabel_is_checked_against_the_label_set(engine) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        project = _project(session)
        alice = make_user(session, project)
        make_review_item(session, project, make_prediction(session, project))
    with transaction(engine) as session:
        item = claim_next_item(session, project=project, user=alice)
        with pytest.raises(ReviewError, match="value: 'nope' is not a label"):
            decide(session, item_id=item.id, user=alice, action="relabel", value="nope")
        with pytest.raises(ReviewError, match="no end user corrected"):
            decide(session, item_id=item.id, user=alice, action="accept_correction")


def test_overlap_settles_on_the_nth_decision_and_disagreement_goes_to_an_admin(engine) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        project = _project(session, overlap=2)
        a, b = (make_user(session, project, email=f"{n}@example.com") for n in "ab")
        admin = make_user(session, project, role="admin", email="admin@example.com")
        agreed = make_review_item(session, project, make_prediction(session, project, "p1"))
        split = make_review_item(
            session, project, make_prediction(session, project, "p2"), priority=0.5
        )
    for user, label in ((a, "bug"), (b, "bug")):
        with transaction(engine) as session:
            item = claim_next_item(session, project=project, user=user)
            assert item.id == agreed.id
            decide(session, item_id=item.id, user=user, action="relabel", value=label)
    for user, label in ((a, "bug"), (b, "other")):
        with transaction(engine) as session:
            item = claim_next_item(session, project=project, user=user)
            assert item.id == split.id
            decide(session, item_id=item.id, user=user, action="relabel", value=label)
    with transaction(engine) as session:
        assert _example(session, agreed.prediction_id).agreement == 1.0
        settled = session.get(ReviewItem, split.id)
        assert settled.status == "done" and settled.needs_adjudication
        assert _example(session, split.prediction_id) is None
        adjudicate(session, item_id=split.id, admin=admin, action="relabel", value="other")
    with transaction(engine) as session:
        example = _example(session, split.prediction_id)
        assert example.target == "other" and example.agreement == 0.5
        assert not session.get(ReviewItem, split.id).needs_adjudication


def test_undo_retracts_the_example_and_brings_the_item_back(engine) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        project = _project(session)
        alice = make_user(session, project)
        first = make_review_item(
            session, project, make_prediction(session, project, "p1"), priority=2
        )
        make_review_item(session, project, make_prediction(session, project, "p2"), priority=1)
    with transaction(engine) as session:
        item = claim_next_item(session, project=project, user=alice)
        decide(session, item_id=item.id, user=alice, action="keep_model")
        following = claim_next_item(session, project=project, user=alice)
        assert following.id != first.id
    with transaction(engine) as session:
        back = undo_last(session, project=project, user=alice)
        assert back.id == first.id
    with transaction(engine) as session:
        assert _example(session, first.prediction_id).deleted_at is not None
        assert claim_next_item(session, project=project, user=alice).id == first.id
        decide(session, item_id=first.id, user=alice, action="relabel", value="feature")
    with transaction(engine) as session:
        example = _example(session, first.prediction_id)
        assert example.deleted_at is None and example.target == "feature"
        actions = [d.action for d in session.exec(select(Decision).order_by(Decision.id))]
        assert actions == ["keep_model", "undo", "relabel"]


def test_cluster_action_decides_every_near_duplicate_and_undo_reverts_all(engine) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        project = _project(session)
        alice = make_user(session, project)
        preds = [make_prediction(session, project, f"c{i}", cluster_id=77) for i in range(3)]
        lone = make_prediction(session, project, "lone", cluster_id=78)
        items = [
            make_review_item(session, project, p, priority=9 - i) for i, p in enumerate(preds[:2])
        ]
        make_review_item(session, project, lone, priority=0)
    with transaction(engine) as session:
        item = claim_next_item(session, project=project, user=alice)
        assert item.id == items[0].id
        decide(
            session, item_id=item.id, user=alice, action="relabel", value="feature", cluster=True
        )
    with transaction(engine) as session:
        assert [_example(session, p.id).target for p in preds] == ["feature"] * 3
        assert session.get(ReviewItem, items[1].id).status == "done"
        assert claim_next_item(session, project=project, user=alice).prediction_id == lone.id
    with transaction(engine) as session:
        assert undo_last(session, project=project, user=alice).id == items[0].id
    with transaction(engine) as session:
        assert all(_example(session, p.id).deleted_at is not None for p in preds)
        assert session.get(ReviewItem, items[1].id).status == "pending"


def test_gold_items_are_served_to_every_reviewer_and_never_settle(engine) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        project = _project(session)
        a, b = (make_user(session, project, email=f"{n}@example.com") for n in "ab")
        admin = make_user(session, project, role="admin", email="admin@example.com")
        prediction = make_prediction(session, project, "g")
        item = make_review_item(session, project, prediction)
    with transaction(engine) as session:
        claim_next_item(session, project=project, user=a)
        decide(session, item_id=item.id, user=a, action="relabel", value="billing")
    with transaction(engine) as session:
        project.policy = {**project.policy, "gold_rate": 1.0}
        session.add(project)
        gold = mark_gold(session, example=_example(session, prediction.id), actor=admin)
    for user in (a, b):
        with transaction(engine) as session:
            served = claim_next_item(session, project=project, user=user)
            assert served.id == gold.id
            decide(session, item_id=gold.id, user=user, action="relabel", value="bug")
    with transaction(engine) as session:
        assert session.get(ReviewItem, gold.id).status == "pending"
        assert claim_next_item(session, project=project, user=a) is None
        assert _example(session, prediction.id).target == "billing"


def test_reviewer_stats_and_agreement_from_the_decision_log(engine) -> None:  # type: ignore[no-untyped-def]
    from corrigenda.review_stats import project_agreement, reviewer_stats

    with transaction(engine) as session:
        project = _project(session, overlap=2)
        a, b = (make_user(session, project, email=f"{n}@example.com") for n in "ab")
        for i in range(4):
            make_review_item(session, project, make_prediction(session, project, f"p{i}"))
    answers = {a.id: ["bug", "bug", "other", "bug"], b.id: ["bug", "bug", "bug", "bug"]}
    for user in (a, b):
        for label in answers[user.id]:
            with transaction(engine) as session:
                item = claim_next_item(session, project=project, user=user)
                decide(
                    session,
                    item_id=item.id,
                    user=user,
                    action="relabel",
                    value=label,
                    duration_ms=2000,
                )
    with transaction(engine) as session:
        stats = {s.email: s for s in reviewer_stats(session, project.id)}
        agreement = project_agreement(session, project.id)
    assert stats["a@example.com"].decisions == 4
    assert stats["a@example.com"].median_seconds == 2.0
    assert stats["a@example.com"].agreement == 0.75
    assert agreement.items == 4 and agreement.pairs[0]["items"] == 4
    assert agreement.krippendorff is not None and agreement.krippendorff < 0.1
