"""Alerts, as the ledger keeps them: the rules (which team's alerts go where), the outbox
their deliveries are leased from (:mod:`klingcost.ledger.outbox`), and the forecast warnings a
budget's projected run-out raises. Delivery itself: :mod:`klingcost.alerts`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from klingcost.budgets import BudgetStatus
from klingcost.errors import BudgetNotFound, LedgerValueError
from klingcost.ledger import outbox
from klingcost.ledger.db import DB
from klingcost.ledger.forecast import ForecastPart

if TYPE_CHECKING:
    from klingcost.forecast import Forecast


class AlertsPart(ForecastPart):
    """Alerts: rules (:meth:`add_alert_rule`, ...), the outbox (:meth:`claim_due_alerts`,
    ...) and forecast warnings (:meth:`warn_forecasts`)."""

    def add_alert_rule(
        self, team: str, *, channel: str, url: str, on: Sequence[str] = outbox.ALERT_KINDS
    ) -> outbox.AlertRule:
        """Send ``team``'s alerts of the kinds ``on`` (soft, refused, over, forecast) to
        ``url`` over ``channel`` (webhook, slack, feishu, dingtalk). BudgetNotFound for a team
        without a budget; LedgerValueError (the URL masked) for a bad URL or kind."""
        url = outbox.check_url(channel, url)
        kinds = tuple(dict.fromkeys(on))
        bad = [kind for kind in kinds if kind not in outbox.ALERT_KINDS]
        if bad or not kinds:
            raise LedgerValueError(
                f"{', '.join(map(repr, bad)) or 'nothing'} given; allowed: "
                f"{', '.join(outbox.ALERT_KINDS)} (comma-separated)",
                option="on",
                value=bad,
                allowed=", ".join(outbox.ALERT_KINDS),
            )
        at = self.clock.now().isoformat()

        def operation(conn: DB) -> outbox.AlertRule:
            if conn.execute("SELECT 1 FROM budgets WHERE name = ?", (team,)).fetchone() is None:
                raise BudgetNotFound(team=team)
            rule = outbox.insert_rule(conn, team, channel, url, kinds, at)
            self._event(
                conn,
                at,
                "alert_rule_added",
                None,
                team,
                rule=rule.id,
                channel=channel,
                url=rule.masked,
                on=list(kinds),
            )
            return rule

        return self._write(operation)

    def alert_rules(self, team: str | None = None) -> list[outbox.AlertRule]:
        """The alert rules (of ``team``), by id."""
        with self.reading():
            return outbox.rules(self._db, team)

    def alert_rule(self, rule_id: int) -> outbox.AlertRule:
        """Rule ``rule_id``; LedgerValueError when there is none."""
        with self.reading():
            rule = outbox.rule(self._db, rule_id)
        if rule is None:
            raise LedgerValueError(
                f"no alert rule {rule_id} in the ledger (see `klingcost alerts list`)"
            )
        return rule

    def remove_alert_rule(self, rule_id: int) -> outbox.AlertRule:
        """Delete rule ``rule_id`` and its undelivered alerts (the event log keeps both)."""
        at = self.clock.now().isoformat()

        def operation(conn: DB) -> outbox.AlertRule:
            rule = outbox.rule(conn, rule_id)
            if rule is None:
                raise LedgerValueError(
                    f"no alert rule {rule_id} in the ledger (see `klingcost alerts list`)"
                )
            dropped = outbox.delete_rule(conn, rule_id)
            self._event(
                conn,
                at,
                "alert_rule_removed",
                None,
                rule.team,
                rule=rule.id,
                channel=rule.channel,
                url=rule.masked,
                undelivered_dropped=dropped,
            )
            return rule

        return self._write(operation)

    def claim_due_alerts(
        self, *, now: datetime, lease: timedelta, limit: int = 50
    ) -> list[outbox.PendingAlert]:
        """Lease the outbox rows due at ``now`` for delivery (:func:`outbox.claim_due`).

        Looks first without a write transaction: a loop that finds nothing due never takes
        SQLite's write lock from the submissions."""
        with self.reading():
            if not outbox.any_due(self._db, now):
                return []
        skip = self._locks_rows
        return self._write(lambda conn: outbox.claim_due(conn, now, lease, limit, skip_locked=skip))

    def record_alert_attempt(
        self, outbox_id: int, *, at: datetime, error: str | None, next_at: datetime | None
    ) -> None:
        """Record a delivery attempt: delivered (``error`` None) or due again at ``next_at``."""
        self._write(
            lambda conn: outbox.record_attempt(conn, outbox_id, at=at, error=error, next_at=next_at)
        )

    def alert_outbox(
        self, *, rule_id: int | None = None, limit: int = 100
    ) -> list[outbox.OutboxRow]:
        """The latest outbox rows (of one rule), newest first."""
        with self.reading():
            return outbox.outbox_rows(self._db, rule_id=rule_id, limit=limit)

    def alert_counts(self) -> dict[int, outbox.OutboxCounts]:
        """Per rule id: how many alerts are pending, delivered and given up."""
        with self.reading():
            return outbox.counts(self._db)

    def warn_forecasts(
        self, *, now: datetime | None = None, every: timedelta = timedelta(minutes=5)
    ) -> list[str]:
        """Write a ``forecast_warning`` event (which alerts the rules that take ``forecast``)
        for each budget whose projected run-out falls on or before its period's last day, at
        most once per budget and period; return the budgets warned now.

        Looks at most once per ``every`` per ledger object (the loops that call it run every
        few seconds); budgets without a period have no end to run out before."""
        at = self.clock.now() if now is None else now
        last = self.forecasts_checked_at
        if last is not None and timedelta(0) <= at - last < every:
            return []
        self.forecasts_checked_at = at
        warned = []
        for status in self.budgets():
            if status.budget.period == "none":
                continue
            forecast = self.forecast(status.team, now=at)
            if forecast.runs_out_early and self._write(
                partial(self._forecast_warning, now=at, status=status, forecast=forecast)
            ):
                warned.append(status.team)
        return warned

    def _forecast_warning(
        self, conn: DB, *, now: datetime, status: BudgetStatus, forecast: Forecast
    ) -> bool:
        at = outbox.stamp(now)
        key = status.window.key
        if not outbox.claim_mark(conn, status.team, "forecast", key, at, at):
            return False
        self._event(
            conn,
            now.isoformat(),
            "forecast_warning",
            None,
            status.team,
            period_key=key,
            runs_out_on=str(forecast.runs_out_on),
            period_ends_on=str(forecast.period_ends_on),
            rate_per_day=forecast.rate_text,
            available=status.budget.format(status.available),
            unit=status.budget.unit_label,
            method=forecast.method,
        )
        return True
