"""Calendar budget periods: which window an instant falls in. Pure: no I/O, no clock.

A period is one of ``none`` (a single window that never ends), ``day``, ``week`` (ISO weeks,
starting on Monday) or ``month``, counted in the calendar of an IANA time zone (UTC by default).
A window starts *exactly* at local midnight and ends exactly where the next one starts: an
instant equal to the boundary belongs to the new window. Each window has a stable key that the
ledger stores beside every entry: ``all``, ``2026-11-25``, ``2026-W48``, ``2026-11``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Period = Literal["none", "day", "week", "month"]
PERIODS: Final[tuple[str, ...]] = get_args(Period)


@dataclass(frozen=True, slots=True)
class Window:
    """One period window. ``start`` and ``end`` are aware UTC datetimes (None for ``none``)."""

    period: Period
    key: str
    start: datetime | None
    end: datetime | None
    tz: str

    def contains(self, instant: datetime) -> bool:
        if self.start is None or self.end is None:  # pragma: no mutate (both None, or neither)
            return True
        return self.start <= instant < self.end

    def describe(self) -> str:
        """``2026-11 [2026-11-01T00:00:00+00:00 .. 2026-12-01T00:00:00+00:00)``."""
        if self.start is None or self.end is None:  # pragma: no mutate (both None, or neither)
            return "all (no period)"
        return f"{self.key} [{self.start.isoformat()} .. {self.end.isoformat()}) {self.tz}"


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``; ValueError when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as 'UTC' or 'Europe/Paris')"
        ) from None


def check_period(period: str) -> Period:
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r} (allowed: {', '.join(PERIODS)})")
    return period  # type: ignore[return-value]


def _first_day(period: Period, day: date) -> date:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)  # month


def _next_first_day(period: Period, first: date) -> date:
    if period == "day":
        return first + timedelta(days=1)
    if period == "week":
        return first + timedelta(days=7)
    if first.month == 12:
        return date(first.year + 1, 1, 1)
    return date(first.year, first.month + 1, 1)


def _key(period: Period, first: date) -> str:
    if period == "day":
        return first.isoformat()
    if period == "week":
        year, week, _ = first.isocalendar()
        return f"{year:04d}-W{week:02d}"
    return f"{first.year:04d}-{first.month:02d}"


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    # Where midnight does not exist (a DST jump at 00:00), zoneinfo maps it past the gap.
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def period_key(period: Period, instant: datetime, tz: str = "UTC") -> str:
    """The key of the window of ``period`` that contains ``instant`` (fast: no window bounds)."""
    if period == "none":
        return "all"
    local = instant.astimezone(zone(tz)).date()
    return _key(period, _first_day(period, local))


def window_for(period: Period, instant: datetime, tz: str = "UTC") -> Window:
    """The window of ``period`` in time zone ``tz`` that contains the aware ``instant``."""
    check_period(period)
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"a naive datetime has no time zone (given {instant!r})")
    if period == "none":
        return Window(period, "all", None, None, tz)
    tzinfo = zone(tz)
    first = _first_day(period, instant.astimezone(tzinfo).date())
    start = _local_midnight(first, tzinfo)
    end = _local_midnight(_next_first_day(period, first), tzinfo)
    return Window(period, _key(period, first), start, end, tz)
