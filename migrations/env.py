"""Alembic environment: the URL comes from Corrigenda settings, the target from our models."""

from __future__ import annotations

from alembic import context

from corrigenda.db import is_sqlite, make_engine
from corrigenda.models import metadata
from corrigenda.settings import Settings

config = context.config


def database_url() -> str:
    return config.attributes.get("database_url") or Settings().resolved_database_url()


def run_migrations_offline() -> None:
    url = database_url()
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=is_sqlite(url),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = database_url()
    engine = config.attributes.get("engine") or make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=is_sqlite(url),
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
