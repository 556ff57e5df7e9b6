"""``up``, ``worker`` and ``migrate``."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    pass
