"""Users, passwords (Argon2id) and per-project roles."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlmodel import Session, select

from .models import Membership, Project, User
from .models.project import ROLES

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 8


class UserError(ValueError):
    """A user request that cannot be carried out; the message says why."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        return False


def create_user(
    session: Session, *, email: str, password: str, name: str = "", is_superuser: bool = False
) -> User:
    email = email.strip().lower()
    if "@" not in email:
        raise UserError(f"{email!r} is not an email address")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if get_user_by_email(session, email) is not None:
        raise UserError(f"a user with email {email!r} exists already")
    user = User(
        email=email, name=name, password_hash=hash_password(password), is_superuser=is_superuser
    )
    session.add(user)
    session.flush()
    return user


def get_user_by_email(session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == email.strip().lower())).first()


def authenticate(session: Session, *, email: str, password: str) -> User | None:
    user = get_user_by_email(session, email)
    if user is None or not user.is_active or not verify_password(user, password):
        return None
    return user


def grant_role(session: Session, *, user: User, project: Project, role: str) -> Membership:
    """Give ``user`` a role in ``project`` (replacing any earlier role)."""
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    membership = session.exec(
        select(Membership).where(Membership.user_id == user.id, Membership.project_id == project.id)
    ).first()
    membership = membership or Membership(user_id=user.id, project_id=project.id)
    membership.role = role
    session.add(membership)
    session.flush()
    return membership


def role_in(session: Session, *, user: User, project: Project) -> str | None:
    """The user's role in the project; superusers are admins everywhere."""
    if user.is_superuser:
        return "admin"
    membership = session.exec(
        select(Membership).where(Membership.user_id == user.id, Membership.project_id == project.id)
    ).first()
    return membership.role if membership else None
