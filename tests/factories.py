"""Small factories for test data. Each takes a session and flushes; the caller commits."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from corrigenda.db import transaction
from corrigenda.keys import create_api_key
from corrigenda.models import Prediction, Project, User
from corrigenda.projects import create_project
from corrigenda.users import create_user, grant_role

PASSWORD = "correct horse battery"


def make_project(session, slug: str = "demo", **kwargs: Any) -> Project:  # type: ignore[no-untyped-def]
    kwargs.setdefault("labels", ["billing", "bug", "feature", "other"])
    kwargs.setdefault("allowed_origins", ["http://127.0.0.1:5050"])
    return create_project(session, slug=slug, **kwargs)


def make_prediction(session, project: Project, client_id: str = "p-1", **kwargs: Any) -> Prediction:  # type: ignore[no-untyped-def]
    kwargs.setdefault("input", {"text": "My invoice is wrong"})
    kwargs.setdefault("output", "bug")
    kwargs.setdefault("model_version", "v1")
    kwargs.setdefault("confidence", 0.7)
    prediction = Prediction(project_id=project.id, client_id=client_id, **kwargs)
    session.add(prediction)
    session.flush()
    return prediction


def make_user(
    session,
    project: Project | None = None,
    role: str = "reviewer",
    email: str = "rev@example.com",
    **kwargs: Any,
) -> User:  # type: ignore[no-untyped-def]
    user = create_user(session, email=email, password=PASSWORD, **kwargs)
    if project is not None:
        grant_role(session, user=user, project=project, role=role)
    return user


def setup_project_with_keys(engine: Engine, slug: str = "demo", **kwargs: Any) -> dict[str, Any]:
    """Commit a project with one publishable and one secret key; return ids and plaintexts."""
    with transaction(engine) as session:
        project = make_project(session, slug, **kwargs)
        _, publishable = create_api_key(session, project=project, kind="publishable")
        _, secret = create_api_key(session, project=project, kind="secret")
        return {"project_id": project.id, "slug": slug, "pk": publishable, "sk": secret}
