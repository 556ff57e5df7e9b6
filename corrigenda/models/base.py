"""Column types and field helpers shared by every table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    Integer,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlmodel import Field

# BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
BigId = BigInteger().with_variant(Integer(), "sqlite")
JsonType = JSON().with_variant(JSONB(), "postgresql")


@compiles(Computed, "sqlite")
def _no_generated_columns_on_sqlite(element: Computed, compiler: Any, **kwargs: Any) -> str:
    """Generated columns are PostgreSQL-only here (their expressions use PostgreSQL
    functions): on SQLite the column is a plain one that stays NULL, and nothing reads it."""
    return ""


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def id_field() -> Any:
    return Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))


def fk_field(target: str, *, nullable: bool = False, index: bool = True, **kwargs: Any) -> Any:
    from sqlalchemy import ForeignKey

    column = Column(BigId, ForeignKey(target, **kwargs), nullable=nullable, index=index)
    return Field(default=None, sa_column=column)


def time_field(*, nullable: bool = True, default_now: bool = False, index: bool = False) -> Any:
    column = Column(UTCDateTime(), nullable=nullable, index=index)
    if default_now:
        return Field(default_factory=utcnow, sa_column=column)
    return Field(default=None, sa_column=column)


def json_field(*, default: Any = None, nullable: bool = True) -> Any:
    column = Column(JsonType, nullable=nullable)
    if callable(default):
        return Field(default_factory=default, sa_column=column)
    return Field(default=default, sa_column=column)


def one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    """A CHECK constraint keeping ``column`` to ``values`` (our enums stay plain strings)."""
    quoted = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=name)
