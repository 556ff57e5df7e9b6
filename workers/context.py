"""What a task needs from its worker process: settings and one engine per database URL."""

from __future__ import annotations

from functools import cache

from celery import current_app
from sqlalchemy.engine import Engine

from corrigenda.db import make_engine
from corrigenda.settings import Settings


def task_settings() -> Settings:
    return Settings(**current_app.conf["corrigenda_settings"])


def task_engine() -> Engine:
    return engine_for(current_app.conf["corrigenda_database_url"])


@cache
def engine_for(url: str) -> Engine:
    return make_engine(url)
