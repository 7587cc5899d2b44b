"""``klingcost estimate`` and ``klingcost prices`` (being written)."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    pass
