"""A self-contained HTML spending report: inline CSS, an inline SVG chart, no script, no network.

    page = html_report(ledger, spending_report(ledger, by="team,month"))
    Path("report.html").write_text(page, encoding="utf-8")

The chart has one panel per budget: what the budget has used (posted + held) day by day,
summed over the budget's own team and its children and restarting at each period of the budget,
against a dashed line at its limit. Each panel is an SVG ``<g class="panel" data-team="...">``
holding a ``<polyline class="series">`` and a ``<line class="budget-line">``, so a script can
read the page as easily as a person. Days are UTC days; a budget in another time zone starts
its periods at its local midnight, so a panel can shift by a day at a period's edge.

Every string from the ledger (team names, models) is escaped; nothing is fetched when the page
opens: it reads the same offline.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Final

from klingcost.budgets import UNITS, Budget
from klingcost.ledger import Ledger
from klingcost.money import format_minor
from klingcost.periods import period_key
from klingcost.reports import Report, daily_sums, table_columns, text_cells

#: Colours of the series, in order (readable on white, distinct for colour-blind readers).
PALETTE: Final = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")


@dataclass(frozen=True, slots=True)
class BudgetSeries:
    """What one budget used, per day of the window (minor units of the budget's unit)."""

    team: str
    unit_label: str
    exponent: int
    limit: int
    period: str
    points: tuple[tuple[date, int], ...]

    def format(self, minor: int) -> str:
        return format_minor(minor, self.exponent)


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


def budget_series(
    ledger: Ledger,
    *,
    since: date | None = None,
    until: date | None = None,
    team: str | None = None,
) -> list[BudgetSeries]:
    """A series per budget with spending in the window (see the module docstring).

    With ``team``, only that team's holds count, and only the budgets above it are drawn.
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
    if not days:
        return []
    earliest_day = date.fromisoformat(min(days))
    if since is None:
        # Start at the beginning of the first period shown, so each line rises from zero.
        starts = [_period_start(b.period, earliest_day) for b in budgets]
        start = min((d for d in starts if d is not None), default=earliest_day)
    else:
        start = since
    today = ledger.clock.now().astimezone(UTC).date()
    end = until or max(date.fromisoformat(max(days)), today)
    trees = _subtrees(budgets)
    teams_by_day: dict[str, set[str]] = defaultdict(set)
    for holder, text in by_team_day:
        teams_by_day[text].add(holder)
    earliest = date.fromisoformat(min(text for _, text in by_team_day))
    out = []
    for budget in budgets:
        tree = trees[budget.team]
        if not any(holder in tree for holder, _ in by_team_day):
            continue
        first = _period_start(budget.period, start)
        day: date = first if first is not None else earliest
        running, current_key = 0, None
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
                budget.team, label, budget.exponent, budget.limit, budget.period, tuple(points)
            )
        )
    return out


def _period_start(period: str, day: date) -> date | None:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return None  # no period: from the beginning


# --- SVG ----------------------------------------------------------------------------------

_WIDTH, _PANEL, _LEFT, _RIGHT, _TOP, _GAP = 760, 150, 90, 20, 28, 40


def _nice_top(value: int) -> int:
    """A round axis maximum at or above ``value`` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1
    power = 1
    while power * 10 <= value:
        power *= 10
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover


def render_svg(series: Sequence[BudgetSeries]) -> str:
    """The chart: one panel per budget, sharing the time axis."""
    if not series:
        return '<p class="empty">No spending to chart in this window.</p>'
    days = sorted({d for s in series for d, _ in s.points})
    first, last = days[0], days[-1]
    span = max(1, (last - first).days)
    plot_w = _WIDTH - _LEFT - _RIGHT
    height = _TOP + len(series) * (_PANEL + _GAP)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{_WIDTH}"'
        f' height="{height}" viewBox="0 0 {_WIDTH} {height}">',
        "<title>Budget used per day against each budget's limit</title>",
    ]
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        top = _TOP + i * (_PANEL + _GAP)
        peak = max([s.limit, *(v for _, v in s.points)])
        y_max = _nice_top(peak + peak // 20)

        def x(day: date) -> str:
            return f"{_LEFT + plot_w * (day - first).days / span:.1f}"

        def y(value: int, top: int = top, y_max: int = y_max) -> str:
            return f"{top + _PANEL - _PANEL * value / y_max:.1f}"

        team = escape(s.team, quote=True)
        points = " ".join(f"{x(d)},{y(v)}" for d, v in s.points)
        latest = s.points[-1][1] if s.points else 0
        parts += [
            f'<g class="panel" data-team="{team}" data-unit="{escape(s.unit_label, quote=True)}"'
            f' data-limit="{s.format(s.limit)}">',
            f'<text class="panel-title" x="{_LEFT}" y="{top - 8}">{team}: '
            f"{s.format(latest)} of {s.format(s.limit)} {escape(s.unit_label)}"
            f" ({escape(s.period)} budget)</text>",
            f'<rect class="frame" x="{_LEFT}" y="{top}" width="{plot_w}" height="{_PANEL}"/>',
            f'<text class="axis" x="{_LEFT - 6}" y="{top + 4}" text-anchor="end">'
            f"{s.format(y_max)}</text>",
            f'<text class="axis" x="{_LEFT - 6}" y="{top + _PANEL}" text-anchor="end">0</text>',
            f'<line class="budget-line" data-team="{team}" x1="{_LEFT}" x2="{_LEFT + plot_w}"'
            f' y1="{y(s.limit)}" y2="{y(s.limit)}" stroke="{colour}" stroke-dasharray="6 4">'
            f"<title>{team} budget: {s.format(s.limit)} {escape(s.unit_label)}</title></line>",
            f'<polyline class="series" data-team="{team}" fill="none" stroke="{colour}"'
            f' stroke-width="2" points="{points}"><title>{team}: used per day</title></polyline>',
            *_markers(s, x, y, colour, team),
            "</g>",
        ]
    bottom = _TOP + len(series) * (_PANEL + _GAP) - _GAP + 16
    parts += [
        f'<text class="axis" x="{_LEFT}" y="{bottom}">{first.isoformat()}</text>',
        f'<text class="axis" x="{_LEFT + plot_w}" y="{bottom}" text-anchor="end">'
        f"{last.isoformat()}</text>",
        "</svg>",
    ]
    return "\n".join(parts)


def _markers(
    s: BudgetSeries, x: Callable[[date], str], y: Callable[[int], str], colour: str, team: str
) -> list[str]:
    """A dot on each day the total changed, so a single day of spending still shows."""
    dots, previous = [], 0
    for day, value in s.points:
        if value != previous:
            dots.append(
                f'<circle class="point" cx="{x(day)}" cy="{y(value)}" r="3" fill="{colour}">'
                f"<title>{team} {day.isoformat()}: {s.format(value)}</title></circle>"
            )
        previous = value
    return dots


# --- the page -----------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b;
       margin: 2rem auto; max-width: 64rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: .3rem .55rem; border-bottom: 1px solid #ddd; text-align: left; }
th { background: #f4f4f4; font-weight: 600; } td.num, th.num { text-align: right; }
tr.total td { font-weight: 600; border-top: 2px solid #999; }
.chart { max-width: 100%; height: auto; } .chart .frame { fill: #fafafa; stroke: #ccc; }
.chart text { font-size: 12px; fill: #333; } .chart .panel-title { font-weight: 600; }
.note { color: #555; font-size: .9rem; }
@media (prefers-color-scheme: dark) {
  body { background: #161616; color: #e6e6e6; } th { background: #262626; }
  th, td { border-color: #333; } .meta, .note { color: #aaa; }
  .chart .frame { fill: #1e1e1e; stroke: #444; } .chart text { fill: #ddd; } }
"""

_NUMERIC = {
    "tasks",
    "settled",
    "open",
    "voided",
    "estimated",
    "charged",
    "held",
    "variance",
    "budget_used",
    "budget_limit",
    "budget_share",
}


def _table(report: Report) -> str:
    columns = table_columns(report)
    head = "".join(
        f'<th scope="col" class="{"num" if c in _NUMERIC else "text"}">'
        f"{escape(c.replace('_', ' '))}</th>"
        for c in columns
    )
    rows = []
    kinds = [row.kind for row in (*report.rows, *report.totals)]
    for kind, values in zip(kinds, text_cells(report, columns), strict=True):
        tds = "".join(
            f'<td class="{"num" if c in _NUMERIC else "text"}">{escape(v)}</td>'
            for c, v in zip(columns, values, strict=True)
        )
        rows.append(f'<tr class="{kind}">{tds}</tr>')
    if not report.rows:
        rows = [f'<tr><td colspan="{len(columns)}">No spending in this window.</td></tr>']
    return (
        f'<table class="report"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def render_html(
    report: Report,
    series: Iterable[BudgetSeries],
    *,
    title: str = "klingcost spending report",
    generated_at: datetime | None = None,
    ledger_path: str | None = None,
) -> str:
    """The whole page as a string (UTF-8, no external resource)."""
    window = (
        f"{report.since.isoformat() if report.since else 'the beginning'} to "
        f"{report.until.isoformat() if report.until else 'now'} (UTC days)"
    )
    meta = [f"Window: {window}", f"grouped by {', '.join(report.by) or 'nothing'}"]
    if report.team:
        meta.append(f"team {report.team}")
    if generated_at is not None:
        meta.append(f"generated {generated_at.isoformat(timespec='seconds')}")
    if ledger_path:
        meta.append(f"ledger {ledger_path}")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            f"<h1>{escape(title)}</h1>",
            f'<p class="meta">{escape(" · ".join(meta))}</p>',
            "<h2>Budget used over time</h2>",
            render_svg(list(series)),
            '<p class="note">Solid line: posted + held in the budget\'s period, by day of'
            " reservation, including child budgets. Dashed line: the budget's limit.</p>",
            "<h2>Spending</h2>",
            _table(report),
            '<p class="note">Estimated: estimates of settled and open tasks. Charged: what settled'
            " tasks were charged. Held: estimates still reserved. Variance: charged minus the"
            " estimates of settled tasks. Budget columns describe each budget's current"
            " period.</p>",
            "</body>",
            "</html>",
            "",
        ]
    )


def html_report(ledger: Ledger, report: Report, *, title: str = "klingcost spending report") -> str:
    """Render ``report`` with the budget chart of the same window."""
    series = budget_series(ledger, since=report.since, until=report.until, team=report.team)
    return render_html(
        report,
        series,
        title=title,
        generated_at=ledger.clock.now(),
        ledger_path=str(ledger.path),
    )


__all__ = [
    "BudgetSeries",
    "budget_series",
    "html_report",
    "render_html",
    "render_svg",
]
