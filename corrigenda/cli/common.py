"""What every command needs: settings, a migrated database, one-line errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from ..db import make_engine, transaction
from ..settings import ConfigError, Settings, ensure_data_dir


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment plus command-line overrides, or a ConfigError."""
    values = {name: value for name, value in overrides.items() if value is not None}
    try:
        settings = Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "CORRIGENDA_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise ConfigError(f"{field}: {first['msg']}") from exc
    if not settings.database_url:
        ensure_data_dir(settings)
    return settings


def open_engine(settings: Settings) -> Engine:
    return make_engine(settings.resolved_database_url())


@contextmanager
def cli_transaction(settings: Settings) -> Iterator[Session]:
    """A unit of work for a command; database trouble becomes one clear line."""
    engine = open_engine(settings)
    try:
        with database_errors(settings), transaction(engine) as session:
            yield session
    finally:
        engine.dispose()


@contextmanager
def database_errors(settings: Settings) -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ConfigError(
            f"cannot use the database at {safe_url(settings.resolved_database_url())}: {reason}"
            " — check CORRIGENDA_DATABASE_URL and that the server is running"
        ) from exc


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def fail(message: str) -> None:
    raise click.ClickException(message)
