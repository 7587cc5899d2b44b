"""Spending reports: where the credits went, per team, model, mode, endpoint, pack and time.

    report = spending_report(ledger, by=("team", "month"), since=date(2026, 11, 1))
    for row in report.rows:            # ReportRow: typed, frozen, exact amounts
        print(row.team, row.period, row.charged)
    write_csv(report, sys.stdout)      # or write_json, write_markdown, render_table
    export_tasks_csv(ledger, out)      # one row per task, streamed

A grouped report reads the ledger's rollups (closed holds, per UTC day, team, endpoint, model,
mode, pack and currency) and the open holds (the jobs in flight, few): its cost does not grow
with the number of tasks. Weeks (ISO, ``2026-W48``) and months (``2026-11``) are folded from
days. Days are UTC days of the hold's reservation; ``since`` and ``until`` are inclusive dates.

**Grouped report columns** (CSV header, JSON keys; the same set whatever ``by`` is, a column
that is not grouped on is empty):

==================  ======================================================================
``kind``            ``group`` for a group, ``total`` for the total of one currency
``team``            the team that placed the holds
``endpoint``        ``videos/text2video``, ``images/generations``, ...
``model``           ``kling-v1-5``, ...
``mode``            ``std``, ``pro`` or empty (a model with one price, or an image)
``pack``            ``video`` or ``image``: the resource pack the units come from
``period``          the day (``2026-11-25``), ISO week (``2026-W48``) or month (``2026-11``)
``currency``        what the amounts are in (``credits`` for openai-hk)
``tasks``           holds that are settled or still open (voided ones cost nothing)
``settled``         holds settled at what the API charged
``open``            holds still open (held, submitted or outcome unknown)
``voided``          holds released without a charge
``estimated``       the estimates of settled and open holds
``charged``         what the settled holds were charged
``held``            the estimates of the open holds, still reserved
``variance``        ``charged`` minus the estimates of the settled holds
``budget_limit``    the team's budget limit (only when grouped by team)
``budget_used``     posted + held in the budget's *current* period (only when grouped by team)
``budget_share``    ``budget_used / budget_limit``, a decimal rounded to 4 places
``budget_unit``     the budget's unit (``credits``, or ``units (video)``)
``budget_period``   the current period's key (``2026-11``, ``all``)
==================  ======================================================================

Amounts are exact decimals in major units of ``currency`` (whole credits). The budget columns
describe the budget's current period whatever the report's window: a budget is kept per period,
and a window of days need not match one. ``budget_used`` counts the team's own holds and its
children's, as the budget itself does.

**Task export columns** (:data:`TASK_COLUMNS`, one row per hold): ``hold_id``, ``task_id``,
``team``, ``state``, ``reserved_at``, ``updated_at``, ``endpoint``, ``model``, ``mode``,
``duration``, ``sound``, ``video_reference``, ``reference_image``, ``n``, ``pack``,
``currency``, ``estimated``, ``charged``, ``held``, ``variance`` (in ``currency``),
``estimated_units``, ``charged_units``, ``variance_units`` (Kling units), ``raw_deduction``
(``final_unit_deduction`` as the API sent it), ``deduction_flag`` (``ok``, ``absent``,
``zero``, ``malformed``, ``negative``, ``absurd``), ``task_status``, ``reason``.

**Spreadsheet safety of CSV** (:func:`csv_cell`): a spreadsheet runs a cell that starts with
``=``, ``+``, ``-`` or ``@`` (or a tab or line break before one) as a formula, and text
in the ledger (a void ``reason``, a team, a model, an API's ``raw_deduction``) is anyone's. So
both CSV writers prefix such a text cell with a single quote (``=1+2`` is written ``'=1+2``),
unless the cell is a plain number (``-1``, ``2.5``, ``-1e5``), which is written as it is. JSON
is written unchanged. Task ids stay plain digits: a spreadsheet that opens the CSV reads an
18-digit id as a number and rounds it to 15 digits, so import that column as text.
"""

from __future__ import annotations

import csv
import difflib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction
from functools import lru_cache
from operator import itemgetter
from typing import IO, Any, Final, Literal, cast

from klingcost.budgets import CURRENCY_EXPONENTS, UNITS, BudgetStatus
from klingcost.errors import ReportError
from klingcost.forecast import Forecast
from klingcost.ledger import Ledger
from klingcost.money import UNIT_EXPONENT, fixed, format_minor

GroupKey = Literal["team", "endpoint", "model", "mode", "pack", "day", "week", "month"]
DIMENSIONS: Final[tuple[str, ...]] = ("team", "endpoint", "model", "mode", "pack")
TIME_KEYS: Final[tuple[str, ...]] = ("day", "week", "month")
GROUP_KEYS: Final[tuple[str, ...]] = (*DIMENSIONS, *TIME_KEYS)

COLUMNS: Final[tuple[str, ...]] = (
    "kind",
    "team",
    "endpoint",
    "model",
    "mode",
    "pack",
    "period",
    "currency",
    "tasks",
    "settled",
    "open",
    "voided",
    "estimated",
    "charged",
    "held",
    "variance",
    "budget_limit",
    "budget_used",
    "budget_share",
    "budget_unit",
    "budget_period",
)

TASK_COLUMNS: Final[tuple[str, ...]] = (
    "hold_id",
    "task_id",
    "team",
    "state",
    "reserved_at",
    "updated_at",
    "endpoint",
    "model",
    "mode",
    "duration",
    "sound",
    "video_reference",
    "reference_image",
    "n",
    "pack",
    "currency",
    "estimated",
    "charged",
    "held",
    "variance",
    "estimated_units",
    "charged_units",
    "variance_units",
    "raw_deduction",
    "deduction_flag",
    "task_status",
    "reason",
)


def exponent_of(currency: str) -> int:
    """The exponent klingcost knows for ``currency``; 0 (amounts in minor units) otherwise."""
    return CURRENCY_EXPONENTS.get(currency, 0)


def parse_group_by(text: str | Sequence[str]) -> tuple[GroupKey, ...]:
    """``"team,month"`` -> ``("team", "month")``; ReportError for an unknown or doubled key."""
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    parts = [p for p in parts if p]
    unknown = [p for p in parts if p not in GROUP_KEYS]
    if unknown:
        raise ReportError(
            f"unknown key {unknown[0]!r} (allowed: {', '.join(GROUP_KEYS)}; "
            "join several with commas, e.g. team,month)",
            option="by",
            value=unknown[0],
            allowed=", ".join(GROUP_KEYS),
        )
    if len([p for p in parts if p in TIME_KEYS]) > 1:
        raise ReportError(
            f"choose one of day, week or month (given {','.join(parts)})", option="by"
        )
    if len(set(parts)) != len(parts):
        raise ReportError(f"a key is repeated in {','.join(parts)}", option="by")
    return tuple(cast("list[GroupKey]", parts))


@lru_cache(maxsize=4096)
def period_of(day: str, unit: str) -> str:
    """The day, ISO week or month key of a ``YYYY-MM-DD`` day."""
    if unit == "day":
        return day
    if unit == "month":
        return day[:7]
    year, week, _ = date.fromisoformat(day).isocalendar()
    return f"{year:04d}-W{week:02d}"


def share_text(share: Fraction | None) -> str:
    """A share (a ratio: 1 is 100%) as a decimal rounded half-even to 4 places ("0.8125",
    "1.2500"); "" for none. Every ratio klingcost prints in CSV or JSON uses it."""
    return "" if share is None else fixed(share, 4)


def percent_text(share: Fraction) -> str:
    """A share as a percentage with 2 places, rounded half-even: the 4-place share of
    :func:`share_text`, times 100 (``Fraction(2, 3)`` -> ``"66.67%"``)."""
    return f"{fixed(share * 100, 2)}%"


#: A plain number as a spreadsheet reads one; such a cell is never changed by csv_cell.
_UNSIGNED = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_NUMBER = re.compile(rf"[+-]?{_UNSIGNED}")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(value: Any) -> Any:
    """``value`` as safe to open in a spreadsheet: text that starts with ``=``, ``+``, ``-``,
    ``@``, a tab or a line break gets a ``'`` in front, unless it is a plain number
    (``-1``, ``2.5``); anything else (numbers, None) is returned as it is.

    Line breaks inside text become ``\n``: ``csv.writer`` quotes a cell holding ``\n`` (the
    line end) but not one holding a lone ``\r``, which a reader would take for a new row."""
    if not isinstance(value, str):
        return value
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    if value.startswith(_FORMULA_STARTS) and _NUMBER.fullmatch(value) is None:
        return "'" + value
    return value


@dataclass(frozen=True, slots=True)
class BudgetColumns:
    """A team's budget in its current period, as a report shows it."""

    limit_minor: int
    used_minor: int
    exponent: int
    unit: str
    period_key: str

    @classmethod
    def of(cls, status: BudgetStatus) -> BudgetColumns:
        b = status.budget
        unit = f"units ({b.pack})" if b.unit == UNITS else b.unit
        return cls(status.limit, status.used, b.exponent, unit, status.window.key)

    @property
    def share(self) -> Fraction | None:
        if self.limit_minor == 0:
            return None
        return Fraction(self.used_minor, self.limit_minor)


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One group (or a currency's total) of a spending report. Amounts in minor units."""

    kind: Literal["group", "total"]
    currency: str
    team: str | None = None
    endpoint: str | None = None
    model: str | None = None
    mode: str | None = None
    pack: str | None = None
    period: str | None = None
    settled: int = 0
    open: int = 0
    voided: int = 0
    settled_estimate_minor: int = 0
    charged_minor: int = 0
    held_minor: int = 0
    budget: BudgetColumns | None = None

    @property
    def tasks(self) -> int:
        return self.settled + self.open

    @property
    def estimated_minor(self) -> int:
        return self.settled_estimate_minor + self.held_minor

    @property
    def variance_minor(self) -> int:
        return self.charged_minor - self.settled_estimate_minor

    @property
    def exponent(self) -> int:
        return exponent_of(self.currency)

    def amount(self, minor: int) -> Fraction:
        return Fraction(minor, 10**self.exponent)

    @property
    def estimated(self) -> Fraction:
        return self.amount(self.estimated_minor)

    @property
    def charged(self) -> Fraction:
        return self.amount(self.charged_minor)

    @property
    def held(self) -> Fraction:
        return self.amount(self.held_minor)

    @property
    def variance(self) -> Fraction:
        return self.amount(self.variance_minor)

    def to_dict(self) -> dict[str, str | int | None]:
        """The row under :data:`COLUMNS`: ints for counts, decimal strings for amounts."""
        e = self.exponent
        b = self.budget
        return {
            "kind": self.kind,
            "team": self.team,
            "endpoint": self.endpoint,
            "model": self.model,
            "mode": self.mode,
            "pack": self.pack,
            "period": self.period,
            "currency": self.currency,
            "tasks": self.tasks,
            "settled": self.settled,
            "open": self.open,
            "voided": self.voided,
            "estimated": format_minor(self.estimated_minor, e),
            "charged": format_minor(self.charged_minor, e),
            "held": format_minor(self.held_minor, e),
            "variance": format_minor(self.variance_minor, e),
            "budget_limit": None if b is None else format_minor(b.limit_minor, b.exponent),
            "budget_used": None if b is None else format_minor(b.used_minor, b.exponent),
            "budget_share": None if b is None else (share_text(b.share) or None),
            "budget_unit": None if b is None else b.unit,
            "budget_period": None if b is None else b.period_key,
        }


@dataclass(frozen=True, slots=True)
class Report:
    """A grouped spending report: its rows, a total per currency, and how it was asked for."""

    by: tuple[GroupKey, ...]
    since: date | None
    until: date | None
    team: str | None
    rows: tuple[ReportRow, ...]
    totals: tuple[ReportRow, ...]
    columns: tuple[str, ...] = field(default=COLUMNS)
    #: Refused submissions in the window: (team, reason, count), by team and reason.
    refusals: tuple[tuple[str, str, int], ...] = ()
    #: Each budget's burn rate and run-out day now (the report's team, or every budget).
    forecasts: tuple[BudgetForecast, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": list(self.by),
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
            "team": self.team,
            "days": "UTC days of reservation; since and until inclusive",
            "budget_basis": "the budget's current period",
            "columns": list(self.columns),
            "rows": [row.to_dict() for row in self.rows],
            "totals": [row.to_dict() for row in self.totals],
            "refusals": [
                {"team": team, "reason": reason, "count": count}
                for team, reason, count in self.refusals
            ],
            "forecasts": {f.team: {**f.forecast.to_dict(), "unit": f.unit} for f in self.forecasts},
        }


@dataclass(frozen=True, slots=True)
class BudgetForecast:
    """A budget's forecast as a report shows it (:mod:`klingcost.forecast`)."""

    team: str
    unit: str
    forecast: Forecast

    def cells(self) -> list[str]:
        """budget, burn rate a day, runs out, method: for the table and Markdown."""
        f = self.forecast
        out = "-" if f.runs_out_on is None else f.runs_out_on.isoformat()
        if f.runs_out_early:
            out += f" (before {f.period_ends_on})"
        return [self.team, f"{group_digits(f.rate_text)} {self.unit}", out, f.method]


def budget_forecasts(ledger: Ledger, team: str | None = None) -> tuple[BudgetForecast, ...]:
    """The forecast of ``team``'s budget, or of every budget, by name."""
    statuses = [ledger.budget_status(team)] if team is not None else ledger.budgets()
    return tuple(
        BudgetForecast(s.team, BudgetColumns.of(s).unit, ledger.forecast(s.team)) for s in statuses
    )


_FORECAST_HEADERS = ["budget", "burn rate/day", "runs out", "method"]


# --- reading the ledger -------------------------------------------------------------------

#: Sums read per group: settled, open, voided, settled estimate, charged, held (minor units of
#: the currency), charged units, held units (milli-units of the pack).
_CLOSED_SUMS = (
    "SUM(n_settled), 0, SUM(n_voided), SUM(settled_est_minor), SUM(charged_minor), 0,"
    " SUM(charged_units), 0"
)
_OPEN_SUMS = "0, COUNT(*), 0, 0, 0, SUM(est_cost_minor), 0, SUM(est_units_milli)"
_OPEN_COLUMNS = {
    "day": "{day}",
    "team": "team",
    "endpoint": "COALESCE(endpoint, '')",
    "model": "COALESCE(model, '')",
    "mode": "COALESCE(mode, '')",
    "pack": "pack",
    "currency": "currency",
}


def _window_sql(
    day_column: str, since: date | None, until: date | None, team: str | None
) -> tuple[str, list[str]]:
    clauses, params = [], []
    if since is not None:
        clauses.append(f"{day_column} >= ?")
        params.append(since.isoformat())
    if until is not None:
        clauses.append(f"{day_column} <= ?")
        params.append(until.isoformat())
    if team is not None:
        clauses.append("team = ?")
        params.append(team)
    return "".join(f" AND {c}" for c in clauses), params


def grouped_sums(
    ledger: Ledger,
    columns: Sequence[str],
    *,
    since: date | None = None,
    until: date | None = None,
    team: str | None = None,
) -> dict[tuple[str, ...], Sequence[int]]:
    """Sums per group of ``columns`` (any of day, month, team, endpoint, model, mode, pack,
    currency), grouped by SQLite: from the rollups for closed holds, and from the open holds
    (few) through their index. Values: settled, open, voided, settled estimate, charged, held,
    charged units, held units."""
    day = ledger.backend.day("reserved_at")  # the UTC day, in the ledger's SQL
    closed_cols = [("substr(day, 1, 7)" if c == "month" else c) for c in columns]
    open_cols = [
        (f"substr({day}, 1, 7)" if c == "month" else _OPEN_COLUMNS[c].format(day=day))
        for c in columns
    ]
    group = ", ".join(str(i + 1) for i in range(len(columns)))
    group_by = f" GROUP BY {group}" if columns else ""
    where, params = _window_sql("day", since, until, team)
    closed_sql = (
        f"SELECT {', '.join([*closed_cols, _CLOSED_SUMS])} FROM rollup_daily"
        f" WHERE TRUE{where}{group_by}"
    )
    open_where, open_params = _window_sql(day, since, until, team)
    open_sql = (
        f"SELECT {', '.join([*open_cols, _OPEN_SUMS])} FROM holds"
        f" WHERE state IN ('held', 'submitted', 'unknown'){open_where}{group_by}"
    )
    width = len(columns)
    merged: dict[tuple[str, ...], Sequence[int]] = {}
    with ledger.reading():
        for row in ledger.execute(closed_sql, params):
            if row[width] is not None:  # a group with no rows at all (no columns) is skipped
                merged[tuple(row[:width])] = row[width:]
        for row in ledger.execute(open_sql, open_params):
            if row[width + 1]:
                sums = list(merged.get(tuple(row[:width]), (0,) * 8))
                for i in (1, 5, 7):
                    sums[i] += row[width + i] or 0
                merged[tuple(row[:width])] = sums
    return merged


def daily_sums(
    ledger: Ledger,
    *,
    since: date | None = None,
    until: date | None = None,
    team: str | None = None,
) -> Iterator[tuple[tuple[str, ...], tuple[int, ...]]]:
    """Per (day, team, endpoint, model, mode, pack, currency), in order: the sums of
    :func:`grouped_sums`."""
    columns = ("day", "team", "endpoint", "model", "mode", "pack", "currency")
    merged = grouped_sums(ledger, columns, since=since, until=until, team=team)
    for key in sorted(merged):
        yield key, tuple(merged[key])


def budgets_below(ledger: Ledger, team: str) -> list[str]:
    """The budgets directly below ``team``'s (its children, by name). ReportError when the
    ledger has no budget ``team``: the message names it and a few of the teams it knows."""
    with ledger.reading():
        rows = ledger.execute("SELECT name, parent FROM budgets ORDER BY name").fetchall()
    names = [name for name, _ in rows]
    if team not in names:
        near = difflib.get_close_matches(team, names, n=3)
        shown = [*near, *(name for name in names if name not in near)][:8]
        more = f" and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
        known = f"known: {', '.join(shown)}{more}" if names else "the ledger has no budgets yet"
        raise ReportError(f"no team {team!r} in the ledger ({known})", option="team", value=team)
    return [name for name, parent in rows if parent == team]


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
    found = grouped_sums(ledger, columns, since=since, until=until, team=team)
    groups: dict[tuple[str | None, ...], Sequence[int]] = {}
    if time_key == "week":  # fold days into ISO weeks
        for key, sums in found.items():
            parts = list(pick((*key, None)))
            parts[5] = period_of(parts[5], "week")
            week = tuple(parts)
            old = groups.get(week)
            groups[week] = sums if old is None else [a + b for a, b in zip(old, sums, strict=True)]
    else:
        groups = {pick((*key, None)): sums for key, sums in found.items()}
    totals: dict[str, list[int]] = {}
    for gkey, group_sums in groups.items():
        total = totals.setdefault(gkey[6] or "", [0] * 8)
        for i in range(6):
            total[i] += group_sums[i]
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


def refusals_text(report: Report) -> str:
    """One line for the table: ``refused: 3 (acme: budget 2, concurrency 1)``; '' if none."""
    if not report.refusals:
        return ""
    teams: dict[str, list[str]] = {}
    for team, reason, count in report.refusals:
        teams.setdefault(team, []).append(f"{reason} {count}")
    total = sum(count for _, _, count in report.refusals)
    parts = "; ".join(f"{team}: {', '.join(reasons)}" for team, reasons in teams.items())
    return f"refused: {total} ({parts}); `klingcost holds --refused` lists them"


def _budgets(ledger: Ledger) -> dict[str, BudgetColumns]:
    return {status.team: BudgetColumns.of(status) for status in ledger.budgets()}


def _row(
    kind: Literal["group", "total"],
    gkey: tuple[str | None, ...],
    s: Sequence[int],
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
        s[0],
        s[1],
        s[2],
        s[3],
        s[4],
        s[5],
        budgets.get(team) if team is not None else None,
    )


# --- writing a grouped report -------------------------------------------------------------


def _cells(report: Report) -> Iterator[dict[str, str | int | None]]:
    for row in (*report.rows, *report.totals):
        yield row.to_dict()


def write_csv(report: Report, out: IO[str]) -> None:
    """The report as CSV under :data:`COLUMNS`, totals last (``kind`` = ``total``); text a
    spreadsheet would run as a formula is neutralised (:func:`csv_cell`)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(report.columns)
    for cells in _cells(report):
        writer.writerow(["" if cells[c] is None else csv_cell(cells[c]) for c in report.columns])


def write_json(report: Report, out: IO[str]) -> None:
    json.dump(report.to_dict(), out, indent=2, ensure_ascii=False)
    out.write("\n")


#: Columns a person reads in a table (the CSV and JSON carry them all).
_SHOWN = ("tasks", "settled", "open", "estimated", "charged", "held", "variance")
_BUDGET_SHOWN = ("budget_used", "budget_limit", "budget_share")


def table_columns(report: Report) -> list[str]:
    keys: list[str] = [k for k in DIMENSIONS if k in report.by]
    if any(k in TIME_KEYS for k in report.by):
        keys.append("period")
    if len({row.currency for row in report.totals}) > 1:
        keys.append("currency")
    shown = [*keys, *_SHOWN]
    if "team" in report.by:
        shown += _BUDGET_SHOWN
    return shown


_AMOUNTS = frozenset({"estimated", "charged", "held", "variance", "budget_used", "budget_limit"})


def group_digits(text: str) -> str:
    """``"-1245000.5"`` -> ``"-1,245,000.5"``: for people; CSV and JSON keep plain decimals."""
    sign = "-" if text.startswith("-") else ""
    whole, dot, fraction = text.removeprefix("-").partition(".")
    if not whole.isdigit():
        return text
    groups: list[str] = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    return sign + ",".join([whole, *groups]) + dot + fraction


def text_cells(report: Report, columns: Sequence[str]) -> list[list[str]]:
    """The report's rows as display strings (digits grouped, shares as percentages)."""
    lines = []
    for cells in _cells(report):
        line = [
            ""
            if cells[c] is None
            else group_digits(str(cells[c]))
            if c in _AMOUNTS
            else str(cells[c])
            for c in columns
        ]
        if cells["kind"] == "total":
            line[0] = f"total ({cells['currency']})"
        if "budget_share" in columns and cells["budget_share"] is not None:
            i = list(columns).index("budget_share")
            line[i] = _percent(str(cells["budget_share"]))
        lines.append(line)
    return lines


def _percent(share: str) -> str:
    scaled = Fraction(share) * 100
    whole = round(scaled * 10)
    return f"{whole // 10}.{whole % 10}%"


_NUMERIC = {"tasks", "settled", "open", "voided", *_SHOWN, *_BUDGET_SHOWN}


def render_table(report: Report) -> str:
    """An aligned text table for a terminal, then each budget's forecast."""
    columns = table_columns(report)
    lines = text_cells(report, columns)
    refused = refusals_text(report)
    if not report.rows:
        return "no spending in this window" + (f"\n{refused}" if refused else "")
    headers = [c.replace("budget_", "budget ") for c in columns]
    body = [headers, *lines]
    widths = [max(len(r[i]) for r in body) for i in range(len(columns))]
    out = []
    for n, line in enumerate(body):
        cells = [
            cell.rjust(widths[i]) if columns[i] in _NUMERIC else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    if refused:
        out.append(refused)
    return "\n".join(out) + _forecast_table(report)


def _forecast_table(report: Report) -> str:
    if not report.forecasts:
        return ""
    body = [_FORECAST_HEADERS, *(f.cells() for f in report.forecasts)]
    widths = [max(len(row[i]) for row in body) for i in range(3)]
    lines = [
        "  ".join(
            [
                *(row[i].rjust(w) if i == 1 else row[i].ljust(w) for i, w in enumerate(widths)),
                row[3],
            ]
        )
        for row in body
    ]
    return "\n\nforecast (at today's burn rate)\n" + "\n".join(lines)


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def write_markdown(report: Report, out: IO[str]) -> None:
    """A GitHub-flavoured Markdown table (amounts right-aligned)."""
    columns = table_columns(report)
    out.write("| " + " | ".join(columns) + " |\n")
    out.write("|" + "|".join("---:" if c in _NUMERIC else "---" for c in columns) + "|\n")
    for line in text_cells(report, columns):
        out.write("| " + " | ".join(_md_escape(cell) for cell in line) + " |\n")
    if report.forecasts:
        out.write("\n**Forecast** (at today's burn rate)\n\n")
        out.write("| " + " | ".join(_FORECAST_HEADERS) + " |\n|---|---:|---|---|\n")
        for forecast in report.forecasts:
            out.write("| " + " | ".join(_md_escape(c) for c in forecast.cells()) + " |\n")


# --- one row per task ---------------------------------------------------------------------


def _sql_decimal(column: str, exponent: int, dialect: str = "sqlite") -> str:
    """SQL that prints an integer of minor units as :func:`format_minor` does."""
    if exponent == 0:
        return column if dialect == "sqlite" else f"{column}::text"
    scale = 10**exponent
    if dialect == "sqlite":
        whole = f"{column} / {scale}"
        fraction = f"printf('%0{exponent}d', abs({column}) % {scale})"
    else:  # PostgreSQL: one type per CASE (text), and lpad for printf
        whole = f"({column} / {scale})::text"
        fraction = f"lpad((abs({column}) % {scale})::text, {exponent}, '0')"
    return (
        f"CASE WHEN {column} IS NULL THEN NULL WHEN {column} % {scale} = 0 THEN {whole}"
        f" ELSE (CASE WHEN {column} < 0 THEN '-' ELSE '' END) || (abs({column}) / {scale}) || '.'"
        f" || rtrim({fraction}, '0') END"
    )


def _sql_money(column: str, dialect: str = "sqlite") -> str:
    cases = " ".join(
        f"WHEN '{name}' THEN {_sql_decimal(column, e, dialect)}"
        for name, e in sorted(CURRENCY_EXPONENTS.items())
        if e
    )
    otherwise = column if dialect == "sqlite" else f"{column}::text"
    return f"CASE h.currency {cases} ELSE {otherwise} END" if cases else otherwise


_OPEN_CASE = "h.state IN ('held', 'submitted', 'unknown')"


def _task_sql(dialect: str = "sqlite") -> str:
    return (
        "SELECT h.id, h.task_id, h.team, h.state, h.reserved_at, h.updated_at, h.endpoint,"
        " h.model, h.mode, h.duration, h.sound, h.video_reference, h.reference_image, h.n,"
        " h.pack, h.currency,"
        f" {_sql_money('h.est_cost_minor', dialect)},"
        f" {_sql_money('h.cost_minor', dialect)},"
        f" {_sql_money(f'(CASE WHEN {_OPEN_CASE} THEN h.est_cost_minor ELSE 0 END)', dialect)},"
        f" {_sql_money('h.variance_cost_minor', dialect)},"
        f" {_sql_decimal('h.est_units_milli', UNIT_EXPONENT, dialect)},"
        f" {_sql_decimal('h.units_milli', UNIT_EXPONENT, dialect)},"
        f" {_sql_decimal('h.variance_units_milli', UNIT_EXPONENT, dialect)},"
        " h.raw_deduction, h.deduction_flag, h.task_status, h.reason FROM holds AS h"
    )


_TASK_SQL = _task_sql()
_TASK_SQLS = {"sqlite": _TASK_SQL, "postgres": _task_sql("postgres")}


def _task_query(
    since: date | None,
    until: date | None,
    team: str | None,
    state: str | None,
    dialect: str = "sqlite",
) -> tuple[str, list[str]]:
    clauses, params = [], []
    if since is not None:
        clauses.append("h.reserved_at >= ?")
        params.append(since.isoformat())
    if until is not None:
        clauses.append("h.reserved_at < ?")
        params.append((until + timedelta(days=1)).isoformat())
    if team is not None:
        clauses.append("h.team = ?")
        params.append(team)
    if state == "open":
        clauses.append(_OPEN_CASE)
    elif state is not None:
        clauses.append("h.state = ?")
        params.append(state)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return f"{_TASK_SQLS[dialect]}{where} ORDER BY h.id", params


def task_rows(
    ledger: Ledger,
    *,
    since: date | None = None,
    until: date | None = None,
    team: str | None = None,
    state: str | None = None,
) -> Iterator[tuple[Any, ...]]:
    """One tuple per hold, in :data:`TASK_COLUMNS` order, amounts as decimal strings; streamed
    from a cursor (memory stays flat however many holds there are)."""
    sql, params = _task_query(since, until, team, state, ledger.dialect)
    # A second, read-only connection in one snapshot: a long export never holds the ledger's
    # lock, nor blocks its writers.
    with ledger.backend.snapshot() as conn:
        yield from conn.execute(sql, params)


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task of the ledger as an export row (see the module docstring for the columns)."""

    hold_id: int
    task_id: str | None
    team: str
    state: str
    reserved_at: str
    updated_at: str
    endpoint: str | None
    model: str | None
    mode: str | None
    duration: str | None
    sound: int | None
    video_reference: int | None
    reference_image: int | None
    n: int | None
    pack: str
    currency: str
    estimated: str
    charged: str | None
    held: str
    variance: str | None
    estimated_units: str
    charged_units: str | None
    variance_units: str | None
    raw_deduction: str | None
    deduction_flag: str | None
    task_status: str | None
    reason: str | None


def iter_tasks(
    ledger: Ledger,
    *,
    since: date | None = None,
    until: date | None = None,
    team: str | None = None,
    state: str | None = None,
) -> Iterator[TaskRow]:
    """The ledger's tasks as :class:`TaskRow` objects, streamed."""
    for row in task_rows(ledger, since=since, until=until, team=team, state=state):
        cells: list[Any] = list(_json_cells(row))
        yield TaskRow(*cells)


#: Columns that are text in TaskRow though SQLite may hand back an int (amounts of credits).
_TEXT_INDEXES = frozenset(
    TASK_COLUMNS.index(c)
    for c in (
        "duration",
        "estimated",
        "charged",
        "held",
        "variance",
        "estimated_units",
        "charged_units",
        "variance_units",
    )
)


def latest_tasks(ledger: Ledger, limit: int = 20) -> list[TaskRow]:
    """The ``limit`` newest tasks, newest first: read backwards along the holds' primary key,
    so it costs the same whatever the ledger holds (the live page reads it every few
    seconds)."""
    sql = f"{_TASK_SQLS[ledger.dialect]} ORDER BY h.id DESC LIMIT {int(limit)}"
    with ledger.reading():
        rows = ledger.execute(sql).fetchall()
    return [TaskRow(*_json_cells(row)) for row in rows]


def _task_csv_sql() -> str:
    """One CSV line per hold, built by SQLite's printf: one string object per row."""
    select = _TASK_SQL.removeprefix("SELECT ").split(" FROM holds AS h")[0]
    expressions = _split_columns(select)
    assert len(expressions) == len(TASK_COLUMNS)
    template = ",".join(["%s"] * len(expressions))  # printf prints NULL as an empty string
    return f"SELECT printf('{template}', {', '.join(expressions)}) FROM holds AS h"


def _split_columns(select: str) -> list[str]:
    """Split a SELECT list on its top-level commas."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for char in select:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == "," and depth == 0 and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


_COMMAS = len(TASK_COLUMNS) - 1
#: In a line SQLite built (commas only between cells), a cell csv_cell would change. Plain
#: characters are tested first: ``"=" in text`` is a memchr, far cheaper than a regex.
_SIGNED_TEXT = re.compile(rf",[-+](?!{_UNSIGNED}(?:,|$))", re.MULTILINE)


def _formula_in(text: str) -> bool:
    return "=" in text or "@" in text or "\t" in text or _SIGNED_TEXT.search(text) is not None


def export_tasks_csv(
    ledger: Ledger,
    out: IO[str],
    *,
    since: date | None = None,
    until: date | None = None,
    team: str | None = None,
    state: str | None = None,
) -> int:
    """Write one CSV line per task under :data:`TASK_COLUMNS` (``\\n`` line ends); the count.

    SQLite builds each line, so rows reach the file without a Python object per field: faster
    than a plain cursor -> ``csv.writer`` loop, in flat memory. A batch is checked as a whole
    (its commas, quotes and line breaks counted, and cells a spreadsheet would run as a
    formula looked for); a line that holds one of them (a ``reason`` with a comma, say) is
    written again by ``csv.writer`` through :func:`csv_cell`, quoted as it quotes.
    """
    out.write(",".join(TASK_COLUMNS) + "\n")
    count = 0
    writer = csv.writer(out, lineterminator="\n")
    if ledger.dialect != "sqlite":  # no printf: a plain cursor -> csv.writer loop
        for row in task_rows(ledger, since=since, until=until, team=team, state=state):
            writer.writerow([csv_cell(cell) for cell in row])
            count += 1
        return count
    sql, params = _task_query(since, until, team, state)
    suffix = sql.removeprefix(_TASK_SQL)
    with ledger.backend.snapshot() as conn:
        cursor = conn.execute(_TASK_CSV_SQL + suffix, params)
        while batch := cursor.fetchmany(5000):
            text = "\n".join([line for (line,) in batch])
            if (
                text.count(",") == _COMMAS * len(batch)
                and text.count("\n") == len(batch) - 1
                and '"' not in text
                and "\r" not in text
                and not _formula_in(text)
            ):
                out.write(text)
                out.write("\n")
            else:
                for (line,) in batch:
                    if (
                        line.count(",") == _COMMAS
                        and not any(c in line for c in '"\r\n')
                        and not _formula_in(line)
                    ):
                        out.write(line)
                        out.write("\n")
                    else:
                        hold_id = int(line.split(",", 1)[0])
                        one = conn.execute(f"{_TASK_SQL} WHERE h.id = ?", (hold_id,)).fetchone()
                        writer.writerow([csv_cell(cell) for cell in one])
            count += len(batch)
    return count


def export_tasks_json(rows: Iterable[tuple[Any, ...]], out: IO[str], *, lines: bool = False) -> int:
    """Write ``rows`` as a JSON array of objects (or JSON Lines), one task at a time."""
    count = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    if not lines:
        out.write("[")
    for row in rows:
        text = dumps(dict(zip(TASK_COLUMNS, _json_cells(row), strict=True)))
        if lines:
            out.write(text + "\n")
        else:
            out.write(("\n" if count == 0 else ",\n") + text)
        count += 1
    if not lines:
        out.write("\n]\n" if count else "]\n")
    return count


def _json_cells(row: tuple[Any, ...]) -> Iterator[Any]:
    for i, value in enumerate(row):
        yield str(value) if isinstance(value, int) and i in _TEXT_INDEXES else value


_TASK_CSV_SQL = _task_csv_sql()

__all__ = [
    "COLUMNS",
    "GROUP_KEYS",
    "TASK_COLUMNS",
    "BudgetColumns",
    "BudgetForecast",
    "Report",
    "ReportError",
    "ReportRow",
    "TaskRow",
    "budget_forecasts",
    "budgets_below",
    "csv_cell",
    "daily_sums",
    "export_tasks_csv",
    "export_tasks_json",
    "group_digits",
    "grouped_sums",
    "iter_tasks",
    "latest_tasks",
    "parse_group_by",
    "percent_text",
    "period_of",
    "render_table",
    "share_text",
    "spending_report",
    "task_rows",
    "text_cells",
    "write_csv",
    "write_json",
    "write_markdown",
]
