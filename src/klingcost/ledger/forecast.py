"""A budget's burn: its settled charges per day (from the daily rollup, no scan of the
holds) and the projected run-out day :func:`klingcost.forecast.project` fits to them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING

from klingcost.budgets import UNITS
from klingcost.ledger.budgets import BudgetsPart
from klingcost.ledger.rows import _dt

if TYPE_CHECKING:
    from klingcost.forecast import Forecast

#: A budget's settled charges per UTC day: its own team's and every team's below it, from the
#: daily rollup, in the column the budget counts (units of its pack, or cost in its currency).
_DAILY_CHARGES_SQL = (
    "WITH RECURSIVE down(name, depth) AS (SELECT name, 0 FROM budgets WHERE name = ? UNION ALL"
    " SELECT b.name, down.depth + 1 FROM budgets AS b JOIN down ON b.parent = down.name"
    " WHERE down.depth < 64) SELECT r.day, SUM(r.{column}) FROM rollup_daily AS r"
    " JOIN down ON r.team = down.name WHERE r.day >= ? AND r.day <= ? AND r.{match} = ?"
    " GROUP BY r.day"
)


class ForecastPart(BudgetsPart):
    """A budget's burn: :meth:`daily_charges`, :meth:`forecast`."""

    def daily_charges(self, team: str, *, since: date, until: date) -> dict[date, int]:
        """What ``team``'s budget was charged per UTC day of reservation, ``since`` to
        ``until`` inclusive, in its minor units: the settled holds of its team and every team
        below it (open holds excluded), read from the daily rollup (no scan of the holds)."""
        budget = self.get_budget(team)
        column, match = (
            ("charged_units", "pack") if budget.unit == UNITS else ("charged_minor", "currency")
        )
        sql = _DAILY_CHARGES_SQL.format(column=column, match=match)
        params = (team, since.isoformat(), until.isoformat(), budget.pack or budget.unit)
        with self.reading():
            rows = self._db.execute(sql, params).fetchall()
        return {date.fromisoformat(day): int(total) for day, total in rows if total}

    def forecast(self, team: str, *, now: datetime | None = None) -> Forecast:
        """``team``'s burn rate and projected run-out day (:func:`klingcost.forecast.project`)."""
        from klingcost.forecast import LOOKBACK_DAYS, last_day, project

        at = self.clock.now() if now is None else now
        today = at.astimezone(UTC).date()
        budget = self.get_budget(team)
        with self.reading():
            status = self._read(lambda conn: self._status(conn, budget, at))
            row = self._db.execute(
                "SELECT created_at FROM budgets WHERE name = ?", (team,)
            ).fetchone()
        try:  # a budget written by hand (or by an old tool) may carry no usable date
            (created_at,) = row
            created = _dt(created_at).astimezone(UTC).date()
        except (TypeError, ValueError):
            created = today - timedelta(days=LOOKBACK_DAYS)
        window = status.window
        since = today - timedelta(days=LOOKBACK_DAYS)  # project() fits no day before it
        return project(
            self.daily_charges(team, since=since, until=today),
            today=today,
            available=status.available,
            first_day=created,
            period_start=None if window.start is None else window.start.astimezone(UTC).date(),
            period_end=last_day(window.end),
            exponent=budget.exponent,
            today_share=_share_of_day(at),
        )


def _share_of_day(instant: datetime) -> Fraction:
    """How much of its UTC day has gone at ``instant``, exactly (to the microsecond)."""
    utc = instant.astimezone(UTC)
    gone = utc - utc.replace(hour=0, minute=0, second=0, microsecond=0)
    return Fraction(gone // timedelta(microseconds=1), 86_400_000_000)
