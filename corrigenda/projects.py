"""Creating and finding projects."""

from __future__ import annotations

import re

from sqlmodel import Session, select

from .models import Project, default_policy
from .models.project import TASK_TYPES

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class ProjectError(ValueError):
    """A project request that cannot be carried out; the message says why."""


def create_project(
    session: Session,
    *,
    slug: str,
    name: str | None = None,
    task_type: str = "classification",
    labels: list[str] | None = None,
    allowed_origins: list[str] | None = None,
) -> Project:
    """Add a project; raises ProjectError on a bad slug, task type or a taken slug."""
    if not SLUG_PATTERN.match(slug):
        raise ProjectError(
            f"slug {slug!r} is not valid: use lowercase letters, digits and dashes (max 63)"
        )
    if task_type not in TASK_TYPES:
        raise ProjectError(f"task type {task_type!r} is not one of {', '.join(TASK_TYPES)}")
    if get_project(session, slug) is not None:
        raise ProjectError(f"a project with slug {slug!r} exists already")
    project = Project(
        slug=slug,
        name=name or slug,
        task_type=task_type,
        labels=list(labels or []),
        allowed_origins=list(allowed_origins or []),
        policy=default_policy(),
    )
    session.add(project)
    session.flush()
    return project


def get_project(session: Session, slug: str) -> Project | None:
    return session.exec(select(Project).where(Project.slug == slug)).first()
