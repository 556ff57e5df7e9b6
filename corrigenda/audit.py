"""The audit log: who did what to which object, with the state before and after.

Every decision and every admin change calls :func:`record_audit` inside the same
transaction as the change itself, so the log can never disagree with the data.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from .models import AuditLog, utcnow


def record_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: Any,
    project_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditLog:
    """Append one audit row (flushed, not committed). ``object_id`` may be any id type."""
    entry = AuditLog(
        project_id=project_id,
        actor=actor[:200],
        action=action[:100],
        object_type=object_type[:50],
        object_id=None if object_id is None else str(object_id)[:100],
        before=_jsonable(before),
        after=_jsonable(after),
    )
    session.add(entry)
    session.flush()
    return entry


def recent_audit(
    session: Session,
    *,
    project_id: int | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[AuditLog]:
    """Newest first; ``project_id=None`` means every project (and global changes)."""
    statement = select(AuditLog).order_by(col(AuditLog.id).desc()).limit(limit)
    if project_id is not None:
        statement = statement.where(AuditLog.project_id == project_id)
    if before_id is not None:
        statement = statement.where(col(AuditLog.id) < before_id)
    return list(session.exec(statement))


def count_recent(
    session: Session,
    *,
    action: str,
    since: datetime | timedelta,
    actor: str | None = None,
    object_id: str | None = None,
) -> int:
    """How many ``action`` rows since a time (or within a window) for an actor or object."""
    start = utcnow() - since if isinstance(since, timedelta) else since
    statement = (
        select(func.count())
        .select_from(AuditLog)
        .where(AuditLog.action == action, col(AuditLog.created_at) >= start)
    )
    if actor is not None:
        statement = statement.where(AuditLog.actor == actor)
    if object_id is not None:
        statement = statement.where(AuditLog.object_id == object_id)
    return int(session.exec(statement).one())


def _jsonable(value: Any) -> Any:
    """Dates and other objects become strings so before/after always store as JSON."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
