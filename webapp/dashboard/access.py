"""Which projects a signed-in user sees on the dashboard index (members, or all for
superusers). Per-project pages use the auth blueprint's ``project_role("viewer")``."""

from __future__ import annotations

from sqlmodel import Session, select

from corrigenda.models import Membership, Project, User


def visible_projects(session: Session, user: User) -> list[Project]:
    query = select(Project).order_by(Project.slug)
    if not user.is_superuser:
        query = query.join(Membership, Membership.project_id == Project.id).where(
            Membership.user_id == user.id
        )
    return list(session.exec(query))
