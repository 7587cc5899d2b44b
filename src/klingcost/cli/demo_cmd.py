"""``klingcost demo``: the main job on embedded defaults."""

from __future__ import annotations

from pathlib import Path

import click

from klingcost.cli._common import EXIT_CODES_HELP


@click.command("demo", epilog=EXIT_CODES_HELP)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the demo's ledger in this folder (to open in sqlite-utils or Datasette).",
)
def demo_command(keep: Path | None) -> None:
    """Run klingcost end to end against a built-in fake Kling API: no key, no network.

    Starts the fake API on a free loopback port, gives two teams budgets under a company
    budget, submits a mixed batch through the guard (some refused), settles every task and
    prints the budgets and what each team spent.
    """
    from klingcost.demo import run_demo

    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    result = run_demo(click.echo, workdir=keep)
    click.echo(
        f"\n{result.submitted} submitted, {result.refused} refused by a budget, "
        f"{result.invalid} invalid, {result.unknown} with a lost answer (resolved by sync)"
    )
