"""Shared fixtures: both databases, Redis, a Celery worker process, the app and a client.

Isolation: SQLite gets a new file per test; PostgreSQL one throw-away database per test
session, emptied after each test. Tests commit for real (workers, outbox and locking can only
be tested across real transactions), so savepoint rollback would not isolate them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from corrigenda.db import make_engine
from corrigenda.models import metadata
from corrigenda.settings import Settings
from tests.services import CeleryWorkerProcess, require_redis, throwaway_postgres_database
from webapp import create_app

TEST_SECRET = "test-secret-key-not-for-production"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with throwaway_postgres_database() as url:
        engine = make_engine(url)
        metadata.create_all(engine)
        engine.dispose()
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    return require_redis()


@pytest.fixture(scope="session")
def celery_queue() -> str:
    """A queue of this test session's own, so parallel runs never take each other's tasks."""
    return f"corrigenda-test-{uuid.uuid4().hex[:10]}"


def empty_postgres(url: str) -> None:
    engine = make_engine(url, pool_size=1)
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Run the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield _fresh_sqlite(tmp_path)
    else:
        url = request.getfixturevalue("postgres_url")
        yield url
        empty_postgres(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return _fresh_sqlite(tmp_path)


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    yield postgres_url
    empty_postgres(postgres_url)


def _fresh_sqlite(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'test.db'}"
    engine = make_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def make_test_settings(db_url: str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": db_url,
        "redis_url": None,
        "secret_key": TEST_SECRET,
        "data_dir": tmp_path / "data",
        "testing": True,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_test_settings(db_url, tmp_path)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    yield app
    app.extensions["corrigenda.engine"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def celery_worker(
    pg_url: str, redis_url: str, celery_queue: str, tmp_path: Path
) -> Iterator[CeleryWorkerProcess]:
    """A real ``celery worker`` process on PostgreSQL + Redis, consuming this session's queue."""
    worker = CeleryWorkerProcess(worker_env(pg_url, redis_url, celery_queue, tmp_path), "w1")
    worker.start()
    yield worker
    worker.stop()


def worker_env(db_url: str, redis_url: str, queue: str, tmp_path: Path) -> dict[str, str]:
    return {
        "CORRIGENDA_DATABASE_URL": db_url,
        "CORRIGENDA_REDIS_URL": redis_url,
        "CORRIGENDA_CELERY_QUEUE": queue,
        "CORRIGENDA_SECRET_KEY": TEST_SECRET,
        "CORRIGENDA_DATA_DIR": str(tmp_path / "worker-data"),
    }


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI=true a skipped test is a failed test: CI must never pass by skipping."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
