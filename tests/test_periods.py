from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klingcost.clock import FixedClock, ManualClock, SystemClock
from klingcost.periods import PERIODS, period_key, window_for


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "instant", "key", "start", "end"),
    [
        ("day", utc(2026, 11, 25, 13, 5), "2026-11-25", utc(2026, 11, 25), utc(2026, 11, 26)),
        ("week", utc(2026, 11, 25, 13, 5), "2026-W48", utc(2026, 11, 23), utc(2026, 11, 30)),
        ("month", utc(2026, 11, 25, 13, 5), "2026-11", utc(2026, 11, 1), utc(2026, 12, 1)),
        ("month", utc(2026, 12, 31, 23, 59), "2026-12", utc(2026, 12, 1), utc(2027, 1, 1)),
        # ISO weeks belong to the year of their Thursday.
        ("week", utc(2024, 12, 31), "2025-W01", utc(2024, 12, 30), utc(2025, 1, 6)),
        ("week", utc(2027, 1, 1), "2026-W53", utc(2026, 12, 28), utc(2027, 1, 4)),
    ],
)
def test_windows_in_utc(
    period: str, instant: datetime, key: str, start: datetime, end: datetime
) -> None:
    window = window_for(period, instant)  # type: ignore[arg-type]
    assert (window.key, window.start, window.end) == (key, start, end)
    assert period_key(period, instant) == key  # type: ignore[arg-type]


def test_none_is_one_window_forever() -> None:
    window = window_for("none", utc(2026, 1, 1))
    assert (window.key, window.start, window.end) == ("all", None, None)
    assert window.contains(utc(1999, 1, 1))
    assert window.describe() == "all (no period)"


@pytest.mark.parametrize("period", ["day", "week", "month"])
def test_boundary_belongs_to_the_new_window(period: str) -> None:
    boundary = utc(2026, 12, 1)  # a Tuesday: only the day and month start here
    first = window_for(period, boundary - timedelta(microseconds=1))  # type: ignore[arg-type]
    second = window_for(period, boundary)  # type: ignore[arg-type]
    if period == "week":
        assert first.key == second.key == "2026-W49"
    else:
        assert first.key != second.key
        assert first.end == second.start == boundary


def test_month_in_a_time_zone_starts_at_local_midnight() -> None:
    # 23:30 UTC on 31 October is already November in Paris (UTC+1).
    window = window_for("month", utc(2026, 10, 31, 23, 30), "Europe/Paris")
    assert window.key == "2026-11"
    assert window.start == utc(2026, 10, 31, 23)
    assert window.end == utc(2026, 11, 30, 23)
    assert window_for("month", utc(2026, 10, 31, 22, 59), "Europe/Paris").key == "2026-10"


def test_a_day_across_a_dst_change_is_23_hours() -> None:
    window = window_for("day", utc(2026, 3, 29, 12), "Europe/Paris")
    assert window.key == "2026-03-29"
    assert window.end is not None and window.start is not None
    assert window.end - window.start == timedelta(hours=23)


def test_tokyo_day_turns_at_15_utc() -> None:
    assert period_key("day", utc(2026, 11, 25, 14, 59), "Asia/Tokyo") == "2026-11-25"
    assert period_key("day", utc(2026, 11, 25, 15, 0), "Asia/Tokyo") == "2026-11-26"


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown period"):
        window_for("year", utc(2026, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown time zone"):
        window_for("day", utc(2026, 1, 1), "Mars/Olympus")
    with pytest.raises(ValueError, match="naive"):
        window_for("day", datetime(2026, 1, 1))


ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe"]


@settings(max_examples=300, deadline=None)
@given(
    instant=st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    period=st.sampled_from(["day", "week", "month"]),
    tz=st.sampled_from(ZONES),
)
def test_windows_tile_time(instant: datetime, period: str, tz: str) -> None:
    window = window_for(period, instant, tz)  # type: ignore[arg-type]
    assert window.contains(instant)
    assert window.key == period_key(period, instant, tz)  # type: ignore[arg-type]
    assert window.end is not None
    following = window_for(period, window.end, tz)  # type: ignore[arg-type]
    assert following.start == window.end
    assert following.key > window.key  # keys sort in time order


def test_clocks() -> None:
    now = SystemClock().now()
    assert now.tzinfo is not None
    fixed = FixedClock(utc(2026, 1, 1))
    assert fixed.now() == utc(2026, 1, 1)
    manual = ManualClock(datetime(2026, 1, 1, 1, tzinfo=UTC))
    assert manual.advance(hours=2) == utc(2026, 1, 1, 3)
    manual.set(utc(2027, 1, 1))
    assert manual.now() == utc(2027, 1, 1)
    with pytest.raises(ValueError, match="forward"):
        manual.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="naive"):
        ManualClock(datetime(2026, 1, 1))
    assert set(PERIODS) == {"none", "day", "week", "month"}
