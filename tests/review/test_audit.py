from __future__ import annotations

from datetime import UTC, datetime, timedelta

from corrigenda.audit import count_recent, recent_audit, record_audit
from corrigenda.db import transaction
from tests.factories import make_project


def test_record_audit_stores_before_and_after_as_json(engine) -> None:  # type: ignore[no-untyped-def]
    when = datetime(2024, 5, 1, tzinfo=UTC)
    with transaction(engine) as session:
        project = make_project(session)
        record_audit(
            session,
            actor="admin@example.com",
            action="project.labels",
            object_type="project",
            object_id=project.id,
            project_id=project.id,
            before={"labels": ["a"], "at": when},
            after={"labels": ("a", "b")},
        )
    with transaction(engine) as session:
        (entry,) = recent_audit(session, project_id=project.id)
        assert entry.object_id == str(project.id)
        assert entry.before == {"labels": ["a"], "at": when.isoformat()}
        assert entry.after == {"labels": ["a", "b"]}
        window = timedelta(minutes=1)
        assert count_recent(session, action="project.labels", since=window) == 1
        assert count_recent(session, action="project.labels", since=window, actor="x") == 0
