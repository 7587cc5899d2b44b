"""Where klingcost reads the time: an injectable clock, so tests can cross period boundaries.

Every clock returns an *aware* datetime in UTC. The ledger takes ``clock=`` the way httpx takes
``transport=``: production code uses :class:`SystemClock`, tests a :class:`ManualClock`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


def as_utc(instant: datetime) -> datetime:
    """``instant`` in UTC; a naive datetime is refused (its zone would be a guess)."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(
            f"a naive datetime has no time zone (given {instant!r}); pass an aware one"
        )
    return instant.astimezone(UTC)


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class FixedClock:
    """Always the same instant."""

    def __init__(self, instant: datetime) -> None:
        self._instant = as_utc(instant)

    def now(self) -> datetime:
        return self._instant

    def __repr__(self) -> str:
        return f"FixedClock({self._instant.isoformat()})"


class ManualClock:
    """An instant that moves only when told to: ``set()`` or ``advance()``."""

    def __init__(self, instant: datetime) -> None:
        self._instant = as_utc(instant)

    def now(self) -> datetime:
        return self._instant

    def set(self, instant: datetime) -> None:
        self._instant = as_utc(instant)

    def advance(self, delta: timedelta | None = None, /, **kwargs: float) -> datetime:
        """Move forward by ``delta`` (or ``timedelta(**kwargs)``); return the new instant."""
        step = delta if delta is not None else timedelta(**kwargs)
        if step < timedelta(0):
            raise ValueError(f"a clock only moves forward (given {step})")
        self._instant += step
        return self._instant

    def __repr__(self) -> str:
        return f"ManualClock({self._instant.isoformat()})"
