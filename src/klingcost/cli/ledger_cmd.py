"""``klingcost ledger check``: audit the ledger file."""

from __future__ import annotations

import click

from klingcost.cli._common import (
    EXIT_CODES_HELP,
    EXIT_ERROR,
    echo_json,
    json_option,
    ledger_option,
    open_read_only,
)

# --- ledger -------------------------------------------------------------------------------


@click.group("ledger", epilog=EXIT_CODES_HELP)
def ledger_group() -> None:
    """Audit the ledger file."""


@ledger_group.command("check", epilog=EXIT_CODES_HELP)
@click.option(
    "--full",
    is_flag=True,
    help="Run SQLite's integrity_check (also matches every index to its table; slower) "
    "instead of quick_check, and compare the schema with its spec.",
)
@ledger_option
@json_option
@click.pass_context
def ledger_check(ctx: click.Context, full: bool, ledger_path: str | None, as_json: bool) -> None:
    """Check the ledger file with SQLite's own check (quick_check, or integrity_check with
    --full), then recompute every running balance from the entries; exit 1 on damage or on any
    difference. Opens the ledger read-only."""
    with open_read_only(ledger_path) as ledger:
        problems = ledger.check(full=full)
        where = ledger.path
        dialect = ledger.dialect
    damaged = any(p.damaged for p in problems)
    if as_json:
        echo_json(
            {
                "ledger": str(where),
                "ok": not problems,
                "storage_check": (
                    ("integrity_check" if full else "quick_check") if dialect == "sqlite" else None
                ),
                "damaged": damaged,
                "differences": [
                    {
                        "what": p.what,
                        "budget": p.budget,
                        "period_key": p.period_key,
                        "recorded": p.recorded,
                        "expected": p.expected,
                        "hold_id": p.hold_id,
                        "damaged": p.damaged,
                    }
                    for p in problems
                ],
            }
        )
    elif damaged:
        click.echo(
            f"DAMAGED: SQLite's own check of {where} failed; its balances were not recomputed, "
            "since nothing read from it can be trusted. SQLite says:"
        )
        for problem in problems:
            click.echo(f"  {problem}")
        click.echo(
            "Restore the ledger from a backup (or try `sqlite3 FILE .recover`) before "
            "guarding any job with it."
        )
    elif problems:
        click.echo(f"{len(problems)} difference(s) in {where}:")
        for problem in problems:
            click.echo(f"  {problem}")
    else:
        check = "integrity_check" if full else "quick_check"
        storage = f"SQLite's {check} found no damage; " if dialect == "sqlite" else ""
        schema = "; its schema matches klingcost's" if full else ""
        click.echo(f"OK: {storage}every running balance in {where} agrees with its entries{schema}")
    if problems:
        ctx.exit(EXIT_ERROR)
