"""The spending report's model: what a report is made of (rows, totals, budget columns,
forecasts), its columns and group keys, with no I/O: :mod:`klingcost.reports.spending` fills
it from a ledger, :mod:`klingcost.reports.render` writes it out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from functools import lru_cache
from typing import Any, Final, Literal, cast

from klingcost.budgets import CURRENCY_EXPONENTS, UNITS, BudgetStatus
from klingcost.display import group_digits, share_text
from klingcost.errors import ReportError
from klingcost.forecast import Forecast
from klingcost.money import format_minor

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


__all__ = [
    "COLUMNS",
    "DIMENSIONS",
    "GROUP_KEYS",
    "TIME_KEYS",
    "BudgetColumns",
    "BudgetForecast",
    "GroupKey",
    "Report",
    "ReportRow",
    "exponent_of",
    "parse_group_by",
    "period_of",
]
