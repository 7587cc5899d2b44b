"""Settle: post a hold at what the provider charged, recording the variance against the
estimate and the alerts it raises. Never refused for going over a limit: the API has
already charged, so an ``over_limit`` event says so instead."""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from klingcost._testpoints import reach
from klingcost.budgets import MAX_MINOR, Alert, counted, crosses_soft
from klingcost.deduction import DEDUCTION_FLAGS, parse_deduction
from klingcost.errors import HoldStateError, InvalidAmountError
from klingcost.ledger.db import DB
from klingcost.ledger.holds import _ENTRIES_SQL, _SETTLE_SQL, HoldsPart, _log_alerts, logger
from klingcost.ledger.rows import _dt, _soft
from klingcost.ledger.types import Hold

#: The settlement verdicts that alert a hold's budgets, and the event each records.
_VERDICT_ALERTS: Final = {"drift": "deduction_drift", "implausible": "implausible_deduction"}


def _int_amount(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmountError(f"{name} must be an int in minor units (given {value!r})")
    if value < 0:
        raise InvalidAmountError(f"{name} cannot be negative (given {value})")
    if value > MAX_MINOR:
        raise InvalidAmountError(f"{name} is past what the ledger holds, 2**63 - 1 (given {value})")
    return value


class SettlePart(HoldsPart):
    """Settlement: :meth:`settle`."""

    def settle(
        self,
        hold_id: int,
        *,
        units_milli: int,
        cost_minor: int,
        raw_deduction: str | None = None,
        task_status: str | None = None,
        deduction_flag: str | None = None,
        verdict: str | None = None,
    ) -> Hold:
        """Post the hold at what the provider charged, recording the variance.

        Never refused for going over a limit (the API has already charged): an ``over_limit``
        event is recorded instead. Settling again at the same charge changes nothing.
        ``raw_deduction`` is the API's ``final_unit_deduction`` text as sent (None when absent);
        ``task_status`` the task's final status (``succeed`` or ``failed``), so that
        ``klingcost reconcile`` can flag a failed task that was charged. ``deduction_flag`` is
        the settler's flag for that text (default: what parsing it alone says; the verdict in
        :mod:`klingcost.deduction` also flags a figure outside what Kling lists as ``absurd``).
        ``verdict`` is that rule book's word for the settlement: ``drift`` (the API's figure was
        booked, far from the estimate) or ``implausible`` (it was not booked) alert every
        budget the hold counts against with an event (``deduction_drift`` or
        ``implausible_deduction``), so their owners see it.
        """
        flags = DEDUCTION_FLAGS

        _int_amount("units_milli", units_milli)
        _int_amount("cost_minor", cost_minor)
        if task_status is not None and not isinstance(task_status, str):
            raise HoldStateError(f"task_status must be a string (given {task_status!r})")
        if deduction_flag is not None and deduction_flag not in flags:
            raise HoldStateError(
                f"deduction_flag must be one of {', '.join(flags)} (given {deduction_flag!r})"
            )
        flag = deduction_flag or parse_deduction(raw_deduction).flag
        at = self.clock.now().isoformat()

        def operation(conn: DB) -> Hold:
            hold = self._load_for_update(conn, hold_id)
            if hold.state == "settled":
                if (hold.units_milli, hold.cost_minor) == (units_milli, cost_minor):
                    return hold
                raise HoldStateError(
                    f"hold {hold_id} was settled at {hold.units_milli} milli-units and "
                    f"{hold.cost_minor} {hold.estimate.currency}; it cannot be settled again at "
                    f"{units_milli} and {cost_minor}"
                )
            if hold.state == "voided":
                raise HoldStateError(f"hold {hold_id} was voided; it cannot be settled")
            self._lock_entry_budgets(conn, hold_id)
            actual = replace(hold.estimate, units_milli=units_milli, cost_minor=cost_minor)
            alerts = []
            entries = conn.execute(_ENTRIES_SQL, (hold_id,)).fetchall()
            for name, pkey, reserved, unit, pack, limit, soft in entries:
                charged = counted(unit, pack, actual, name)
                posted, held = conn.execute(
                    _SETTLE_SQL, (name, pkey, charged, -reserved)
                ).fetchone()
                sql = "UPDATE hold_entries SET charged = ? WHERE hold_id = ? AND budget = ?"
                conn.execute(sql, (charged, hold_id, name))
                after = posted + held
                if after > limit and charged > reserved:
                    alerts.append(Alert("over", name, pkey, after, limit))
                elif crosses_soft(limit, _soft(soft), after - charged + reserved, after):
                    alerts.append(Alert("soft", name, pkey, after, limit))
            var_units = units_milli - hold.estimate.units_milli
            var_cost = cost_minor - hold.estimate.cost_minor
            conn.execute(
                "UPDATE holds SET state = 'settled', units_milli = ?, cost_minor = ?,"
                " variance_units_milli = ?, variance_cost_minor = ?, raw_deduction = ?,"
                " deduction_flag = ?, task_status = ?, updated_at = ? WHERE id = ?",
                (
                    units_milli,
                    cost_minor,
                    var_units,
                    var_cost,
                    raw_deduction,
                    flag,
                    task_status,
                    at,
                    hold_id,
                ),
            )
            self._event(
                conn,
                at,
                "settle",
                hold_id,
                hold.team,
                units_milli=units_milli,
                cost_minor=cost_minor,
                variance_units_milli=var_units,
                variance_cost_minor=var_cost,
                raw_deduction=raw_deduction,
                deduction_flag=flag,
                task_status=task_status,
                was=hold.state,
                verdict=verdict,
            )
            if verdict in _VERDICT_ALERTS:
                for budget in {name for name, *_ in entries}:
                    self._event(
                        conn,
                        at,
                        _VERDICT_ALERTS[verdict],
                        hold_id,
                        budget,
                        hold_team=hold.team,
                        raw_deduction=raw_deduction,
                        estimated_units_milli=hold.estimate.units_milli,
                        booked_units_milli=units_milli,
                    )
            self._record_alerts(conn, at, hold_id, alerts)
            reach("during_settle")  # a crash test may stop here, before COMMIT
            return replace(
                hold,
                state="settled",
                units_milli=units_milli,
                cost_minor=cost_minor,
                variance_units_milli=var_units,
                variance_cost_minor=var_cost,
                raw_deduction=raw_deduction,
                deduction_flag=flag,
                task_status=task_status,
                updated_at=_dt(at),
                alerts=tuple(alerts),
            )

        hold = self._write(operation)
        _log_alerts(hold)
        if verdict in _VERDICT_ALERTS:
            logger.warning(
                "hold %s: final_unit_deduction %r is %s (estimate %s milli-units, booked %s)",
                hold.id,
                raw_deduction,
                "far from the estimate" if verdict == "drift" else "implausible: not booked",
                hold.estimate.units_milli,
                units_milli,
            )
        return hold
