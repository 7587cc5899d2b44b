"""``klingcost budget``: set, show, list, delete and rename per-team budgets."""

from __future__ import annotations

import sys
from fractions import Fraction
from typing import Any

import click

from klingcost.budgets import (
    PACKS,
    UNITS,
)
from klingcost.cli._budget_view import BUDGET_COLUMNS, NO_BUDGETS, render_status, status_dict
from klingcost.cli._common import (
    EXIT_CODES_HELP,
    EXIT_ERROR,
    EXIT_INVALID,
    echo_json,
    fail,
    json_option,
    ledger_option,
    open_read_only,
)
from klingcost.cli._output import format_option, print_records
from klingcost.errors import BudgetNotFound, KlingcostError, LedgerNotFound
from klingcost.ledger import KEEP, Keep, Ledger, default_ledger_path
from klingcost.money import exact
from klingcost.periods import PERIODS
from klingcost.sheet import load_sheet


def _open(path: str | None, *, create: bool = False) -> Ledger:
    """The ledger at ``path``; only ``budget set`` starts a new one (a mistyped path given to
    any other command is an error, not an empty ledger)."""
    return Ledger.open(path, create=create)


# --- budget -------------------------------------------------------------------------------


@click.group("budget", epilog=EXIT_CODES_HELP)
def budget_group() -> None:
    """Set and show per-team budgets (limits per period, with parents)."""


@budget_group.command("set", epilog=EXIT_CODES_HELP)
@click.argument("team")
@click.option(
    "--limit",
    metavar="N",
    help="The limit in major units: credits (500000) or Kling units (12.5). Exact, never a float."
    " Needed for a new budget, or when --unit or --pack changes what it counts.",
)
@click.option(
    "--period",
    type=click.Choice(PERIODS, case_sensitive=False),
    help="Reset period (default: none).",
)
@click.option("--parent", metavar="NAME", help="A budget this one also spends from.")
@click.option(
    "--unit",
    metavar="UNIT",
    callback=lambda ctx, param, value: None if value is None else value.strip().lower(),
    help="credits (default), units (Kling units of --pack), or a currency such as usd (any case).",
)
@click.option(
    "--pack",
    type=click.Choice(PACKS, case_sensitive=False),
    help="Resource pack of a --unit units budget (video).",
)
@click.option(
    "--soft",
    metavar="SHARE",
    callback=lambda ctx, param, value: None if value is None else parse_share(value, "--soft"),
    help="Share of the limit that records an alert: 0.8, 80% or 4/5 (default 0.8).",
)
@click.option("--tz", metavar="ZONE", help="IANA time zone of the period calendar (UTC).")
@click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Apply a change that warns (a limit below what is spent, open holds moved out of the "
    "period) without asking.",
)
@ledger_option
@json_option
def budget_set(
    team: str,
    limit: str | None,
    period: str | None,
    parent: str | None,
    unit: str | None,
    pack: str | None,
    soft: Fraction | None,
    tz: str | None,
    yes: bool,
    ledger_path: str | None,
    as_json: bool,
) -> None:
    """Create or change TEAM's budget. Options left out keep their current value.

    A change says what it changed. One that lowers the limit below what is already used, or
    changes the period so that open holds stop counting, is told first and asked for on a
    terminal; elsewhere it needs --yes (exit 2 without).

    \b
      klingcost budget set acme --limit 5000000 --period month --tz Europe/Paris
      klingcost budget set video-team --limit 500000 --parent acme --soft 90%
      klingcost budget set pack --unit units --pack video --limit 12.5 --period day
    """
    changes: dict[str, Any] = {
        "limit_major": _given(limit),
        "unit": _given(unit),
        "period": _given(period),
        "parent": _given(parent),
        "soft": KEEP if soft is None else soft,
        "tz": _given(tz),
        "pack": _given(pack),
    }
    nothing_given = all(value is KEEP for value in changes.values())
    try:  # without --limit no budget can be created, so no new ledger is started either
        opened = _open(ledger_path, create=limit is not None)
    except LedgerNotFound:
        where = ledger_path or default_ledger_path()
        fail(
            f"budget {team} does not exist yet (no ledger at {where}): give --limit N to create it",
            EXIT_INVALID,
        )
    with opened as ledger:
        try:
            preview = ledger.preview_budget(team, **changes)
        except BudgetNotFound:
            preview = None
        if preview is not None and nothing_given:
            fail(
                f"budget {team}: nothing to change; give what to change: --limit, --period, "
                "--parent, --unit, --pack, --soft or --tz",
                EXIT_INVALID,
            )
        if preview is not None and not preview.changed:
            status = preview.before
            message = f"budget {team} unchanged: it already has what was given"
        else:
            if preview is not None:
                _confirm(team, preview.warnings(), yes)
            # One library call: it reads the budget and writes the change in one transaction,
            # so the options left out keep their values even when another process changes
            # them now (the preview above is for the words only).
            status = ledger.set_budget(team, **changes)
            message = (
                f"created budget {team}"
                if preview is None
                else f"updated budget {team}: "
                + "; ".join(f"{k} {a} -> {b}" for k, (a, b) in preview.changed.items())
            )
    if as_json:
        data = status_dict(status)
        if preview is not None:
            data["changed"] = {k: {"from": a, "to": b} for k, (a, b) in preview.changed.items()}
            data["warnings"] = preview.warnings() if preview.changed else []
        echo_json(data)
    else:
        click.echo(message)
        click.echo(render_status(status))
    if status.budget.unit not in (UNITS, "credits"):
        click.echo(_currency_note(team, status.budget.unit), err=True)


def parse_share(text: str, name: str) -> Fraction:
    """A share as people write one: ``0.8``, ``80%`` or ``4/5``; exact, never a float."""
    stripped = text.strip()
    try:
        if stripped.endswith("%"):
            return exact(stripped[:-1].strip()) / 100
        return exact(stripped)
    except (TypeError, ValueError):
        raise click.BadParameter(
            f"{text!r} is not a share: write 0.8, 80% or 4/5", param_hint=name
        ) from None


def _confirm(team: str, warnings: list[str], yes: bool) -> None:
    """Tell each warning; then ask on a terminal, or refuse (exit 2) elsewhere without --yes."""
    if not warnings:
        return
    for warning in warnings:
        click.echo(f"warning: budget {team}: {warning}", err=True)
    if yes:
        return
    if not sys.stdin.isatty():
        fail(
            f"budget {team} not changed: pass --yes to apply this change (asked on a terminal; "
            "here nobody can answer)",
            EXIT_INVALID,
        )
    if not click.confirm("Apply this change?", default=False, err=True):
        fail(f"budget {team} not changed", EXIT_ERROR)


def _given(value: str | None) -> str | Keep:
    """An option left out keeps the budget's current value (or a new budget's default)."""
    return KEEP if value is None else value


def _currency_note(team: str, currency: str) -> str:
    """One line for a budget in a currency other than credits: only holds priced in it count,
    so say which providers of the price sheet price in it."""
    try:
        providers = sorted(
            name for name, p in load_sheet().providers.items() if p.currency == currency
        )
    except KlingcostError:  # a broken overlay is reported where prices are used, not here
        providers = []
    how = (
        " or ".join(f"--provider {name}" for name in providers)
        if providers
        else f"a provider in {currency}, added with --pricing FILE"
    )
    return (
        f"note: budget {team} counts {currency}: only holds priced in {currency} fit it; "
        f"price jobs with {how}"
    )


@budget_group.command("show", epilog=EXIT_CODES_HELP)
@click.argument("team", required=False)
@ledger_option
@format_option()
def budget_show(team: str | None, ledger_path: str | None, fmt: str) -> None:
    """Show TEAM's budget in its current period (or every budget): limit, posted, held,
    available, the period window and the share used."""
    with open_read_only(ledger_path) as ledger:
        statuses = [ledger.budget_status(team)] if team else ledger.budgets()
        forecasts = {s.team: ledger.forecast(s.team) for s in statuses}
    if fmt == "json" and team:  # one budget is one object, as it always was
        echo_json(status_dict(statuses[0], forecasts[team]))
    elif fmt != "table":
        records = [status_dict(s, forecasts[s.team]) for s in statuses]
        print_records(records, BUDGET_COLUMNS, fmt)
    elif not statuses:
        click.echo(NO_BUDGETS)
    else:
        click.echo("\n\n".join(render_status(s, forecasts[s.team]) for s in statuses))


@budget_group.command("list", epilog=EXIT_CODES_HELP)
@ledger_option
@format_option()
def budget_list(ledger_path: str | None, fmt: str) -> None:
    """List every budget with its current period, in one table."""
    with open_read_only(ledger_path) as ledger:
        statuses = ledger.budgets()
    print_records([status_dict(s) for s in statuses], BUDGET_COLUMNS, fmt, empty=NO_BUDGETS)


@budget_group.command("delete", epilog=EXIT_CODES_HELP)
@click.argument("team")
@click.option(
    "--force",
    is_flag=True,
    help="Delete it even with open holds: they stay open under the archived budget, keep "
    "counting against its parents, and `klingcost sync` still settles them.",
)
@click.option("--yes", "-y", is_flag=True, help="Delete without asking (asked on a terminal).")
@ledger_option
@json_option
def budget_delete(
    team: str, force: bool, yes: bool, ledger_path: str | None, as_json: bool
) -> None:
    """Delete TEAM's budget; refused while it has open holds (unless --force) or budgets below.

    A budget that held nothing is removed. One with history is archived as TEAM~deleted-N:
    hidden from `budget list`, its holds kept for reports and audits, its name free again.
    What it spent still counts in its parents. A budget_deleted event is recorded. On a
    terminal it asks first (--yes does not); elsewhere (a script) it does not ask.

    \b
      klingcost budget delete old-team
      klingcost budget delete old-team --force --yes
    """
    with _open(ledger_path) as ledger:
        if not yes and sys.stdin.isatty():
            ledger.get_budget(team)  # a budget that is not there is refused before asking
            if not click.confirm(f"Delete budget {team}?", default=False, err=True):
                fail(f"budget {team} not deleted", EXIT_ERROR)
        done = ledger.delete_budget(team, force=force)
    if as_json:
        echo_json(
            {
                "team": done.team,
                "archived": done.archived,
                "open_holds": list(done.open_holds),
                "open_held_minor": done.open_held,
            }
        )
        return
    if done.archived is None:
        click.echo(f"deleted budget {team} (it held nothing)")
        return
    click.echo(
        f"deleted budget {team}; its history is kept as {done.archived} "
        f"(klingcost report --team {done.archived})"
    )
    if done.open_holds:
        ids = ", ".join(map(str, done.open_holds))
        click.echo(
            f"its {len(done.open_holds)} open hold(s) ({ids}) stay open under {done.archived} "
            "and still count against its parents: `klingcost sync` settles them at the real "
            f"charge, or `klingcost holds void ID --reason TEXT` releases one"
        )


@budget_group.command("rename", epilog=EXIT_CODES_HELP)
@click.argument("team")
@click.argument("new_name", metavar="NEW")
@ledger_option
@json_option
def budget_rename(team: str, new_name: str, ledger_path: str | None, as_json: bool) -> None:
    """Rename TEAM's budget to NEW; its holds, balances and children follow.

    Everything keeps counting: the holds reserved under TEAM, its running balances and the
    parent link of the budgets below it move to NEW in one transaction. The event log keeps
    the old name (a budget_renamed event links the two).

    \b
      klingcost budget rename video video-eu
    """
    with _open(ledger_path) as ledger:
        status = ledger.rename_budget(team, new_name)
        below = [s.team for s in ledger.budgets() if s.budget.parent == new_name]
    if as_json:
        echo_json({**status_dict(status), "previous": team})
        return
    follows = f"; budgets below it now point to it: {', '.join(below)}" if below else ""
    click.echo(f"renamed budget {team} to {new_name}{follows}")
    click.echo(render_status(status))
