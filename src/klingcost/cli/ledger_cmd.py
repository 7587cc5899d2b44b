"""``klingcost budget``, ``klingcost holds`` and ``klingcost ledger``: the ledger's commands."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import click

from klingcost.budgets import (
    CURRENCY_EXPONENTS,
    PACKS,
    UNITS,
    BudgetStatus,
)
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
from klingcost.cli._output import Column, format_option, print_records
from klingcost.errors import BudgetNotFound, HoldStateError, KlingcostError, LedgerNotFound
from klingcost.forecast import Forecast
from klingcost.ledger import HOLD_STATES, KEEP, Hold, Keep, Ledger, default_ledger_path
from klingcost.money import UNIT_EXPONENT, exact, fixed, format_amount, format_minor
from klingcost.periods import PERIODS
from klingcost.sheet import load_sheet


def _open(path: str | None, *, create: bool = False) -> Ledger:
    """The ledger at ``path``; only ``budget set`` starts a new one (a mistyped path given to
    any other command is an error, not an empty ledger)."""
    return Ledger.open(path, create=create)


def _percent(status: BudgetStatus) -> str:
    """Share used for people, to one decimal (the exact share is in --json)."""
    if status.limit == 0:
        return "-" if status.used == 0 else "over"
    tenths = status.used * 1000 // status.limit
    return f"{tenths // 10}.{tenths % 10}%"


def _percent_of(share: Fraction) -> str:
    """A configured share as a percentage for people: exact when it terminates within two
    places ("80%", "87.5%"), else to two places ("66.67%")."""
    text = fixed(share * 100, 2)
    return f"{text.rstrip('0').rstrip('.') if '.' in text else text}%"


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


NO_BUDGETS = "no budgets yet; create one with: klingcost budget set TEAM --limit N"


def _used(record: Mapping[str, Any]) -> str:
    """Share used for people, to one decimal (the exact share is in --json)."""
    limit, used = record["limit_minor"], record["posted_minor"] + record["held_minor"]
    if limit == 0:
        return "-" if used == 0 else "over"
    tenths = used * 1000 // limit
    return f"{tenths // 10}.{tenths % 10}%"


#: The columns of ``budget list`` (and ``budget show`` in csv, md, html): the JSON has all.
BUDGET_COLUMNS: list[str | Column] = [
    "team",
    "parent",
    Column("unit", lambda r: f"units ({r['pack']})" if r["unit"] == UNITS else r["unit"]),
    Column("period", lambda r: r["window"]["key"]),
    Column("limit", right=True),
    Column("posted", right=True),
    Column("held", right=True),
    Column("available", right=True),
    Column("used", _used, right=True),
]


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
@ledger_option
@json_option
def budget_delete(team: str, force: bool, ledger_path: str | None, as_json: bool) -> None:
    """Delete TEAM's budget; refused while it has open holds (unless --force) or budgets below.

    A budget that held nothing is removed. One with history is archived as TEAM~deleted-N:
    hidden from `budget list`, its holds kept for reports and audits, its name free again.
    What it spent still counts in its parents. A budget_deleted event is recorded.

    \b
      klingcost budget delete old-team
      klingcost budget delete old-team --force
    """
    with _open(ledger_path) as ledger:
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


def _unit_name(status: BudgetStatus) -> str:
    budget = status.budget
    return f"units ({budget.pack})" if budget.unit == UNITS else budget.unit


def status_dict(status: BudgetStatus, forecast: Forecast | None = None) -> dict[str, Any]:
    """A budget status as JSON data: exact decimal strings, and ints in minor units; with
    ``forecast``, its ``{rate_per_day, runs_out_on, method}`` under ``forecast``."""
    b = status.budget
    window = status.window
    extra = {} if forecast is None else {"forecast": forecast.to_dict()}
    return {
        "team": b.team,
        "parent": b.parent,
        "unit": b.unit,
        "pack": b.pack,
        "exponent": b.exponent,
        "period": b.period,
        "tz": b.tz,
        "window": {
            "key": window.key,
            "start": window.start.isoformat() if window.start else None,
            "end": window.end.isoformat() if window.end else None,
        },
        "limit": b.format(status.limit),
        "posted": b.format(status.posted),
        "held": b.format(status.held),
        "available": b.format(status.available),
        "limit_minor": status.limit,
        "posted_minor": status.posted,
        "held_minor": status.held,
        "available_minor": status.available,
        "share_used": fixed(status.share_used, 4),
        "soft": format_amount(b.soft),
        **extra,
    }


def render_status(status: BudgetStatus, forecast: Forecast | None = None) -> str:
    b = status.budget
    unit = _unit_name(status)
    window = status.window
    span = (
        f"{window.key} ({window.start.isoformat()} to {window.end.isoformat()}, {b.tz})"
        if window.start and window.end
        else "all time (no period)"
    )
    rows = [
        ["budget", f"{b.team}" + (f" (parent {b.parent})" if b.parent else "")],
        ["period", f"{b.period}: {span}"],
        ["limit", f"{b.format(status.limit)} {unit}"],
        ["posted", f"{b.format(status.posted)} {unit}"],
        ["held", f"{b.format(status.held)} {unit}"],
        ["available", f"{b.format(status.available)} {unit}"],
        ["used", f"{_percent(status)} (alert at {_percent_of(b.soft)})"],
    ]
    if forecast is not None:
        rows += forecast_rows(forecast, unit)
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def forecast_rows(forecast: Forecast, unit: str) -> list[list[str]]:
    """``burn rate`` and ``runs out`` lines of a budget, as ``budget show`` prints them."""
    if forecast.runs_out_on is None:
        out = "not at this rate (nothing settled in the days fitted)"
    elif forecast.runs_out_early:
        out = f"{forecast.runs_out_on}, before its period ends ({forecast.period_ends_on})"
    else:
        out = f"{forecast.runs_out_on}"
    rate = f"{forecast.rate_text} {unit}/day: {forecast.method}"
    return [["burn rate", rate], ["runs out", out]]


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
    exponent = CURRENCY_EXPONENTS.get(estimate.currency, 0)

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
        click.echo(f"OK: {storage}every running balance in {where} agrees with its entries")
    if problems:
        ctx.exit(EXIT_ERROR)
