"""The ``corrigenda`` command. Each feature adds its commands from its own module."""

from __future__ import annotations

import sys

import click

from ..settings import ConfigError


class CorrigendaGroup(click.Group):
    """Turns expected failures into one clear line and exit code 1, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=CorrigendaGroup)
@click.version_option(package_name="corrigenda")
def main() -> None:
    """Corrigenda: capture corrections of AI predictions and turn them into training data."""


def _register_commands() -> None:
    from . import admin, events, serve

    for module in (serve, admin, events):
        module.register(main)
    from . import metrics as metrics_commands

    metrics_commands.register(main)
    from . import export

    export.register(main)


_register_commands()
