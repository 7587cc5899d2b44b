"""Periodic work that processes share: whose turn it is (:meth:`TurnsPart.take_turn`).

Every worker of ``klingcost proxy`` (and every host, on one PostgreSQL ledger) runs the
background settlement pass, which queries every open hold's task upstream. One pass per interval
is enough for all of them: without turns, N workers made N times the queries, against an API
that limits its callers' rate.

A turn is a row of ``ledger_settings`` named ``turn:<job>``: its value says who took it, its
``updated_at`` when. Taking one is a single statement, an insert that updates the row only where
the last turn is at least ``every`` old, so two processes asking at once cannot both get it.
Times are written fixed-width in UTC (microseconds always), so they compare as text alike on
SQLite and PostgreSQL. A process that dies during its turn only delays the next one: turns
expire with time, nobody has to give them back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from klingcost.errors import LedgerValueError
from klingcost.ledger._base import LedgerBase
from klingcost.ledger.db import DB

#: The name prefix of turns in ``ledger_settings``.
TURN_PREFIX: Final = "turn:"

_TAKE_SQL: Final = (
    "INSERT INTO ledger_settings (name, value, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
    " WHERE ledger_settings.updated_at <= ?"
)


class TurnsPart(LedgerBase):
    """Turns at periodic work shared by processes: :meth:`take_turn`, :meth:`last_turn`."""

    def take_turn(self, job: str, holder: str, every: timedelta) -> bool:
        """Whether ``holder`` should do ``job`` now: True (and the turn is ``holder``'s, from
        now) when nobody took it in the last ``every``; False when somebody did."""
        if not job or not holder:
            raise LedgerValueError(f"a turn needs a job and a holder (given {job!r}, {holder!r})")
        if every <= timedelta(0):
            raise LedgerValueError(f"every must be positive (given {every})")
        now = self.clock.now()
        at, due = _stamp(now), _stamp(now - every)

        def operation(conn: DB) -> bool:
            return conn.execute(_TAKE_SQL, (TURN_PREFIX + job, holder, at, due)).rowcount == 1

        return self._write(operation)

    def last_turn(self, job: str) -> tuple[str, datetime] | None:
        """Who took ``job``'s last turn, and when; None if nobody ever did."""
        sql = "SELECT value, updated_at FROM ledger_settings WHERE name = ?"
        with self.reading():
            row = self._db.execute(sql, (TURN_PREFIX + job,)).fetchone()
        return None if row is None else (row[0], datetime.fromisoformat(row[1]))


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


__all__ = ["TURN_PREFIX", "TurnsPart"]
