"""Per-app services: settings, the database engine, and the broker seam.

Extensions are created unbound and attached in ``init_app`` so each test gets a fresh app.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, current_app
from sqlalchemy.engine import Engine
from sqlmodel import Session

from corrigenda.datasets.storage import register_data_dir
from corrigenda.db import make_engine, transaction
from corrigenda.settings import Settings, ensure_data_dir


def init_app(app: Flask, settings: Settings) -> None:
    if not settings.database_url:
        ensure_data_dir(settings)
    app.extensions["corrigenda.settings"] = settings
    engine = make_engine(settings.resolved_database_url())
    app.extensions["corrigenda.engine"] = engine
    # The in-process worker only gets the engine; tell it where this app keeps dataset files
    # before any request can queue a build.
    register_data_dir(engine, settings.data_dir)
    init_celery(app, settings)


def init_celery(app: Flask, settings: Settings) -> None:
    """A Celery app for enqueueing (None in the embedded default: no broker)."""
    from workers.celery_app import make_celery

    app.extensions["corrigenda.celery"] = make_celery(settings) if settings.redis_url else None


def get_settings() -> Settings:
    return current_app.extensions["corrigenda.settings"]


def get_engine() -> Engine:
    return current_app.extensions["corrigenda.engine"]


@contextmanager
def db_transaction() -> Iterator[Session]:
    """One unit of work in a view: ``with db_transaction() as session: ...``."""
    with transaction(get_engine()) as session:
        yield session


def read_session() -> Session:
    """A session for reads only; close it (``with read_session() as s:``)."""
    return Session(get_engine(), expire_on_commit=False)
