"""The logged-in user as Flask-Login sees it, and who they are in the database."""

from __future__ import annotations

from flask_login import UserMixin, current_user

from corrigenda.models import User

from ..extensions import read_session


class SessionUser(UserMixin):
    """Wraps a User. The session id carries a piece of the password hash, so changing the
    password (or deactivating the user) ends every session they had."""

    def __init__(self, user: User) -> None:
        self.user = user
        self.id = user.id

    def get_id(self) -> str:
        return f"{self.user.id}:{self.user.password_hash[-16:]}"

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        return bool(self.user.is_active)

    @property
    def email(self) -> str:
        return self.user.email


def load_user(session_id: str) -> SessionUser | None:
    user_id, _, fingerprint = session_id.partition(":")
    if not user_id.isdigit():
        return None
    with read_session() as session:
        user = session.get(User, int(user_id))
    if user is None or not user.is_active or user.password_hash[-16:] != fingerprint:
        return None
    return SessionUser(user)


def me() -> User:
    """The logged-in User row (only call behind ``login_required``)."""
    return current_user.user  # type: ignore[no-any-return]
