"""Per-project role checks for views that take a ``slug``."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, g
from flask_login import login_required

from corrigenda.models import Project
from corrigenda.projects import get_project
from corrigenda.users import role_in

from ..extensions import read_session
from .session import me

T = TypeVar("T")

RANK = {"viewer": 0, "reviewer": 1, "admin": 2}


def project_role(minimum: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Load ``g.project`` and ``g.role`` from the ``slug`` argument; 404 for non-members
    (a project's existence is not disclosed), 403 when the role is too low."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        @login_required
        def guarded(*args: Any, slug: str, **kwargs: Any) -> Any:
            project, role = _membership(slug)
            if project is None or role is None:
                abort(404)
            if RANK[role] < RANK[minimum]:
                abort(403, f"this needs the {minimum} role in {project.slug}; you are {role}")
            g.project, g.role = project, role
            return view(*args, slug=slug, **kwargs)

        return guarded

    return decorate


def _membership(slug: str) -> tuple[Project | None, str | None]:
    with read_session() as session:
        project = get_project(session, slug)
        if project is None:
            return None, None
        return project, role_in(session, user=me(), project=project)


def superuser_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    @login_required
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if not me().is_superuser:
            abort(403, "only administrators of the whole installation may do this")
        return view(*args, **kwargs)

    return guarded


def in_this_project_or_404(session: Any, model: type[T], row_id: int) -> T:
    """The ``model`` row ``row_id`` if it belongs to the request's project (``g.project``,
    set by ``project_role``); 404 otherwise, so other projects' ids reveal nothing."""
    row = session.get(model, row_id)
    if row is None or row.project_id != g.project.id:
        abort(404)
    return row
