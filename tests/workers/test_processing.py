"""Processing on both databases: dedupe level by level, aggregation, routing, set-aside."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from corrigenda.db import make_engine, transaction
from corrigenda.examples import upsert_example
from corrigenda.models import (
    Cluster,
    EffectiveOpinion,
    EndUserStatus,
    Example,
    FeedbackEvent,
    PendingEvent,
    Prediction,
    Project,
    ReviewItem,
)
from corrigenda.processing import (
    pending_event_ids,
    process_events,
    reaggregate_project,
    replay_events,
    set_aside,
    set_aside_events,
)
from corrigenda.routing import audit_selected
from tests.factories import make_prediction, make_project
from tests.workers.helpers import make_event, snapshot

LONG = (
    "Hello, my invoice for March shows the wrong amount, I was billed for the premium plan "
    "although I downgraded to the basic plan in February, please correct it"
)


def run(engine: Engine) -> Any:
    with transaction(engine) as session:
        return process_events(session, event_ids=pending_event_ids(session=session, limit=500))


def setup(engine: Engine, **policy: Any) -> int:
    with transaction(engine) as session:
        project = make_project(session)
        project.policy = {**project.policy, "audit_rate": 0.0, **policy}
        return project.id  # type: ignore[return-value]


def add(engine: Engine, project_id: int, client_id: str, text: str, output: str = "bug") -> int:
    with transaction(engine) as session:
        project = session.get(Project, project_id)
        return make_prediction(session, project, client_id, input={"text": text}, output=output).id


def event(engine: Engine, prediction_id: int, kind: str, value: Any = None, **kw: Any) -> int:
    with transaction(engine) as session:
        prediction = session.get(Prediction, prediction_id)
        return make_event(session, prediction, kind, value, **kw).id  # type: ignore[return-value]


def items(engine: Engine) -> list[ReviewItem]:
    with Session(engine) as session:
        return list(session.exec(select(ReviewItem).order_by(col(ReviewItem.id))))


def examples(engine: Engine) -> list[Example]:
    with Session(engine) as session:
        return list(session.exec(select(Example).where(col(Example.deleted_at).is_(None))))


# --- dedupe level a: identical event ids -------------------------------------------------


def test_an_event_id_is_stored_once(engine: Engine) -> None:
    project_id = setup(engine)
    pid = add(engine, project_id, "a", LONG)
    same = uuid.uuid4()
    event(engine, pid, "correct", "billing", event_id=same)
    with pytest.raises(IntegrityError):
        event(engine, pid, "correct", "billing", event_id=same)


# --- level b: one effective opinion per (prediction, end user) ---------------------------


def test_repeated_clicks_collapse_to_the_latest_opinion_and_keep_history(engine: Engine) -> None:
    project_id = setup(engine)
    pid = add(engine, project_id, "a", LONG)
    event(engine, pid, "correct", "billing", end_user="ann", seconds=10)
    event(engine, pid, "correct", "billing", end_user="ann", seconds=11)
    event(engine, pid, "correct", "feature", end_user="ann", seconds=5)  # older: loses
    result = run(engine)
    assert result.processed == 3
    with Session(engine) as session:
        (opinion,) = session.exec(select(EffectiveOpinion)).all()
        assert (opinion.value, opinion.events_seen) == ("billing", 3)
        assert len(session.exec(select(FeedbackEvent)).all()) == 3
    assert [(i.reason, i.prediction_id) for i in items(engine)] == [("single_correction", pid)]


def test_later_batches_fold_into_each_users_stored_opinion(engine: Engine) -> None:
    project_id = setup(engine)
    pid = add(engine, project_id, "a", LONG)
    other = add(engine, project_id, "b", "Where can I change my password?")
    ann = 'ann "Ä" \\ 1'  # quotes, a backslash and non-ASCII in the key match exactly
    event(engine, pid, "correct", "billing", end_user=ann, seconds=10)
    event(engine, pid, "correct", "feature", end_user="bob", seconds=10)
    event(engine, other, "correct", "feature", end_user=ann, seconds=10)
    run(engine)
    event(engine, pid, "correct", "feature", end_user=ann, seconds=20)
    event(engine, pid, "correct", "billing", end_user=ann, seconds=1)  # older: loses
    run(engine)
    with Session(engine) as session:
        stored = {
            (o.prediction_id, o.end_user): (o.value, o.events_seen)
            for o in session.exec(select(EffectiveOpinion))
        }
    assert stored == {
        (pid, ann): ("feature", 3),
        (pid, "bob"): ("feature", 1),
        (other, ann): ("feature", 1),
    }


def test_received_time_breaks_ties_between_equal_client_times(engine: Engine) -> None:
    project_id = setup(engine)
    pid = add(engine, project_id, "a", LONG)
    event(engine, pid, "correct", "feature", end_user="ann", seconds=5, received_seconds=9)
    event(engine, pid, "correct", "billing", end_user="ann", seconds=5, received_seconds=7)
    run(engine)
    with Session(engine) as session:
        assert session.exec(select(EffectiveOpinion.value)).one() == "feature"


# --- level c and d: exact and near-duplicate inputs --------------------------------------


def test_identical_inputs_after_normalisation_share_a_cluster(engine: Engine) -> None:
    project_id = setup(engine)
    a = add(engine, project_id, "a", LONG)
    b = add(engine, project_id, "b", "  " + LONG.upper() + "\n\nKind regards,\nAnn")
    event(engine, a, "correct", "billing", end_user="ann")
    event(engine, b, "correct", "billing", end_user="bob")
    run(engine)
    with Session(engine) as session:
        first, second = (session.get(Prediction, i) for i in (a, b))
        assert first.content_hash == second.content_hash  # type: ignore[union-attr]
        assert first.cluster_id == second.cluster_id  # type: ignore[union-attr]
    # two independent agreeing corrections across the cluster: consensus, no review
    assert sorted(e.prediction_id for e in examples(engine)) == [a, b]
    assert {e.target for e in examples(engine)} == {"billing"}
    assert items(engine) == []


def test_near_duplicates_join_a_cluster_that_survives_a_restart(engine: Engine) -> None:
    project_id = setup(engine)
    a = add(engine, project_id, "a", LONG)
    event(engine, a, "view", end_user="ann")
    run(engine)
    engine.dispose()
    fresh = make_engine(str(engine.url.render_as_string(hide_password=False)))
    b = add(fresh, project_id, "b", LONG.replace("March", "April"))
    c = add(fresh, project_id, "c", "Please add a dark mode to the settings page")
    event(fresh, b, "view", end_user="bob")
    event(fresh, c, "view", end_user="bob")
    result = run(fresh)
    assert result.near_duplicates == 1
    with Session(fresh) as session:
        clusters = {i: session.get(Prediction, i).cluster_id for i in (a, b, c)}  # type: ignore[union-attr]
        assert clusters[a] == clusters[b] != clusters[c]
        assert session.get(Cluster, clusters[a]).signature  # type: ignore[union-attr]
        assert len(session.exec(select(Cluster)).all()) == 2
    fresh.dispose()


def test_near_duplicate_clustering_can_be_switched_off(engine: Engine) -> None:
    project_id = setup(engine, near_duplicates=False)
    a = add(engine, project_id, "a", LONG)
    b = add(engine, project_id, "b", LONG.replace("March", "April"))
    event(engine, a, "view")
    event(engine, b, "view")
    run(engine)
    with Session(engine) as session:
        assert session.get(Prediction, a).cluster_id != session.get(Prediction, b).cluster_id  # type: ignore[union-attr]


# --- level e: abusive end users ------------------------------------------------------------


def test_events_over_the_hourly_cap_do_not_count(engine: Engine) -> None:
    project_id = setup(engine, user_cap_per_hour=2)
    ids = [add(engine, project_id, f"p{i}", f"{LONG} number {i} {'x' * i}") for i in range(3)]
    for n, pid in enumerate(ids):
        event(engine, pid, "correct", "billing", end_user="spammer", seconds=n)
    result = run(engine)
    assert (result.processed, result.ignored) == (3, 1)
    with Session(engine) as session:
        assert len(session.exec(select(EffectiveOpinion)).all()) == 2
        capped = session.exec(select(FeedbackEvent).where(FeedbackEvent.ignored_reason == "cap"))
        assert [e.prediction_id for e in capped] == [ids[2]]


def test_users_who_disagree_with_settled_labels_are_quarantined(engine: Engine) -> None:
    project_id = setup(engine, quarantine={"min_settled": 3, "min_rate": 0.5, "factor": 2.0})
    texts = [f"ticket {i}: " + " ".join(f"w{i}x{j}" for j in range(12)) for i in range(5)]
    pids = [add(engine, project_id, f"p{i}", text) for i, text in enumerate(texts)]
    for pid in pids[:4]:
        for user in ("ann", "bob"):
            event(engine, pid, "correct", "billing", end_user=user)
        event(engine, pid, "correct", "feature", end_user="troll")
    run(engine)
    assert {i.reason for i in items(engine)} == {"low_agreement"}
    with transaction(engine) as session:  # reviewers settle the four items
        for pid in pids[:4]:
            prediction = session.get(Prediction, pid)
            upsert_example(
                session, prediction=prediction, target="billing", source="reviewed", provenance={}
            )
    with transaction(engine) as session:
        project = session.get(Project, project_id)
        outcome = reaggregate_project(session, project=project)  # type: ignore[arg-type]
    assert outcome.quarantined == 1
    with Session(engine) as session:
        troll = session.get(EndUserStatus, (project_id, "troll"))
        assert troll is not None and troll.quarantined_at is not None
        assert "4 of 4" in (troll.quarantine_reason or "")
    # the troll's next dissent weighs nothing: two agreeing users settle the label
    for user, label in (("ann", "bug"), ("bob", "bug"), ("troll", "feature")):
        event(engine, pids[4], "correct", label, end_user=user)
    run(engine)
    consensus = [e for e in examples(engine) if e.source == "consensus"]
    assert [(e.prediction_id, e.target) for e in consensus] == [(pids[4], "bug")]
    assert items(engine) == []


# --- aggregation and routing --------------------------------------------------------------


def test_a_tie_goes_to_review_as_a_conflict_and_withdraws_consensus(engine: Engine) -> None:
    project_id = setup(engine)
    pid = add(engine, project_id, "a", LONG)
    event(engine, pid, "correct", "billing", end_user="ann")
    event(engine, pid, "correct", "billing", end_user="bob")
    run(engine)
    assert len(examples(engine)) == 1
    event(engine, pid, "correct", "feature", end_user="cy")
    event(engine, pid, "correct", "feature", end_user="dee")
    run(engine)
    assert examples(engine) == []
    (item,) = items(engine)
    assert (item.reason, item.status, item.prediction_id) == ("conflict", "pending", pid)
    # both change their minds later: consensus again, the example comes back, the item goes
    event(engine, pid, "correct", "billing", end_user="cy", seconds=60)
    event(engine, pid, "correct", "billing", end_user="dee", seconds=60)
    run(engine)
    assert [(e.target, e.agreement) for e in examples(engine)] == [("billing", 1.0)]
    assert items(engine) == []


def test_one_open_item_per_cluster_with_overlap_from_policy(engine: Engine) -> None:
    project_id = setup(engine, review_overlap=3)
    a = add(engine, project_id, "a", LONG)
    b = add(engine, project_id, "b", LONG.lower())
    event(engine, a, "correct", "billing", end_user="ann")
    run(engine)
    event(engine, b, "correct", "feature", end_user="bob")
    event(engine, b, "flag", end_user="cy")
    run(engine)
    (item,) = items(engine)
    assert (item.reason, item.required_reviews, item.prediction_id) == ("flagged", 3, a)
    assert item.priority >= 0.5


def test_priority_is_expected_cost_times_uncertainty(engine: Engine) -> None:
    project_id = setup(engine, cost_matrix={"billing": {"bug": 5.0}})
    costly = add(engine, project_id, "a", LONG)
    cheap = add(engine, project_id, "b", "Please add a dark mode to the settings page")
    event(engine, costly, "correct", "billing", end_user="ann")
    event(engine, cheap, "correct", "feature", end_user="ann")
    run(engine)
    by_prediction = {i.prediction_id: i.priority for i in items(engine)}
    assert by_prediction[costly] > by_prediction[cheap] > 0


def test_trusted_user_settles_alone_and_high_cost_goes_to_review(engine: Engine) -> None:
    project_id = setup(
        engine,
        trusted_users=["lead"],
        high_cost_threshold=3,
        cost_matrix={"other": {"bug": 4.0}},
    )
    a = add(engine, project_id, "a", LONG)
    b = add(engine, project_id, "b", "Please add a dark mode to the settings page")
    event(engine, a, "correct", "billing", end_user="lead")
    event(engine, b, "correct", "other", end_user="lead")
    run(engine)
    assert [(e.prediction_id, e.target, e.source) for e in examples(engine)] == [
        (a, "billing", "consensus")
    ]
    assert [(i.prediction_id, i.reason) for i in items(engine)] == [(b, "high_cost")]


def test_audit_sample_is_deterministic_and_includes_unoverridden(engine: Engine) -> None:
    project_id = setup(engine, audit_rate=0.5)
    ids = [add(engine, project_id, f"p{i}", f"{LONG} {i} {'y' * i}") for i in range(12)]
    for pid in ids:
        event(engine, pid, "view")
    run(engine)
    expected = sorted(pid for pid in ids if audit_selected(pid, 0.5))
    assert 0 < len(expected) < len(ids)
    audited = sorted(i.prediction_id for i in items(engine) if i.reason == "audit")
    assert audited == expected
    with Session(engine) as session:
        flags = {p.id: p.audit_sample for p in session.exec(select(Prediction))}
    assert sorted(p for p, flag in flags.items() if flag) == expected


def test_running_a_batch_twice_changes_nothing(engine: Engine) -> None:
    project_id = setup(engine, audit_rate=0.3)
    ids = [add(engine, project_id, f"p{i}", f"{LONG} {i} {'z' * i}") for i in range(6)]
    event_ids = [event(engine, pid, "correct", "billing", end_user=f"u{pid % 2}") for pid in ids]
    with transaction(engine) as session:
        process_events(session, event_ids=event_ids)
    before = snapshot(engine)
    with transaction(engine) as session:
        assert process_events(session, event_ids=event_ids).processed == 0
    assert snapshot(engine) == before


def test_a_pending_row_whose_event_is_gone_is_claimed_and_dropped(engine: Engine) -> None:
    """No foreign key: an orphan (its event deleted by hand) must not break a batch."""
    project_id = setup(engine)
    pid = add(engine, project_id, "a", LONG)
    gone = event(engine, pid, "correct", "billing", end_user="ann")
    kept = event(engine, pid, "correct", "billing", end_user="bob")
    with transaction(engine) as session:
        session.execute(delete(FeedbackEvent).where(col(FeedbackEvent.id) == gone))
    result = run(engine)
    assert (result.processed, result.set_aside) == (1, 0)
    with transaction(engine) as session:
        assert pending_event_ids(session=session, limit=10) == []
        assert session.get(FeedbackEvent, kept).error is None  # type: ignore[union-attr]


def test_setting_aside_takes_the_event_out_of_the_queue_once(engine: Engine) -> None:
    project_id = setup(engine)
    pid = add(engine, project_id, "a", LONG)
    first = event(engine, pid, "correct", "billing", end_user="ann")
    with transaction(engine) as session:
        set_aside(session, event_id=first, reason="broken")
        assert pending_event_ids(session=session, limit=10) == []
    with transaction(engine) as session:
        set_aside(session, event_id=first, reason="again")  # no longer pending: unchanged
        assert session.get(FeedbackEvent, first).error == "broken"  # type: ignore[union-attr]
        assert replay_events(session, event_ids=[first]) == [first]
        assert pending_event_ids(session=session, limit=10) == [first]
    assert run(engine).processed == 1


def test_bad_events_are_set_aside_with_a_reason_and_can_be_replayed(engine: Engine) -> None:
    project_id = setup(engine)
    pid = add(engine, project_id, "a", LONG)
    bad = event(engine, pid, "correct", "no-such-label", end_user="ann")
    good = event(engine, pid, "correct", "billing", end_user="bob")
    result = run(engine)
    assert (result.processed, result.set_aside) == (1, 1)
    with transaction(engine) as session:
        (aside,) = set_aside_events(session)
        assert aside.id == bad and "not one of the project's labels" in (aside.error or "")
        assert pending_event_ids(session=session, limit=10) == []
        project = session.get(Project, project_id)
        project.labels = [*project.labels, "no-such-label"]  # type: ignore[union-attr]
    with transaction(engine) as session:
        assert replay_events(session) == [bad]
    assert run(engine).processed == 1
    with Session(engine) as session:
        # Both processed: no pending row, no error.
        assert session.exec(select(func.count()).select_from(PendingEvent)).one() == 0
        assert [session.get(FeedbackEvent, i).error for i in (good, bad)] == [None, None]  # type: ignore[union-attr]
    assert items(engine)[0].reason == "conflict"
