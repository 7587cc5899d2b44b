"""A spending report read from a ledger: the sums of its groups (the ledger's read models,
:mod:`klingcost.ledger.queries`), folded into ISO weeks when asked, with each team's budget
and forecast, and the refusals of the window."""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from operator import itemgetter
from typing import Literal

from klingcost.errors import ReportError
from klingcost.ledger import Ledger, queries
from klingcost.reports.model import (
    DIMENSIONS,
    TIME_KEYS,
    BudgetColumns,
    BudgetForecast,
    Report,
    ReportRow,
    parse_group_by,
    period_of,
)


def budget_forecasts(ledger: Ledger, team: str | None = None) -> tuple[BudgetForecast, ...]:
    """The forecast of ``team``'s budget, or of every budget, by name."""
    statuses = [ledger.budget_status(team)] if team is not None else ledger.budgets()
    return tuple(
        BudgetForecast(s.team, BudgetColumns.of(s).unit, ledger.forecast(s.team)) for s in statuses
    )


def daily_sums(
    ledger: Ledger,
    *,
    since: date | None = None,
    until: date | None = None,
    team: str | None = None,
) -> Iterator[tuple[tuple[str, ...], queries.GroupSums]]:
    """Per (day, team, endpoint, model, mode, pack, currency), in order: the sums of
    :func:`klingcost.ledger.queries.grouped_sums`."""
    columns = ("day", "team", "endpoint", "model", "mode", "pack", "currency")
    merged = queries.grouped_sums(ledger, columns, since=since, until=until, team=team)
    for key in sorted(merged):
        yield key, merged[key]


def budgets_below(ledger: Ledger, team: str) -> list[str]:
    """The budgets directly below ``team``'s (its children, by name). ReportError when the
    ledger has no budget ``team``: the message names it and a few of the teams it knows."""
    rows = queries.budget_parents(ledger)
    names = [row.name for row in rows]
    if team not in names:
        near = difflib.get_close_matches(team, names, n=3)
        shown = [*near, *(name for name in names if name not in near)][:8]
        more = f" and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
        known = f"known: {', '.join(shown)}{more}" if names else "the ledger has no budgets yet"
        raise ReportError(f"no team {team!r} in the ledger ({known})", option="team", value=team)
    return [row.name for row in rows if row.parent == team]


def spending_report(
    ledger: Ledger,
    *,
    by: str | Sequence[str] = ("team",),
    since: date | None = None,
    until: date | None = None,
    team: str | None = None,
) -> Report:
    """Group the ledger's spending by ``by`` (see :data:`GROUP_KEYS`) between two dates."""
    keys = parse_group_by(by)
    if since is not None and until is not None and until < since:
        raise ReportError(f"{until} is before since {since}", option="until", value=until)
    time_key = next((k for k in keys if k in TIME_KEYS), None)
    dims = [k for k in DIMENSIONS if k in keys]
    # SQLite groups to the final key; ISO weeks are folded from days here (a few hundred rows).
    sql_time = {"day": ["day"], "week": ["day"], "month": ["month"]}.get(time_key or "", [])
    columns = [*dims, *sql_time, "currency"]
    # The report's key (DIMENSIONS, period, currency) picked from the SQL key plus a None.
    missing = len(columns)
    picks = [columns.index(k) if k in columns else missing for k in DIMENSIONS]
    picks += [len(dims) if time_key else missing, len(columns) - 1]
    pick = itemgetter(*picks)
    found = queries.grouped_sums(ledger, columns, since=since, until=until, team=team)
    groups: dict[tuple[str | None, ...], queries.GroupSums] = {}
    if time_key == "week":  # fold days into ISO weeks
        for key, sums in found.items():
            parts = list(pick((*key, None)))
            parts[5] = period_of(parts[5], "week")
            week = tuple(parts)
            old = groups.get(week)
            groups[week] = sums if old is None else _add(old, sums)
    else:
        groups = {pick((*key, None)): sums for key, sums in found.items()}
    totals: dict[str, queries.GroupSums] = {}
    for gkey, group_sums in groups.items():
        currency = gkey[6] or ""
        total = totals.get(currency)
        totals[currency] = group_sums if total is None else _add(total, group_sums)
    budgets = _budgets(ledger) if "team" in keys else {}
    rows = tuple(_row("group", gkey, groups[gkey], budgets) for gkey in sorted(groups))
    total_rows = tuple(
        _row("total", (None,) * 6 + (currency,), s, {}) for currency, s in sorted(totals.items())
    )
    return Report(
        keys,
        since,
        until,
        team,
        rows,
        total_rows,
        forecasts=budget_forecasts(ledger, team),
        refusals=refusal_counts(ledger, since, until, team),
    )


def refusal_counts(
    ledger: Ledger, since: date | None, until: date | None, team: str | None
) -> tuple[tuple[str, str, int], ...]:
    """Refused submissions per (team, reason) between two UTC days (``refused`` events)."""
    counted: Counter[tuple[str, str]] = Counter()
    for event in ledger.refusals(
        team=team,
        since=None if since is None else since.isoformat(),
        until=None if until is None else until.isoformat(),
    ):
        counted[event.team or "", str(event.data.get("reason"))] += 1
    return tuple((t, r, n) for (t, r), n in sorted(counted.items()))


def _add(a: queries.GroupSums, b: queries.GroupSums) -> queries.GroupSums:
    return queries.GroupSums(*(x + y for x, y in zip(a, b, strict=True)))


def _budgets(ledger: Ledger) -> dict[str, BudgetColumns]:
    return {status.team: BudgetColumns.of(status) for status in ledger.budgets()}


def _row(
    kind: Literal["group", "total"],
    gkey: tuple[str | None, ...],
    s: queries.GroupSums,
    budgets: Mapping[str, BudgetColumns],
) -> ReportRow:
    team, endpoint, model, mode, pack, period, currency = gkey
    return ReportRow(
        kind,
        currency or "",
        team,
        endpoint,
        model,
        mode,
        pack,
        period,
        s.settled,
        s.open,
        s.voided,
        s.settled_estimate_minor,
        s.charged_minor,
        s.held_minor,
        budgets.get(team) if team is not None else None,
    )


__all__ = [
    "budget_forecasts",
    "budgets_below",
    "daily_sums",
    "refusal_counts",
    "spending_report",
]
