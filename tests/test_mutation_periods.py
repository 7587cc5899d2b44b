"""klingcost.periods: a window holds its start, not its end, and nothing outside it; what
mutation testing showed the other tests never asked."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, tzinfo

import pytest

from klingcost.periods import period_key, window_for

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)
TICK = timedelta(microseconds=1)


def test_a_window_contains_its_start_and_not_its_end() -> None:
    window = window_for("month", datetime(2026, 11, 15, tzinfo=UTC))
    assert window.contains(START)
    assert window.contains(END - TICK)
    assert not window.contains(END)  # the boundary belongs to the next window
    assert not window.contains(START - TICK)
    assert not window.contains(datetime(2027, 6, 1, tzinfo=UTC))


def test_the_window_of_no_period_contains_every_instant() -> None:
    window = window_for("none", START)
    assert window.contains(datetime(1970, 1, 1, tzinfo=UTC))
    assert window.contains(datetime(9999, 12, 31, tzinfo=UTC))


def test_a_window_describes_its_bounds_and_zone() -> None:
    window = window_for("month", datetime(2026, 11, 15, tzinfo=UTC), "Europe/Paris")
    assert window.describe() == (
        "2026-11 [2026-10-31T23:00:00+00:00 .. 2026-11-30T23:00:00+00:00) Europe/Paris"
    )
    assert window_for("none", START).describe() == "all (no period)"


@pytest.mark.parametrize("period", ["none", "day", "week", "month"])
def test_period_key_is_the_key_of_the_window(period: str) -> None:
    instant = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)
    expected = window_for(period, instant, "Asia/Tokyo").key  # type: ignore[arg-type]
    assert period_key(period, instant, "Asia/Tokyo") == expected  # type: ignore[arg-type]
    assert period_key("none", instant) == "all"


class _NoOffset(tzinfo):
    """A time zone that does not know its offset: a datetime in it is naive."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


def test_a_datetime_whose_zone_has_no_offset_is_naive() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        window_for("day", datetime(2026, 11, 25, tzinfo=_NoOffset()))


@pytest.mark.parametrize("period", ["none", "day", "month"])
def test_a_window_says_its_period_and_zone(period: str) -> None:
    window = window_for(period, START, "Asia/Tokyo")  # type: ignore[arg-type]
    assert (window.period, window.tz) == (period, "Asia/Tokyo")


def test_window_bounds_are_utc_whatever_the_machine_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        window = window_for("day", datetime(2026, 11, 25, 12, tzinfo=UTC), "Europe/Paris")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert window.start is not None
    assert window.start.utcoffset() == timedelta(0)
    assert window.describe() == (
        "2026-11-25 [2026-11-24T23:00:00+00:00 .. 2026-11-25T23:00:00+00:00) Europe/Paris"
    )
