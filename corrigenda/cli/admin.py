"""``user``, ``project`` and ``key`` commands."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    pass
