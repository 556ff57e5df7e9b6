"""Every figure on a constructed data set equals its hand-computed value.

Data set (tests/metrics/conftest.py): six production predictions of v1 on one day.
shown = p1..p5 (p1-p3 view events, p4 shown_at, p5 opinions only); p6 never shown.
Effective opinions: p1 accept; p2 reject (client time beats arrival order); p5 accept by
u1 + correct by u2 → overridden. So overridden 2/5, accepted 1/5, silent 2/5.
Confident (threshold 0.5, no confidence = did not abstain): p1, p3, p4, p5 → 4/5.
Audited (settled audit items with a live example): p1 right, p2 wrong, p5 wrong → 1/3;
p4's example is deleted, p3 settled outside the audit. Cost: p2 default 1, p5 matrix 5 →
6 over 3 audited = 2,000 per 1,000. Time saved = (5 − 2) × 60 s = 0.05 h.
"""

from __future__ import annotations

import pytest
from sqlmodel import Session

from corrigenda.db import transaction
from corrigenda.metrics import Filters, build_report, rebuild_all
from corrigenda.metrics.definitions import ttd_bucket, ttd_bucket_upper
from corrigenda.metrics.updater import drain
from corrigenda.models import Project

from .conftest import DAY, build_known_dataset


@pytest.fixture
def report(engine):  # type: ignore[no-untyped-def]
    project_id = build_known_dataset(engine)
    drain(lambda: transaction(engine))
    with Session(engine) as session:
        project = session.get(Project, project_id)
        return build_report(session, project, Filters())  # type: ignore[arg-type]


def test_counts_and_rates(report) -> None:  # type: ignore[no-untyped-def]
    d = report.overall.as_dict()
    assert d["predictions"] == 6 and d["shown"] == 5 and d["audited"] == 3
    assert d["override_rate"]["k"] == 2 and d["override_rate"]["estimate"] == pytest.approx(0.4)
    assert d["acceptance_rate"]["estimate"] == pytest.approx(0.2)
    assert d["silent_rate"]["estimate"] == pytest.approx(0.4)
    assert d["coverage"]["estimate"] == pytest.approx(0.8)
    assert d["reviewed_accuracy_biased"]["k"] == 2 and d["reviewed_accuracy_biased"]["n"] == 4


def test_audited_accuracy_with_wilson_bounds(report) -> None:  # type: ignore[no-untyped-def]
    accuracy = report.overall.as_dict()["audited_accuracy"]
    # Wilson 95 % for 1/3, by hand: (0.0615, 0.7923).
    assert accuracy["estimate"] == pytest.approx(1 / 3)
    assert accuracy["low"] == pytest.approx(0.06149, abs=5e-5)
    assert accuracy["high"] == pytest.approx(0.79234, abs=5e-5)
    # 2/5 override rate: Wilson (0.1176, 0.7693).
    override = report.overall.as_dict()["override_rate"]
    assert override["low"] == pytest.approx(0.11762, abs=5e-5)
    assert override["high"] == pytest.approx(0.76930, abs=5e-5)


def test_cost_time_and_time_saved(report) -> None:  # type: ignore[no-untyped-def]
    d = report.overall.as_dict()
    assert d["error_cost_per_1000"] == pytest.approx(2000.0)
    assert d["time_saved_hours"] == pytest.approx(0.05)
    ttd = d["time_to_decision_ms"]
    # Effective opinions' times: 1000 (p1), 2000 (p2's reject), 3000, 3000 (p5).
    assert ttd["n"] == 4
    assert ttd["median"] == ttd_bucket_upper(ttd_bucket(2000))
    assert 2000 <= ttd["median"] < 2200
    assert ttd["p90"] == ttd_bucket_upper(ttd_bucket(3000))


def test_confusion_and_top_pairs(report) -> None:  # type: ignore[no-untyped-def]
    assert report.confusion == {
        ("billing", "billing"): 1,
        ("bug", "billing"): 1,
        ("feature", "feature"): 1,
        ("other", "bug"): 1,
    }
    assert report.top_confused() == [("bug", "billing", 1), ("other", "bug", 1)]


def test_segments_and_series(report) -> None:  # type: ignore[no-untyped-def]
    de = report.segments[("locale", "de")].as_dict()
    en = report.segments[("locale", "en")].as_dict()
    assert (de["shown"], de["override_rate"]["k"]) == (2, 1)
    assert (en["shown"], en["override_rate"]["k"]) == (3, 1)
    assert list(report.series) == ["v1", "v2-cand"]
    assert list(report.series["v1"]) == [DAY]
    assert report.series["v1"][DAY].as_dict()["shown"] == 5


def test_shadow_comparison(report) -> None:  # type: ignore[no-untyped-def]
    (shadow,) = report.shadow
    d = shadow.as_dict()
    assert shadow.candidate == "v2-cand" and d["pairs"] == 3
    assert d["candidate_accuracy"]["k"] == 2 and d["production_accuracy"]["k"] == 1
    assert d["agreement"]["k"] == 2
    assert d["mcnemar"]["b_production_only_right"] == 0
    assert d["mcnemar"]["c_candidate_only_right"] == 1
    assert d["mcnemar"]["p_value"] == pytest.approx(1.0)
    # The candidate never enters the headline figures.
    assert report.overall.as_dict()["predictions"] == 6


def test_small_cells_are_suppressed(engine) -> None:  # type: ignore[no-untyped-def]
    project_id = build_known_dataset(engine)
    with transaction(engine) as session:
        project = session.get(Project, project_id)
        project.policy = {**project.policy, "min_cell_size": 4}  # type: ignore[union-attr]
    drain(lambda: transaction(engine))
    with Session(engine) as session:
        project = session.get(Project, project_id)
        d = build_report(session, project, Filters()).as_dict()  # type: ignore[arg-type]
    assert d["overall"]["override_rate"]["suppressed"] is False  # 5 shown ≥ 4
    assert d["overall"]["audited_accuracy"]["suppressed"] is True  # 3 audited < 4
    assert d["overall"]["audited_accuracy"]["estimate"] is None
    assert d["overall"]["error_cost_per_1000"] is None
    de = next(s for s in d["segments"] if s["value"] == "de")
    assert de["override_rate"]["suppressed"] is True  # 2 shown < 4


def test_filters_select_rows(engine) -> None:  # type: ignore[no-untyped-def]
    project_id = build_known_dataset(engine)
    rebuild_all_in(engine)
    with Session(engine) as session:
        project = session.get(Project, project_id)
        de = build_report(session, project, Filters.parse({"segment": "locale:de"}))  # type: ignore[arg-type]
        later = build_report(session, project, Filters.parse({"from": "2025-03-04"}))  # type: ignore[arg-type]
        v2 = build_report(session, project, Filters.parse({"model_version": "v2-cand"}))  # type: ignore[arg-type]
    assert de.overall.as_dict()["shown"] == 2
    assert later.overall.as_dict()["predictions"] == 0
    assert v2.overall.as_dict()["shown"] == 0


def rebuild_all_in(engine) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        rebuild_all(session)
