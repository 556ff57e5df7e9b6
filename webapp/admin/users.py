"""Installation-wide user management (superusers only)."""

from __future__ import annotations

import secrets

from flask import flash, redirect, render_template, request, url_for
from sqlmodel import col, select

from corrigenda.audit import record_audit
from corrigenda.models import User
from corrigenda.users import UserError, create_user

from ..auth.guards import superuser_required
from ..auth.session import me
from ..extensions import db_transaction, read_session
from . import bp


@bp.get("/users")
@superuser_required
def users():  # type: ignore[no-untyped-def]
    with read_session() as session:
        rows = list(session.exec(select(User).order_by(col(User.email))))
    return render_template("admin/users.html", users=rows)


@bp.post("/users")
@superuser_required
def create():  # type: ignore[no-untyped-def]
    email = request.form.get("email", "")
    password = request.form.get("password") or secrets.token_urlsafe(12)
    superuser = request.form.get("is_superuser") == "1"
    try:
        with db_transaction() as session:
            user = create_user(
                session,
                email=email,
                password=password,
                name=request.form.get("name", ""),
                is_superuser=superuser,
            )
            record_audit(
                session,
                actor=me().email,
                action="user.create",
                object_type="user",
                object_id=user.id,
                after={"email": user.email, "is_superuser": superuser},
            )
    except UserError as exc:
        flash(str(exc))
        return redirect(url_for("admin.users"))
    if not request.form.get("password"):
        flash(f"Created {user.email}. First password (shown once): {password}")
    else:
        flash(f"Created {user.email}.")
    return redirect(url_for("admin.users"))


@bp.post("/users/<int:user_id>/active")
@superuser_required
def set_active(user_id: int):  # type: ignore[no-untyped-def]
    active = request.form.get("active") == "1"
    with db_transaction() as session:
        user = session.get(User, user_id)
        if user is not None and user.id != me().id:
            user.is_active = active
            session.add(user)
            record_audit(
                session,
                actor=me().email,
                action="user.active",
                object_type="user",
                object_id=user.id,
                after={"is_active": active},
            )
    return redirect(url_for("admin.users"))
