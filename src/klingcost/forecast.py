"""When, at this rate, a budget runs out: a burn rate and a run-out date. Pure, and exact.

:func:`project` is a pure function of integers and dates::

    f = project({date(2026, 12, 1): 4000, date(2026, 12, 2): 6000}, today=date(2026, 12, 2),
                available=30000, first_day=date(2026, 11, 1), period_start=date(2026, 12, 1),
                period_end=date(2026, 12, 31))
    f.rate_per_day      # Fraction, minor units a day
    f.runs_out_on       # date(2026, 12, 8); None when nothing is being spent
    f.method            # what was fitted, in words

The rate is the least-squares slope of *cumulative* charges against days, through the
starting point (0, 0): a constant spend of d a day gives exactly d, and any series gives a rate
between its smallest and its largest day (a weighted mean of the slopes between any two
points), so one expensive morning moves it less than a mean of the last few days would.
Arithmetic is in :class:`~fractions.Fraction`: no float anywhere.

Which days: the last :data:`LOOKBACK_DAYS` UTC days up to now (today as the part of it gone, at
least :data:`MIN_TODAY`),
none before the budget was created, and none before the current period began, unless the
period is younger than :data:`MIN_DAYS`, in which case the days before it (the last periods)
say more about the rate than one or two days of this one. Only settled charges count: open
holds are excluded (what they will cost is not known yet); they still reduce what is
``available``, which is what runs out.

``runs_out_on`` is ``today`` plus the whole days the room left lasts at the rate:
``today + floor(available / rate)``; today when nothing is left; None when nothing is being
spent, or the room lasts more than :data:`HORIZON_DAYS` (about ten years). A period's warning
(:attr:`Forecast.runs_out_early`) is when that day falls on or before the period's last day.

:func:`forecast_for` reads a budget from a ledger (:meth:`klingcost.ledger.Ledger.forecast`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Final

from klingcost.money import format_amount, to_minor

if TYPE_CHECKING:
    from klingcost.ledger import Ledger

#: The most days a rate is fitted over.
LOOKBACK_DAYS: Final = 14
#: A period younger than this many days is fitted with the days before it as well.
MIN_DAYS: Final = 3
#: The least part of a day today counts as (six hours).
MIN_TODAY: Final = Fraction(1, 4)
#: Room that lasts longer than this (about ten years) does not run out, as far as we say.
HORIZON_DAYS: Final = 3653


@dataclass(frozen=True, slots=True)
class Forecast:
    """A budget's burn rate and projected run-out day, with the method that gave them."""

    #: Minor units of the budget a day (exact).
    rate_per_day: Fraction
    #: The day the room left is used up at that rate; None when the rate is zero and room is
    #: left, or the room lasts past :data:`HORIZON_DAYS` (nothing runs out).
    runs_out_on: date | None
    #: What was fitted, in words (which days, from what).
    method: str
    #: The current period's last day (None for a budget without a period).
    period_ends_on: date | None = None
    #: How many days were fitted.
    days: int = 0
    #: The budget's minor unit, 10^-exponent: for showing the rate in major units.
    exponent: int = 0

    @property
    def runs_out_early(self) -> bool:
        """The budget runs out on or before the last day of its period."""
        return (
            self.runs_out_on is not None
            and self.period_ends_on is not None
            and self.runs_out_on <= self.period_ends_on
        )

    @property
    def rate_text(self) -> str:
        """The rate in major units a day, rounded up to the budget's minor unit ('1428.58')."""
        minor = to_minor(self.rate_per_day, 0)
        return format_amount(Fraction(minor, 10**self.exponent))

    def to_dict(self) -> dict[str, Any]:
        """``{rate_per_day, runs_out_on, method}``: what ``--json`` shows."""
        return {
            "rate_per_day": self.rate_text,
            "runs_out_on": None if self.runs_out_on is None else self.runs_out_on.isoformat(),
            "method": self.method,
        }

    def describe(self) -> str:
        """One line for a person: ``burn 1,200/day; runs out 2026-12-20 (before ...)``."""
        if self.runs_out_on is None:
            end = "nothing is being spent, so it does not run out"
        elif self.runs_out_early:
            end = f"runs out {self.runs_out_on} (before its period ends {self.period_ends_on})"
        else:
            end = f"runs out {self.runs_out_on}"
        return f"burn rate {self.rate_text}/day; {end}"


def slope(daily: list[int], last_share: Fraction = Fraction(1)) -> Fraction:
    """The least-squares slope of the cumulative sums of ``daily`` against 1..n, with (0, 0);
    the last day counts as ``last_share`` of a day (today, part gone). Exact; 0 for no days."""
    if not daily:
        return Fraction(0)
    xs = [Fraction(x) for x in range(len(daily))] + [len(daily) - 1 + last_share]
    ys = [0]
    for amount in daily:
        ys.append(ys[-1] + amount)
    n = len(ys)
    mean_x = Fraction(sum(xs), n)
    mean_y = Fraction(sum(ys), n)
    num = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    den = sum((x - mean_x) ** 2 for x in xs)
    return Fraction(num) / den if den else Fraction(0)


def project(
    daily: Mapping[date, int],
    *,
    today: date,
    available: int,
    first_day: date,
    period_start: date | None,
    period_end: date | None,
    exponent: int = 0,
    today_share: Fraction = Fraction(1),
    lookback: int = LOOKBACK_DAYS,
    min_days: int = MIN_DAYS,
) -> Forecast:
    """Project a budget's run-out day from its daily settled charges. Pure.

    ``daily`` maps a UTC day to what was charged that day (minor units; a missing day is 0).
    ``available`` is the room left in the current period (limit - posted - held, so open holds
    count as spent here). ``first_day`` is the first day that may count (the budget's
    creation); ``period_start`` and ``period_end`` the first and last day of the current
    period (None for a budget without a period). ``today_share`` is how much of today has
    gone (the ledger passes it exactly: today's charges so far are a part day's, not a whole
    one's); 1 counts today as a whole day.
    """
    if lookback < 1 or min_days < 1 or not 0 <= today_share <= 1:
        raise ValueError(
            f"lookback and min_days must be at least 1, today_share in [0, 1] "
            f"(given {lookback}, {min_days}, {today_share})"
        )
    first = max(first_day, today - timedelta(days=lookback - 1))
    note = ""
    if period_start is not None:
        age = (today - period_start).days + 1
        if age >= min_days:
            first = max(first, period_start)
        elif first < period_start:
            note = f", reaching before this period (it is {age} day{'s' * (age != 1)} old)"
    first = min(first, today)
    days = (today - first).days + 1
    series = [daily.get(first + timedelta(days=i), 0) for i in range(days)]
    # A first job minutes after midnight must not read as a day of such jobs every few
    # minutes: today counts as at least MIN_TODAY of a day.
    rate = slope(series, max(today_share, MIN_TODAY))
    lasts = None if rate == 0 else int(Fraction(max(available, 0)) / rate)
    if available <= 0:
        runs_out: date | None = today
    elif lasts is None or lasts > HORIZON_DAYS:
        runs_out = None
    else:
        runs_out = today + timedelta(days=lasts)
    method = (
        f"least-squares fit of cumulative settled charges over the last {days} "
        f"day{'s' * (days != 1)} ({first} to {today}, UTC){note}; open holds excluded"
    )
    return Forecast(rate, runs_out, method, period_end, days, exponent)


def last_day(end: datetime | None) -> date | None:
    """The last UTC day of a window that ends (exclusively) at ``end``."""
    return None if end is None else (end - timedelta(microseconds=1)).date()


def forecast_for(ledger: Ledger, team: str, *, now: datetime | None = None) -> Forecast:
    """``team``'s budget's forecast at ``now`` (default: the ledger's clock). Reads only.

    BudgetNotFound when the ledger has no budget ``team``."""
    return ledger.forecast(team, now=now)


__all__ = [
    "HORIZON_DAYS",
    "LOOKBACK_DAYS",
    "MIN_DAYS",
    "Forecast",
    "forecast_for",
    "last_day",
    "project",
    "slope",
]
