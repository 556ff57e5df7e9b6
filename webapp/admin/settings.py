"""Project settings: labels, allowed origins, policy, members and keys."""

from __future__ import annotations

import secrets
from typing import Any

from flask import flash, g, redirect, render_template, request, url_for
from flask_login import login_required
from sqlmodel import col, select

from corrigenda.audit import record_audit
from corrigenda.keys import create_api_key, revoke_api_key
from corrigenda.models import ApiKey, Membership, Project, User
from corrigenda.users import UserError, create_user, get_user_by_email, grant_role

from ..auth.guards import in_this_project_or_404, project_role
from ..auth.session import me
from ..extensions import db_transaction, read_session
from . import bp

POLICY_FIELDS = {
    "review_overlap": (int, 1, 10),
    "audit_rate": (float, 0.0, 1.0),
    "gold_rate": (float, 0.0, 1.0),
    "confidence_threshold": (float, 0.0, 1.0),
    "auto_accept_min_agreeing": (int, 1, 1000),
}


@bp.get("/")
@login_required
def index():  # type: ignore[no-untyped-def]
    from ..review.views import _my_projects

    with read_session() as session:
        projects = [p for p, role in _my_projects(session) if role == "admin"]
    return render_template("admin/index.html", projects=projects, superuser=me().is_superuser)


@bp.get("/<slug>/")
@project_role("admin")
def project(slug: str):  # type: ignore[no-untyped-def]
    with read_session() as session:
        members = list(
            session.exec(
                select(Membership, User)
                .join(User, col(User.id) == Membership.user_id)
                .where(Membership.project_id == g.project.id)
                .order_by(col(User.email))
            )
        )
        keys = list(
            session.exec(
                select(ApiKey).where(ApiKey.project_id == g.project.id).order_by(col(ApiKey.id))
            )
        )
    return render_template(
        "admin/project.html",
        project=g.project,
        members=members,
        keys=keys,
        policy_fields=POLICY_FIELDS,
    )


@bp.post("/<slug>/labels")
@project_role("admin")
def labels(slug: str):  # type: ignore[no-untyped-def]
    values = _lines(request.form.get("labels", ""))
    if g.project.task_type != "text" and not values:
        flash("labels: give at least one label, one per line")
        return _back()
    _update_project("labels", values)
    return _back("Labels saved.")


@bp.post("/<slug>/origins")
@project_role("admin")
def origins(slug: str):  # type: ignore[no-untyped-def]
    values = _lines(request.form.get("origins", ""))
    bad = [v for v in values if not v.startswith(("http://", "https://")) or v.count("/") > 2]
    if bad:
        flash(
            f"origins: {', '.join(bad)} — write scheme and host only, e.g. https://app.example.com"
        )
        return _back()
    _update_project("allowed_origins", values)
    return _back("Allowed origins saved.")


@bp.post("/<slug>/policy")
@project_role("admin")
def policy(slug: str):  # type: ignore[no-untyped-def]
    changes: dict[str, Any] = {}
    for name, (kind, low, high) in POLICY_FIELDS.items():
        raw = request.form.get(name, "").strip()
        try:
            value = kind(raw)
        except ValueError:
            flash(f"{name}: {raw!r} is not a number")
            return _back()
        if not low <= value <= high:
            flash(f"{name}: must be between {low} and {high}")
            return _back()
        changes[name] = value
    _update_project("policy", {**g.project.policy, **changes})
    return _back("Policy saved.")


def _update_project(field: str, value: Any) -> None:
    with db_transaction() as session:
        project = session.get(Project, g.project.id)
        before = getattr(project, field)
        setattr(project, field, value)
        session.add(project)
        record_audit(
            session,
            actor=me().email,
            action=f"project.{field}",
            object_type="project",
            object_id=project.id,
            project_id=project.id,  # type: ignore[union-attr]
            before={field: before},
            after={field: value},
        )


@bp.post("/<slug>/members")
@project_role("admin")
def add_member(slug: str):  # type: ignore[no-untyped-def]
    email = request.form.get("email", "").strip().lower()
    role = request.form.get("role", "reviewer")
    invite_password = None
    try:
        with db_transaction() as session:
            user = get_user_by_email(session, email)
            if user is None:
                invite_password = secrets.token_urlsafe(12)
                user = create_user(session, email=email, password=invite_password)
                _audit_user(session, user, "user.invite")
            project = session.get(Project, g.project.id)
            grant_role(session, user=user, project=project, role=role)  # type: ignore[arg-type]
            record_audit(
                session,
                actor=me().email,
                action="membership.grant",
                object_type="user",
                object_id=user.id,
                project_id=g.project.id,
                after={"email": email, "role": role},
            )
    except UserError as exc:
        flash(str(exc))
        return _back()
    if invite_password:
        flash(f"Invited {email}. Their first password (shown once): {invite_password}")
    return _back(f"{email} is now {role}.")


@bp.post("/<slug>/members/<int:user_id>/remove")
@project_role("admin")
def remove_member(slug: str, user_id: int):  # type: ignore[no-untyped-def]
    with db_transaction() as session:
        membership = session.exec(
            select(Membership).where(
                Membership.project_id == g.project.id, Membership.user_id == user_id
            )
        ).first()
        if membership is not None:
            session.delete(membership)
            record_audit(
                session,
                actor=me().email,
                action="membership.revoke",
                object_type="user",
                object_id=user_id,
                project_id=g.project.id,
                before={"role": membership.role},
            )
    return _back("Member removed.")


@bp.post("/<slug>/keys")
@project_role("admin")
def create_key(slug: str):  # type: ignore[no-untyped-def]
    kind = request.form.get("kind", "")
    try:
        with db_transaction() as session:
            project = session.get(Project, g.project.id)
            key, plaintext = create_api_key(
                session,
                project=project,
                kind=kind,
                name=request.form.get("name", "")[:200],  # type: ignore[arg-type]
            )
            record_audit(
                session,
                actor=me().email,
                action="key.create",
                object_type="api_key",
                object_id=key.id,
                project_id=g.project.id,
                after={"kind": kind, "prefix": key.prefix},
            )
    except ValueError as exc:
        flash(f"kind: {exc}")
        return _back()
    return render_template(
        "admin/key_created.html", project=g.project, key=key, plaintext=plaintext
    )


@bp.post("/<slug>/keys/<int:key_id>/revoke")
@project_role("admin")
def revoke_key(slug: str, key_id: int):  # type: ignore[no-untyped-def]
    with db_transaction() as session:
        key = in_this_project_or_404(session, ApiKey, key_id)
        revoke_api_key(session, key=key)
        record_audit(
            session,
            actor=me().email,
            action="key.revoke",
            object_type="api_key",
            object_id=key.id,
            project_id=g.project.id,
            after={"prefix": key.prefix},
        )
    return _back("Key revoked.")


def _audit_user(session, user: User, action: str) -> None:  # type: ignore[no-untyped-def]
    record_audit(
        session,
        actor=me().email,
        action=action,
        object_type="user",
        object_id=user.id,
        after={"email": user.email, "is_superuser": user.is_superuser},
    )


def _lines(text: str) -> list[str]:
    seen: list[str] = []
    for line in text.replace(",", "\n").splitlines():
        value = line.strip()
        if value and value not in seen:
            seen.append(value[:200])
    return seen


def _back(message: str | None = None):  # type: ignore[no-untyped-def]
    if message:
        flash(message)
    return redirect(url_for("admin.project", slug=g.project.slug))
