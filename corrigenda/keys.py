"""API keys: ``pk_…`` publishable (browser) and ``sk_…`` secret (server) keys.

Keys are random 32-byte tokens, so a fast SHA-256 of the key is a safe lookup hash; only
the hash and a short display prefix are stored. The plaintext is returned once.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, select

from .models import ApiKey, Project, utcnow

PREFIXES = {"publishable": "pk_", "secret": "sk_"}


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_api_key(
    session: Session, *, project: Project, kind: str, name: str = ""
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext, which is never shown again."""
    if kind not in PREFIXES:
        raise ValueError(f"key kind must be one of {', '.join(PREFIXES)}, not {kind!r}")
    plaintext = PREFIXES[kind] + secrets.token_urlsafe(32)
    key = ApiKey(
        project_id=project.id,
        kind=kind,
        name=name,
        prefix=plaintext[:10],
        key_hash=hash_key(plaintext),
    )
    session.add(key)
    session.flush()
    return key, plaintext


def find_active_key(session: Session, plaintext: str) -> ApiKey | None:
    """The unrevoked key with this plaintext, or None."""
    key = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext))).first()
    if key is None or key.revoked_at is not None:
        return None
    return key


def revoke_api_key(session: Session, *, key: ApiKey) -> None:
    key.revoked_at = utcnow()
    session.add(key)


def resolve_key(session: Session, plaintext: str) -> tuple[ApiKey, Project] | None:
    """The unrevoked key with this plaintext and its project, in one query; None if unknown."""
    query = (
        select(ApiKey, Project)
        .join(Project, Project.id == ApiKey.project_id)  # type: ignore[arg-type]
        .where(ApiKey.key_hash == hash_key(plaintext), ApiKey.revoked_at.is_(None))  # type: ignore[union-attr]
    )
    row = session.exec(query).first()
    return (row[0], row[1]) if row is not None else None


def record_last_used(session: Session, *, used_at: dict[int, datetime]) -> None:
    """Store last-used times (key id → time); callers batch these to spare the database."""
    for key_id, when in used_at.items():
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)  # type: ignore[arg-type]
            .values(last_used_at=when)
        )
