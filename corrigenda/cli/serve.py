"""``up``, ``worker``, ``beat`` and ``migrate``.

The CLI is the composition root: it is the one place in the core package that starts the
delivery layers (web app, workers), and it imports them only inside the commands.
"""

from __future__ import annotations

import errno
import functools
import multiprocessing.util
import os
import secrets
import socket
from pathlib import Path
from typing import Any

import click
from sqlmodel import func, select

from .. import migrate as migrations
from ..models import User
from ..settings import ConfigError, Settings
from ..users import create_user
from .common import cli_transaction, database_errors, load_settings

FIRST_ADMIN_EMAIL = "admin@example.com"


def register(main: click.Group) -> None:
    for command in (up, worker, beat, migrate):
        main.add_command(command)


@click.command()
@click.option("--demo", is_flag=True, help="Also create a demo project, keys and predictions.")
@click.option("--host", help="Interface to listen on [default: 127.0.0.1].")
@click.option("--port", type=click.IntRange(1, 65535), help="Port [default: 8000].")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where SQLite and keys live.")
@click.option(
    "--threads",
    default=min(8, 2 * (os.cpu_count() or 1) + 1),
    show_default="2 x cores + 1, at most 8",
    help="Web server threads.",
)
def up(demo: bool, host: str | None, port: int | None, data_dir: Path | None, threads: int) -> None:
    """Migrate, then serve the web app (and, without Redis, the in-process worker)."""
    settings = load_settings(host=host, port=port, data_dir=data_dir)
    migrate_database(settings)
    login_hint = ensure_first_admin(settings)
    demo_facts = seed_demo(settings) if demo else None
    serve(settings, threads=threads, banner=banner(settings, login_hint, demo_facts))


@click.command()
@click.option("--concurrency", "-c", default=2, show_default=True, help="Worker processes.")
@click.option("--beat", is_flag=True, help="Also run the periodic scheduler in this process.")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(concurrency: int, beat: bool, loglevel: str) -> None:
    """Run a Celery worker (scale-out path: needs CORRIGENDA_REDIS_URL)."""
    celery = _celery(load_settings())
    argv = ["worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}"]
    celery.worker_main([*argv, "--beat"] if beat else argv)


@click.command()
@click.option("--loglevel", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run the periodic scheduler (outbox sweeper, lease expiry, rollups). Run exactly one."""
    _celery(load_settings()).start(["beat", f"--loglevel={loglevel}"])


@click.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def migrate(revision: str) -> None:
    """Upgrade the database schema."""
    settings = load_settings()
    migrate_database(settings, revision)
    click.echo(f"Database is at revision {revision}.")


def migrate_database(settings: Settings, revision: str = "head") -> None:
    with database_errors(settings):
        migrations.upgrade(settings.resolved_database_url(), revision)


def ensure_first_admin(settings: Settings) -> str:
    """Create a superuser on first start; return how to log in."""
    with cli_transaction(settings) as session:
        if session.exec(select(func.count()).select_from(User)).one() > 0:
            return "log in with your account (create one: corrigenda user create --superuser)"
        password = secrets.token_urlsafe(12)
        create_user(session, email=FIRST_ADMIN_EMAIL, password=password, is_superuser=True)
    return f"log in as {FIRST_ADMIN_EMAIL} with password {password} (shown once)"


def seed_demo(settings: Settings) -> dict[str, str]:
    from ..demo import seed

    with cli_transaction(settings) as session:
        return seed(session, settings=settings)


def banner(settings: Settings, login_hint: str, demo: dict[str, str] | None) -> str:
    lines = [
        f"Corrigenda is running at {settings.public_url()}",
        f"  {login_hint}",
        f"  review queue: {settings.public_url()}/review",
    ]
    if demo:
        lines.append(f"  demo product page: {settings.public_url()}/demo")
        lines.append(
            f"  demo keys: {demo['publishable_key']} (browser), {demo['secret_key']}"
            f" (server); also in {settings.data_dir / 'demo.json'}"
        )
    mode = "embedded (SQLite, in-process worker)" if settings.embedded else "Celery on Redis"
    lines.append(f"  mode: {mode}; data: {settings.data_dir}")
    lines.append("Press Ctrl+C to stop.")
    return "\n".join(lines)


def serve(settings: Settings, *, threads: int, banner: str) -> None:
    """Serve with Granian (its HTTP layer is Rust: a request costs about half the Python of
    waitress's, measured in bench/ingest.py) until interrupted. One worker process holds
    the app and, in the embedded mode, the in-process worker thread beside it, so they
    share one SQLite write lock."""
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server import Server

    refuse_taken_address(settings)
    server = Server(
        "corrigenda",  # named in Granian's logs; the app comes from the loader below
        address=settings.host,
        port=settings.port,
        interface=Interfaces.WSGI,
        workers=1,
        blocking_threads=threads,
        log_level=LogLevels.warning,
    )
    click.echo(banner)
    server.serve(target_loader=functools.partial(web_app, settings), wrap_loader=False)


def web_app(settings: Settings) -> Any:
    """Runs in Granian's worker process: the app, and the embedded worker when there is no
    broker (stopped and joined when the process exits)."""
    from webapp import create_app
    from workers.embedded import EmbeddedWorker

    app = create_app(settings)
    if settings.embedded:
        embedded = EmbeddedWorker(
            app.extensions["corrigenda.engine"], settings.sweep_interval_seconds
        )
        embedded.start()
        multiprocessing.util.Finalize(embedded, embedded.stop_and_join, exitpriority=10)
    return app


def refuse_taken_address(settings: Settings) -> None:
    """Bind once ourselves so a taken port is one clear line, not a server's traceback."""
    try:
        with socket.create_server((settings.host, settings.port)):
            pass
    except OSError as exc:
        raise ConfigError(_bind_error(settings, exc)) from exc


def _bind_error(settings: Settings, exc: OSError) -> str:
    where = f"{settings.host}:{settings.port}"
    if exc.errno == errno.EADDRINUSE:
        return f"port {settings.port} is already in use; choose another with --port"
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on {where}; use a port above 1024 with --port"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def _celery(settings: Settings):  # type: ignore[no-untyped-def]
    if settings.embedded:
        raise ConfigError(
            "this command needs a broker: set CORRIGENDA_REDIS_URL "
            "(the embedded default runs its worker inside 'corrigenda up')"
        )
    from workers.celery_app import make_celery

    return make_celery(settings)
