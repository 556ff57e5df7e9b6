"""Log in and out. Failed logins are counted in the audit log and rate-limited."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user
from limits import parse

from corrigenda.audit import count_recent, record_audit
from corrigenda.users import authenticate

from ..extensions import db_transaction, get_settings
from . import bp
from .session import SessionUser


@bp.get("/login")
def login():  # type: ignore[no-untyped-def]
    return render_template("auth/login.html", next=request.args.get("next", ""))


@bp.post("/login")
def login_post():  # type: ignore[no-untyped-def]
    email = request.form.get("email", "").strip().lower()
    password = request.form.get("password", "")
    target = _safe_next(request.form.get("next", ""))
    with db_transaction() as db:
        if _too_many_failures(db, email):
            return _refuse("Too many failed attempts; wait a minute and try again.", 429)
        user = authenticate(db, email=email, password=password)
        if user is None:
            _audit_failure(db, email)
    if user is None:
        return _refuse("Wrong email or password.", 401)
    session.clear()  # a fresh session: no fixation across the login boundary
    login_user(SessionUser(user))
    return redirect(target or url_for("review.index"))


@bp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    logout_user()
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("auth.login"))


def _refuse(message: str, status: int):  # type: ignore[no-untyped-def]
    page = render_template(
        "auth/login.html",
        error=message,
        next=request.form.get("next", ""),
        email=request.form.get("email", ""),
    )
    return page, status


def _window() -> tuple[int, timedelta]:
    limit = parse(get_settings().login_rate_limit)
    return limit.amount, timedelta(seconds=limit.get_expiry())


def _too_many_failures(db, email: str) -> bool:  # type: ignore[no-untyped-def]
    amount, window = _window()
    by_email = count_recent(db, action="auth.login_failed", since=window, actor=email[:200])
    by_address = count_recent(db, action="auth.login_failed", since=window, object_id=_address())
    return by_email >= amount or by_address >= amount * 3


def _audit_failure(db, email: str) -> None:  # type: ignore[no-untyped-def]
    record_audit(
        db,
        actor=email or "(empty)",
        action="auth.login_failed",
        object_type="address",
        object_id=_address(),
    )


def _address() -> str:
    return request.remote_addr or "unknown"


def _safe_next(target: str) -> str:
    """Only same-site paths: an open redirect would hand phishers a trusted link."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return ""
    return target
