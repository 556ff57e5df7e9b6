"""API keys: ``pk_…`` publishable (browser) and ``sk_…`` secret (server) keys.

Keys are random 32-byte tokens, so a fast SHA-256 of the key is a safe lookup hash; only
the hash and a short display prefix are stored. The plaintext is returned once.
"""

from __future__ import annotations

import hashlib
import secrets

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
