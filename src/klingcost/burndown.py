"""What each budget used, day by day: the data of the burn-down charts of ``klingcost ui`` and
``klingcost report --format html``.

    series = budget_series(ledger, since=date(2026, 11, 1))
    spec = chart_spec(series[0], forecast_for(ledger, series[0].team), today=date(2026, 12, 3))

A series is what a budget used (posted + held) at the end of each UTC day, summed over the
budget's own team and its children and restarting at each period of the budget. Days are UTC
days of the reservation; a budget in another time zone starts its periods at its local
midnight, so a series can shift by a day at a period's edge.

:func:`chart_spec` turns a series into the JSON the page's ``charts.js`` draws with uPlot:
amounts as exact decimal strings (the script parses them only to place points), the limit, the
period key at the window's end (the same numbers the budgets table shows), and, when the series
ends today, the forecast's projection from today's total to the day the budget runs out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

from klingcost.budgets import UNITS, Budget
from klingcost.display import group_digits
from klingcost.forecast import Forecast
from klingcost.ledger import Ledger
from klingcost.money import format_minor
from klingcost.periods import period_key
from klingcost.reports.spending import daily_sums


@dataclass(frozen=True, slots=True)
class BudgetSeries:
    """What one budget used, per day of the window (minor units of the budget's unit)."""

    team: str
    unit_label: str
    exponent: int
    limit: int
    period: str
    points: tuple[tuple[date, int], ...]
    parent: str | None = None
    #: The key of the budget's period that holds the last day shown (``2026-11``, ``all``).
    last_key: str = ""

    def format(self, minor: int) -> str:
        return format_minor(minor, self.exponent)

    @property
    def last(self) -> int:
        """What the budget had used at the end of the last day shown."""
        return self.points[-1][1] if self.points else 0


def _subtrees(budgets: Sequence[Budget]) -> dict[str, set[str]]:
    children: dict[str, list[str]] = defaultdict(list)
    for b in budgets:
        if b.parent is not None:
            children[b.parent].append(b.team)
    trees: dict[str, set[str]] = {}
    for b in budgets:
        seen, stack = {b.team}, [b.team]
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        trees[b.team] = seen
    return trees


def _counted(budget: Budget, pack: str, currency: str, cost: int, units: int) -> int:
    if budget.unit == UNITS:
        return units if pack == budget.pack else 0
    return cost if currency == budget.unit else 0


def _period_start(period: str, day: date) -> date | None:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return None  # no period: from the beginning


def budget_series(
    ledger: Ledger,
    *,
    since: date | None = None,
    until: date | None = None,
    team: str | None = None,
    idle: bool = False,
) -> list[BudgetSeries]:
    """A series per budget with spending in the window (see the module docstring).

    With ``team``, only that team's holds count, and only the budgets above it are drawn.
    With ``idle`` (and a ``since``), budgets with no spending get a flat series too: the live
    page shows every budget.
    """
    budgets = [status.budget for status in ledger.budgets()]
    if not budgets:
        return []
    # Read from the first day of the period that holds ``since``, so that a period's running
    # total is right on the first day shown.
    first_needed = since
    if since is not None:
        starts = [_period_start(b.period, since) for b in budgets]
        first_needed = None if None in starts else min(d for d in starts if d is not None)
    by_team_day: dict[tuple[str, str], list[tuple[str, str, int, int]]] = defaultdict(list)
    days: set[str] = set()
    for (on, holder, _e, _m, _mo, pack, currency), s in daily_sums(
        ledger, since=first_needed, until=until, team=team
    ):
        # s: settled, open, voided, settled estimate, charged, held, charged units, held units
        by_team_day[(holder, on)].append((pack, currency, s[4] + s[5], s[6] + s[7]))
        if since is None or on >= since.isoformat():
            days.add(on)
    today = ledger.clock.now().astimezone(UTC).date()
    if not days and not (idle and since is not None):
        return []
    if since is None:
        # Start at the beginning of the first period shown, so each line rises from zero.
        earliest_day = date.fromisoformat(min(days))
        starts = [_period_start(b.period, earliest_day) for b in budgets]
        start = min((d for d in starts if d is not None), default=earliest_day)
    else:
        start = since
    end = until or max(date.fromisoformat(max(days, default=today.isoformat())), today)
    trees = _subtrees(budgets)
    teams_by_day: dict[str, set[str]] = defaultdict(set)
    for holder, text in by_team_day:
        teams_by_day[text].add(holder)
    earliest = min((date.fromisoformat(text) for _, text in by_team_day), default=start)
    out = []
    for budget in budgets:
        tree = trees[budget.team]
        if not idle and not any(holder in tree for holder, _ in by_team_day):
            continue
        first = _period_start(budget.period, start)
        day: date = first if first is not None else earliest
        running, current_key = 0, ""
        points: list[tuple[date, int]] = []
        while day <= end:
            noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
            key = period_key(budget.period, noon, budget.tz)
            if key != current_key:
                running, current_key = 0, key
            text = day.isoformat()
            for holder in teams_by_day.get(text, ()):
                if holder in tree:
                    for pack, currency, cost, units in by_team_day[(holder, text)]:
                        running += _counted(budget, pack, currency, cost, units)
            if day >= start:
                points.append((day, running))
            day += timedelta(days=1)
        label = f"units ({budget.pack})" if budget.unit == UNITS else budget.unit
        out.append(
            BudgetSeries(
                budget.team,
                label,
                budget.exponent,
                budget.limit,
                budget.period,
                tuple(points),
                parent=budget.parent,
                last_key=current_key,
            )
        )
    return out


def projection(
    series: BudgetSeries,
    rate_per_day: Fraction,
    runs_out_on: date | None,
    period_ends_on: date | None = None,
    *,
    horizon: int = 31,
) -> list[tuple[date, int]]:
    """The forecast's straight line from the last day's total: to the limit on ``runs_out_on``,
    or, when that is after the period's last day (the budget starts over first) or more than
    ``horizon`` days away, to what ``rate_per_day`` adds by the earlier of the two. Empty when
    nothing runs out or the limit is already reached."""
    if not series.points or runs_out_on is None or rate_per_day <= 0:
        return []
    last_day, used = series.points[-1]
    if runs_out_on <= last_day or used >= series.limit:
        return []
    stop = last_day + timedelta(days=horizon)
    if period_ends_on is not None and period_ends_on >= last_day:
        stop = min(stop, period_ends_on)
    if runs_out_on <= stop:
        return [(last_day, used), (runs_out_on, series.limit)]
    if stop <= last_day:
        return []
    reached = min(series.limit, used + int(rate_per_day * (stop - last_day).days))
    return [(last_day, used), (stop, reached)]


def nice_step(raw: int) -> int:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``raw`` (an int, at
    least 1; 2.5 from 25 up)."""
    power = 1
    while True:
        steps = (
            [power, 2 * power, 5 * power // 2, 5 * power]
            if power >= 10
            else [power, 2 * power, 5 * power]
        )
        for step in steps:
            if step >= raw:
                return step
        power *= 10


def axis(top: int) -> tuple[int, list[int]]:
    """A value axis fitted to ``top`` (minor units): its maximum, 10% above ``top``, and its
    ticks, multiples of a round step from 0 up to that maximum (4 to 8 of them once ``top``
    is 25 or more): ``axis(200_000)`` is ``(220_000, [0, 50_000, ..., 200_000])``."""
    top = max(top, 1)
    maximum = -(-top * 11 // 10)
    step = nice_step(-(-maximum // 7))
    return maximum, list(range(0, maximum + 1, step))


def chart_spec(
    series: BudgetSeries, forecast: Forecast | None = None, *, today: date | None = None
) -> dict[str, Any]:
    """The JSON ``charts.js`` draws for one budget (see the module docstring); the
    forecast's line is drawn only when the series ends on ``today``."""
    ends_today = bool(series.points) and series.points[-1][0] == today
    line = (
        projection(series, forecast.rate_per_day, forecast.runs_out_on, forecast.period_ends_on)
        if forecast is not None and ends_today
        else []
    )
    peak = max([series.limit, *(v for _, v in series.points), *(v for _, v in line)])
    maximum, ticks = axis(peak)
    return {
        "team": series.team,
        "parent": series.parent,
        "unit": series.unit_label,
        "period": series.period,
        "period_key": series.last_key,
        "limit": series.format(series.limit),
        "used": series.format(series.last),
        "days": [d.isoformat() for d, _ in series.points],
        "values": [series.format(v) for _, v in series.points],
        "projection": [[d.isoformat(), series.format(v)] for d, v in line],
        "axis": {
            "max": series.format(maximum),
            "ticks": [series.format(t) for t in ticks],
            "labels": [group_digits(series.format(t)) for t in ticks],
        },
        "forecast": forecast_record(forecast) if forecast is not None and ends_today else None,
    }


def forecast_record(forecast: Forecast) -> dict[str, Any]:
    """A forecast as the page and the report show it: ``{rate_per_day, runs_out_on, method}``
    (as ``--json``) plus ``period_ends_on``, ``runs_out_early`` and a sentence."""
    return {
        **forecast.to_dict(),
        "period_ends_on": (
            None if forecast.period_ends_on is None else forecast.period_ends_on.isoformat()
        ),
        "runs_out_early": forecast.runs_out_early,
        "text": forecast.describe(),
    }


__all__ = [
    "BudgetSeries",
    "axis",
    "budget_series",
    "chart_spec",
    "forecast_record",
    "nice_step",
    "projection",
]
