"""How a budget is shown: its status as JSON data, as lines for people, and as table columns
(``budget set``, ``show``, ``list`` and ``rename`` all print it)."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from klingcost.budgets import (
    UNITS,
    BudgetStatus,
)
from klingcost.cli._output import Column
from klingcost.forecast import Forecast
from klingcost.money import fixed, format_amount


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
