"""``corrigenda events``: feedback events that were set aside, and replaying them."""

from __future__ import annotations

import click

from .. import processing
from ..projects import get_project
from .common import cli_transaction, fail, load_settings


def register(main: click.Group) -> None:
    main.add_command(events)


@click.group()
def events() -> None:
    """Feedback events that could not be processed."""


@events.command("list")
@click.option("--project", "slug", help="Only this project (slug).")
@click.option("--limit", default=50, show_default=True, help="Show at most this many.")
def list_events(slug: str | None, limit: int) -> None:
    """List set-aside events with the reason, newest first.

    Example: corrigenda events list --project demo
    """
    with cli_transaction(load_settings()) as session:
        project_id = _project_id(session, slug)
        rows = processing.set_aside_events(session, project_id=project_id, limit=limit)
        for event in rows:
            click.echo(f"{event.id}\t{event.event_id}\t{event.kind}\t{event.error}")
        click.echo(f"{len(rows)} set-aside event(s)", err=True)


@events.command("replay")
@click.argument("event_ids", nargs=-1, type=int)
@click.option("--all", "replay_all", is_flag=True, help="Replay every set-aside event.")
@click.option("--project", "slug", help="Only this project (slug).")
def replay(event_ids: tuple[int, ...], replay_all: bool, slug: str | None) -> None:
    """Put set-aside events back in the stream; the workers process them again.

    Example: corrigenda events replay 42 43    or    corrigenda events replay --all
    """
    if not event_ids and not replay_all:
        fail("name the event ids to replay, or pass --all")
    with cli_transaction(load_settings()) as session:
        project_id = _project_id(session, slug)
        ids = processing.replay_events(
            session, event_ids=list(event_ids) or None, project_id=project_id
        )
    click.echo(f"{len(ids)} event(s) back in the stream; the workers pick them up shortly")


def _project_id(session, slug: str | None) -> int | None:  # type: ignore[no-untyped-def]
    if slug is None:
        return None
    project = get_project(session, slug)
    if project is None:
        fail(f"no project with slug {slug!r}")
    return project.id  # type: ignore[union-attr]
