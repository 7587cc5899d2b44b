"""A hold's life after :meth:`~klingcost.ledger.Ledger.reserve`: attach the provider's task
(the guard's case is one UPDATE and one INSERT), mark its outcome unknown, void it, and read
holds back. Each step is one transaction that moves the hold's entries in the running
balances and appends its event. Settling: :mod:`klingcost.ledger.settle`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime

from klingcost.budgets import Alert
from klingcost.errors import HoldNotFound, HoldStateError
from klingcost.ledger._base import LedgerBase
from klingcost.ledger.db import DB
from klingcost.ledger.rows import _HOLD_ROW, _HOLD_SELECT, HoldRow, _dt, _hold_from_row
from klingcost.ledger.types import HOLD_STATES, Hold

logger = logging.getLogger("klingcost.ledger")

#: attach's one step when the hold is as the guard left it: open, and without a task.
_ATTACH_SQL = (
    "UPDATE holds SET state = 'submitted', task_id = ?, updated_at = ?"
    " WHERE id = ? AND task_id IS NULL AND state IN ('held', 'unknown')"
    f" RETURNING {_HOLD_ROW}"
)
_INSERT_TASK_SQL = (
    "INSERT INTO tasks (task_id, hold_id, attached_at) VALUES (?, ?, ?)"
    " ON CONFLICT (task_id) DO NOTHING RETURNING hold_id"
)

_ENTRIES_SQL = (
    "SELECT e.budget, e.period_key, e.reserved, b.unit, b.pack, b.limit_minor, b.soft"
    " FROM hold_entries AS e JOIN budgets AS b ON b.name = e.budget"
    " WHERE e.hold_id = ? ORDER BY e.depth"
)
# Moves a hold's entry in the running balance (an upsert, so a damaged file cannot crash it:
# ``check()`` reports the difference instead).
_SETTLE_SQL = (
    "INSERT INTO balances (budget, period_key, posted, held) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (budget, period_key) DO UPDATE"
    " SET posted = balances.posted + excluded.posted, held = balances.held + excluded.held"
    " RETURNING posted, held"
)

_ATTACH_LEAN_SQL = (
    "UPDATE holds SET state = 'submitted', task_id = ?, updated_at = ?"
    " WHERE id = ? AND task_id IS NULL AND state = 'held'"
)
_INSERT_TASK_LEAN_SQL = _INSERT_TASK_SQL.removesuffix(" RETURNING hold_id")
_LOCK_ENTRY_BUDGETS_SQL = (
    "SELECT name FROM budgets WHERE name IN (SELECT budget FROM hold_entries WHERE hold_id = ?)"
    " ORDER BY name"
)


class HoldsPart(LedgerBase):
    """Holds after reserve: :meth:`attach`, :meth:`mark_unknown`, :meth:`void`,
    :meth:`note_not_found`, and :meth:`get_hold`, :meth:`hold_for_task`,
    :meth:`hold_for_key`, :meth:`holds` to read them."""

    def _record_alerts(self, conn: DB, at: str, hold_id: int, alerts: list[Alert]) -> None:
        for a in alerts:
            kind = "soft_threshold" if a.kind == "soft" else "over_limit"
            self._event(
                conn,
                at,
                kind,
                hold_id,
                a.budget,
                period_key=a.period_key,
                used=a.used,
                limit=a.limit,
            )

    @staticmethod
    def _load(conn: DB, hold_id: int, lock: str = "") -> Hold:
        row = conn.execute(f"{_HOLD_SELECT} WHERE h.id = ?{lock}", (hold_id,)).fetchone()
        if row is None:
            raise HoldNotFound(hold=str(hold_id))
        return _hold_from_row(row)

    def _load_for_update(self, conn: DB, hold_id: int) -> Hold:
        """The hold, its row locked until the transaction ends (PostgreSQL)."""
        return self._load(conn, hold_id, f"{self._row_lock} OF h" if self._row_lock else "")

    def _lock_entry_budgets(self, conn: DB, hold_id: int) -> None:
        """PostgreSQL: lock the budgets a hold counts against (by name), before moving them."""
        if self._locks_rows:
            conn.execute(_LOCK_ENTRY_BUDGETS_SQL + self._row_lock, (hold_id,)).fetchall()

    def get_hold(self, hold_id: int) -> Hold:
        with self.reading():
            return self._load(self._db, hold_id)

    def hold_for_task(self, task_id: str) -> Hold | None:
        """The hold that ``task_id`` was attached to, or None."""
        with self.reading():
            sql = "SELECT hold_id FROM tasks WHERE task_id = ?"
            row = self._db.execute(sql, (task_id,)).fetchone()
            if row is None:
                return None
            (hold_id,) = row
            return self._load(self._db, hold_id)

    def hold_for_key(self, key: str) -> Hold | None:
        """The hold reserved under the idempotency ``key``, or None."""
        with self.reading():
            sql = f"{_HOLD_SELECT} WHERE h.idempotency_key = ?"
            row = self._db.execute(sql, (key,)).fetchone()
            return None if row is None else _hold_from_row(row)

    def attach(self, hold_id: int, task_id: str, *, reserved: Hold | None = None) -> Hold:
        """Record the provider's task id on an open hold (it becomes ``submitted``).

        A hold voided without a task is restored: it counts again, ``submitted`` with this
        task (see :meth:`_restore`). The API accepted the task, so it will charge for it.

        ``reserved`` is the hold as :meth:`reserve` returned it (the guard's case): while it is
        still ``held`` without a task, the attach is one UPDATE and one INSERT, and the hold
        returned is ``reserved`` with its task (a held hold changes only by leaving ``held``,
        which the UPDATE's row count would say).
        """
        if not isinstance(task_id, str) or not task_id:
            raise HoldStateError(f"a task id must be a non-empty string (given {task_id!r})")
        now = self.clock.now()
        at = now.isoformat()
        if reserved is not None and reserved.id == hold_id and reserved.state == "held":
            lean = self._attach_lean(reserved, task_id, now, at)
            if lean is not None:
                return lean

        # The guard's case (an open hold without a task) is one UPDATE; anything else is
        # looked at only when that UPDATE matched nothing, to say why (or to repeat a success).
        def operation(conn: DB) -> Hold:
            row = conn.execute(_ATTACH_SQL, (task_id, at, hold_id)).fetchone()
            restored: Hold | None = None
            if row is None:
                hold = self._load_for_update(conn, hold_id)
                if hold.task_id == task_id:
                    return hold
                if hold.task_id is not None:
                    raise HoldStateError(f"hold {hold_id} already has task {hold.task_id!r}")
                if hold.state != "voided":
                    raise HoldStateError(f"hold {hold_id} is {hold.state}; no task can be attached")
                restored = hold
            if conn.execute(_INSERT_TASK_SQL, (task_id, hold_id, at)).fetchone() is None:
                sql = "SELECT hold_id FROM tasks WHERE task_id = ?"
                (other,) = conn.execute(sql, (task_id,)).fetchone()
                raise HoldStateError(f"task {task_id!r} already belongs to hold {other}")
            if restored is not None:
                return self._restore(conn, at, restored, task_id)
            hold = _hold_from_row(row)
            self._event(conn, at, "attach", hold_id, hold.team, task_id=task_id)
            return hold

        hold = self._write(operation)
        _log_alerts(hold)
        return hold

    def _attach_lean(self, hold: Hold, task_id: str, now: datetime, at: str) -> Hold | None:
        """attach for a hold still ``held`` without a task; None (nothing written) when it is
        not, for :meth:`attach`'s full path to say why or to restore it."""

        def operation(conn: DB) -> Hold | None:
            if conn.execute(_ATTACH_LEAN_SQL, (task_id, at, hold.id)).rowcount != 1:
                return None
            if conn.execute(_INSERT_TASK_LEAN_SQL, (task_id, hold.id, at)).rowcount != 1:
                sql = "SELECT hold_id FROM tasks WHERE task_id = ?"
                (other,) = conn.execute(sql, (task_id,)).fetchone()
                raise HoldStateError(f"task {task_id!r} already belongs to hold {other}")
            self._event(conn, at, "attach", hold.id, hold.team, task_id=task_id)
            return replace(hold, state="submitted", task_id=task_id, updated_at=now, alerts=())

        return self._write(operation)

    def _restore(self, conn: DB, at: str, voided: Hold, task_id: str) -> Hold:
        """Count a voided hold again, with the task the API accepted for it.

        A hold is voided without a task when someone concluded the submission created nothing
        (``sync`` on lasting "no such task" answers, a person, a clock-skewed ``sync``). The
        API's acceptance is the fact: the hold's entries count again in the periods they were
        reserved in, exactly as before the void, and the hold is ``submitted``. Going over a
        limit is not refused (the API has taken the job): an ``over_limit`` event says so.
        """
        self._lock_entry_budgets(conn, voided.id)
        alerts = []
        for name, pkey, reserved, _, _, limit, _ in conn.execute(
            _ENTRIES_SQL, (voided.id,)
        ).fetchall():
            posted, held = conn.execute(_SETTLE_SQL, (name, pkey, 0, reserved)).fetchone()
            if reserved and posted + held > limit:
                alerts.append(Alert("over", name, pkey, posted + held, limit))
        sql = (
            "UPDATE holds SET state = 'submitted', task_id = ?, reason = NULL, updated_at = ?"
            " WHERE id = ?"
        )
        conn.execute(sql, (task_id, at, voided.id))
        self._event(
            conn,
            at,
            "restore",
            voided.id,
            voided.team,
            task_id=task_id,
            was="voided",
            void_reason=voided.reason,
        )
        self._event(conn, at, "attach", voided.id, voided.team, task_id=task_id)
        self._record_alerts(conn, at, voided.id, alerts)
        return replace(
            voided,
            state="submitted",
            task_id=task_id,
            reason=None,
            updated_at=_dt(at),
            alerts=tuple(alerts),
        )

    def note_not_found(self, hold_id: int, *, asked: str, detail: str) -> list[datetime]:
        """Record that the API answered "no such task" for ``asked`` (an open hold's external
        id); returns when each such answer for this hold was recorded, oldest first.

        A ``not_found`` event each time: ``sync`` voids a hold whose answer was lost only on
        evidence that lasts (several answers over a window), and this is that evidence,
        durable across runs and shared by every process that syncs the ledger.
        """
        at = self.clock.now().isoformat()

        def operation(conn: DB) -> list[datetime]:
            hold = self._load_for_update(conn, hold_id)
            if hold.is_open and hold.task_id is None:
                self._event(conn, at, "not_found", hold_id, hold.team, asked=asked, detail=detail)
            sql = "SELECT at FROM events WHERE hold_id = ? AND kind = 'not_found' ORDER BY id"
            return [_dt(recorded) for (recorded,) in conn.execute(sql, (hold_id,)).fetchall()]

        return self._write(operation)

    def mark_unknown(self, hold_id: int, reason: str) -> Hold:
        """The submission's outcome is unknown: the hold keeps counting until resolved."""
        at = self.clock.now().isoformat()

        def operation(conn: DB) -> Hold:
            hold = self._load_for_update(conn, hold_id)
            if hold.state == "unknown":
                return hold
            if not hold.is_open:
                raise HoldStateError(f"hold {hold_id} is already {hold.state}")
            sql = "UPDATE holds SET state = 'unknown', reason = ?, updated_at = ? WHERE id = ?"
            conn.execute(sql, (reason, at, hold_id))
            self._event(conn, at, "unknown", hold_id, hold.team, reason=reason)
            return replace(hold, state="unknown", reason=reason, updated_at=_dt(at))

        return self._write(operation)

    def void(self, hold_id: int, *, reason: str, unless_task: bool = False) -> Hold:
        """Release the hold: nothing was, or will be, charged for it. Voiding twice is a no-op.

        ``unless_task`` refuses (HoldStateError) a hold that has a task id, decided inside the
        transaction: a caller who looked at the hold first cannot void a task attached since.
        """
        at = self.clock.now().isoformat()

        def operation(conn: DB) -> Hold:
            hold = self._load_for_update(conn, hold_id)
            if hold.state == "voided":
                return hold
            if hold.state == "settled":
                raise HoldStateError(f"hold {hold_id} was settled; it cannot be voided")
            if unless_task and hold.task_id is not None:
                raise HoldStateError(
                    f"hold {hold_id} has task {hold.task_id}, which the API accepted and may "
                    "still charge: it was not voided"
                )
            self._lock_entry_budgets(conn, hold_id)
            sql = "SELECT budget, period_key, 0, -reserved FROM hold_entries WHERE hold_id = ?"
            for row in conn.execute(sql, (hold_id,)).fetchall():
                conn.execute(_SETTLE_SQL, row).fetchall()
            sql = "UPDATE holds SET state = 'voided', reason = ?, updated_at = ? WHERE id = ?"
            conn.execute(sql, (reason, at, hold_id))
            self._event(conn, at, "void", hold_id, hold.team, reason=reason, was=hold.state)
            return replace(hold, state="voided", reason=reason, updated_at=_dt(at))

        return self._write(operation)

    def holds(
        self, state: str | None = None, team: str | None = None, *, batch: int = 500
    ) -> Iterator[Hold]:
        """Holds in id order, optionally of one state (or ``open``) and of one team."""
        if state is not None and state != "open" and state not in HOLD_STATES:
            allowed = ", ".join(("open", *HOLD_STATES))
            raise HoldStateError(f"unknown hold state {state!r} (allowed: {allowed})")
        clauses, params = ["h.id > ?"], []
        if state == "open":
            clauses.append("h.state IN ('held', 'submitted', 'unknown')")
        elif state is not None:
            clauses.append("h.state = ?")
            params.append(state)
        if team is not None:
            clauses.append("h.team = ?")
            params.append(team)
        sql = f"{_HOLD_SELECT} WHERE {' AND '.join(clauses)} ORDER BY h.id LIMIT {int(batch)}"
        last = 0
        while True:
            with self.reading():
                rows = self._db.execute(sql, (last, *params)).fetchall()
            yield from (_hold_from_row(row) for row in rows)
            if len(rows) < batch:
                return
            last = HoldRow._make(rows[-1]).id


def _log_alerts(hold: Hold) -> None:
    for alert in hold.alerts:
        logger.warning("%s (hold %s)", alert, hold.id)
