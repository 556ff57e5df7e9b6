"""Projects, their API keys, users and per-project roles."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import fk_field, id_field, json_field, one_of, time_field

TASK_TYPES = ("classification", "multilabel", "text")
KEY_KINDS = ("publishable", "secret")
ROLES = ("admin", "reviewer", "viewer")


def default_policy() -> dict[str, Any]:
    return {
        "auto_accept_min_agreeing": 2,
        "review_overlap": 1,
        "audit_rate": 0.05,
        "confidence_threshold": 0.5,
        "split_ratios": {"train": 0.8, "validation": 0.1, "test": 0.1},
        "cost_matrix": {},
        "requirement": None,
        # Metrics (docs/metrics.md): cells with fewer items show "not enough data".
        "min_cell_size": 20,
        "manual_handling_seconds": 60,
        "alerts": {"baseline_days": 14, "alpha": 0.05, "webhook_url": None, "webhook_secret": None},
    }


class Project(SQLModel, table=True):
    __table_args__ = (one_of("task_type", TASK_TYPES, "ck_project_task_type"),)

    id: int | None = id_field()
    slug: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    name: str = Field(max_length=200)
    task_type: str = Field(default="classification", max_length=20)
    labels: list[str] = json_field(default=list, nullable=False)
    allowed_origins: list[str] = json_field(default=list, nullable=False)
    policy: dict[str, Any] = json_field(default=default_policy, nullable=False)
    # Where to POST signed events (dataset versions ready/failed, alerts); see webhooks.py.
    webhook_url: str | None = Field(default=None, max_length=2000)
    webhook_secret: str | None = Field(default=None, max_length=200)
    created_at: datetime = time_field(nullable=False, default_now=True)


class ApiKey(SQLModel, table=True):
    """A project key. Only a hash of the secret is kept; ``prefix`` identifies it to people."""

    __tablename__ = "api_key"
    __table_args__ = (one_of("kind", KEY_KINDS, "ck_api_key_kind"),)

    id: int | None = id_field()
    project_id: int = fk_field("project.id", ondelete="CASCADE")
    kind: str = Field(max_length=12)
    name: str = Field(default="", max_length=200)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    created_at: datetime = time_field(nullable=False, default_now=True)
    revoked_at: datetime | None = time_field()
    last_used_at: datetime | None = time_field()


class User(SQLModel, table=True):
    __tablename__ = "user_account"

    id: int | None = id_field()
    email: str = Field(sa_column=Column(String(320), unique=True, nullable=False))
    name: str = Field(default="", max_length=200)
    password_hash: str = Field(max_length=255)
    is_superuser: bool = Field(default=False)
    is_active: bool = Field(default=True)
    created_at: datetime = time_field(nullable=False, default_now=True)


class Membership(SQLModel, table=True):
    """A user's role in one project."""

    __table_args__ = (
        UniqueConstraint("user_id", "project_id", name="uq_membership_user_project"),
        one_of("role", ROLES, "ck_membership_role"),
    )

    id: int | None = id_field()
    user_id: int = fk_field("user_account.id", ondelete="CASCADE")
    project_id: int = fk_field("project.id", ondelete="CASCADE")
    role: str = Field(default="reviewer", max_length=12)
