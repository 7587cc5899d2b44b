"""``klingcost holds``: list holds, and void one by hand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from klingcost.budgets import (
    CURRENCY_EXPONENTS,
)
from klingcost.cli._common import (
    EXIT_CODES_HELP,
    EXIT_INVALID,
    echo_json,
    fail,
    json_option,
    ledger_option,
    open_read_only,
)
from klingcost.cli._output import Column, format_option, print_records
from klingcost.errors import HoldStateError
from klingcost.ledger import HOLD_STATES, Hold, Ledger
from klingcost.money import UNIT_EXPONENT, format_minor


def _open(path: str | None, *, create: bool = False) -> Ledger:
    """The ledger at ``path``; only ``budget set`` starts a new one (a mistyped path given to
    any other command is an error, not an empty ledger)."""
    return Ledger.open(path, create=create)


# --- holds --------------------------------------------------------------------------------


@click.group("holds", invoke_without_command=True, epilog=EXIT_CODES_HELP)
@click.option(
    "--state",
    type=click.Choice(["open", *HOLD_STATES]),
    help="Only holds in this state (open: held, submitted or unknown).",
)
@click.option("--team", metavar="NAME", help="Only this team's holds.")
@click.option(
    "--refused",
    is_flag=True,
    help="List refused submissions instead (budget, concurrency): nothing was held for them.",
)
@ledger_option
@format_option()
@click.pass_context
def holds_group(
    ctx: click.Context,
    state: str | None,
    team: str | None,
    refused: bool,
    ledger_path: str | None,
    fmt: str,
) -> None:
    """List holds: money reserved for jobs, until settled at the real charge or voided.

    A hold in state unknown (a crash or a timeout after sending) keeps counting against its
    budgets until you resolve it: `klingcost sync` settles it from what the API reports, where
    the API can tell; `klingcost holds void ID --reason TEXT` releases it once you know nothing
    was charged.

    \b
      klingcost holds --state unknown
      klingcost holds void 42 --reason "the provider has no such task"
      klingcost holds --refused --team acme
    """
    ctx.ensure_object(dict)
    ctx.obj["ledger_path"] = ledger_path
    if ctx.invoked_subcommand is not None:
        return
    if refused:
        from klingcost.cli.keys_cmd import print_refusals

        print_refusals(ledger_path, team, fmt)
        return
    with open_read_only(ledger_path) as ledger:
        if team is not None:
            ledger.get_budget(team)  # an unknown team is BudgetNotFound (exit 2), not "no holds"
        found = list(ledger.holds(state=state, team=team))
    empty = "no holds" + (f" in state {state}" if state else "") + (f" of {team}" if team else "")
    print_records([hold_dict(h) for h in found], HOLD_COLUMNS, fmt, empty=empty)


def _units_cell(record: Mapping[str, Any]) -> str:
    charged = record["charged"]["units"]
    return str(charged if charged is not None else record["estimate"]["units"])


def _money_cell(amount: str | None, record: Mapping[str, Any]) -> str | None:
    if amount is None:
        return None
    if record["currency"] not in CURRENCY_EXPONENTS:
        return f"{amount} {record['currency']} (minor units)"
    return f"{amount} {record['currency']}"


#: The columns of ``holds`` (its JSON has every field).
HOLD_COLUMNS: list[str | Column] = [
    Column("id", right=True),
    "team",
    "state",
    Column("task", lambda r: r["task_id"]),
    Column("estimate", lambda r: _money_cell(r["estimate"]["cost"], r), right=True),
    Column("charged", lambda r: _money_cell(r["charged"]["cost"], r), right=True),
    Column("units", _units_cell, right=True),
    Column("reserved", lambda r: r["reserved_at"][:19].replace("T", " ")),
    Column("note", lambda r: r["reason"] or str(r["meta"].get("model") or "")),
]


def hold_dict(hold: Hold) -> dict[str, Any]:
    """A hold as JSON data: exact decimal strings, and ints in minor units."""
    estimate = hold.estimate
    exponent = hold.cost_exponent

    def units(value: int | None) -> str | None:
        return None if value is None else format_minor(value, UNIT_EXPONENT)

    def cost(value: int | None) -> str | None:
        return None if value is None else format_minor(value, exponent)

    return {
        "id": hold.id,
        "key": hold.key,
        "team": hold.team,
        "state": hold.state,
        "task_id": hold.task_id,
        "pack": estimate.pack,
        "currency": estimate.currency,
        "estimate": {"units": units(estimate.units_milli), "cost": cost(estimate.cost_minor)},
        "charged": {"units": units(hold.units_milli), "cost": cost(hold.cost_minor)},
        "variance": {
            "units": units(hold.variance_units_milli),
            "cost": cost(hold.variance_cost_minor),
        },
        "est_units_milli": estimate.units_milli,
        "est_cost_minor": estimate.cost_minor,
        "units_milli": hold.units_milli,
        "cost_minor": hold.cost_minor,
        "raw_deduction": hold.raw_deduction,
        "reason": hold.reason,
        "sheet_sha256": hold.sheet_sha256,
        "meta": dict(hold.meta),
        "reserved_at": hold.reserved_at.isoformat(),
        "updated_at": hold.updated_at.isoformat(),
    }


@holds_group.command("void", epilog=EXIT_CODES_HELP)
@click.argument("hold_id", metavar="ID", type=click.IntRange(1, 2**63 - 1))
@click.option("--reason", required=True, metavar="TEXT", help="Why nothing was charged.")
@click.option(
    "--force",
    is_flag=True,
    help="Void a hold whose task the API accepted (only if you know it will not charge it).",
)
@ledger_option
@json_option
@click.pass_context
def holds_void(
    ctx: click.Context,
    hold_id: int,
    reason: str,
    force: bool,
    ledger_path: str | None,
    as_json: bool,
) -> None:
    """Release hold ID by hand: say why no charge was (or will be) made.

    Use it to resolve a hold in state unknown once you know the submission failed. A settled
    hold cannot be voided; voiding a voided hold changes nothing. A hold with a task id is
    refused without --force: the API accepted that task and may still charge it (run
    `klingcost sync` to settle it from what the API says).
    """
    path = ledger_path or (ctx.obj or {}).get("ledger_path")
    with _open(path) as ledger:
        before = ledger.get_hold(hold_id)
        if before.is_open and before.task_id is not None and not force:
            fail(
                f"hold {hold_id} has task {before.task_id}, which the API accepted and may "
                "still charge: voiding it would free budget the task may spend. Run `klingcost "
                "sync` to settle it from the API, or give --force if you know it will not "
                "be charged",
                EXIT_INVALID,
            )
        try:  # decided again inside the transaction: a task may have been attached since
            hold = ledger.void(hold_id, reason=reason, unless_task=not force)
        except HoldStateError as exc:  # a settled hold: the request, not the tool, is wrong
            fail(str(exc), EXIT_INVALID)
    if as_json:
        echo_json(hold_dict(hold))
    elif before.state == "voided":
        click.echo(f"hold {hold_id} was already voided ({before.reason}); nothing changed")
    else:
        click.echo(f"voided hold {hold_id} of {hold.team} (was {before.state}): {reason}")
