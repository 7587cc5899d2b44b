"""klingcost.periods: a window holds its start, not its end, and nothing outside it; what
mutation testing showed the other tests never asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
