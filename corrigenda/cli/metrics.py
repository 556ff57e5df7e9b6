"""``corrigenda metrics rebuild``: recompute facts and rollups exactly from the raw tables."""

from __future__ import annotations

import time

import click

from .common import cli_transaction, load_settings


def register(main: click.Group) -> None:
    main.add_command(metrics)


@click.group()
def metrics() -> None:
    """Metric rollups (see docs/metrics.md)."""


@metrics.command()
@click.option("--project", "slug", default=None, help="Only this project (default: all).")
def rebuild(slug: str | None) -> None:
    """Recompute every metric fact and rollup; run after changing a definition or policy."""
    from ..metrics import rebuild_all, rebuild_project
    from ..projects import get_project

    started = time.perf_counter()
    with cli_transaction(load_settings()) as session:
        if slug is None:
            changed = rebuild_all(session)
        else:
            project = get_project(session, slug)
            if project is None:
                raise click.ClickException(f"no project {slug!r}")
            changed = rebuild_project(session, project.id)  # type: ignore[arg-type]
    click.echo(f"rebuilt metrics: {changed} predictions in {time.perf_counter() - started:.1f} s")
