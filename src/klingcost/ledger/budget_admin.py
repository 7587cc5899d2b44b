"""Budget management: preview a change, rename a budget, delete (or archive) one; each in
one transaction, its holds, entries, balances and rollups following the budget's name.
The pure part (what a change or a deletion reports): :mod:`klingcost.budget_admin`."""

from __future__ import annotations

from typing import Any, Final

from klingcost.budget_admin import ARCHIVED, BudgetChange, DeletedBudget, archived_name
from klingcost.budgets import Budget, BudgetStatus, make_budget
from klingcost.errors import BudgetConfigError, BudgetNotFound
from klingcost.ledger.budgets import _BUDGETS_LOCK, BudgetsPart, _merged_budget
from klingcost.ledger.db import DB
from klingcost.ledger.rows import _BUDGET_COLUMNS, _budget_from_row
from klingcost.ledger.types import KEEP
from klingcost.money import exact

#: Every column that names a budget (besides ``budgets.name``): what a rename moves. A table
#: that adds one adds it here. ``events.team`` is not one: the log keeps the names of its day.
BUDGET_REFERENCES: Final[tuple[tuple[str, str], ...]] = (
    ("budgets", "parent"),
    ("holds", "team"),
    ("hold_entries", "budget"),
    ("balances", "budget"),
    ("rollup_daily", "team"),
    ("alert_rules", "team"),
    ("alert_marks", "team"),
)
_OPEN_STATES_SQL = "h.state IN ('held', 'submitted', 'unknown')"
#: Open holds counted in a period of a budget: how many, and what they hold there.
_OPEN_IN_PERIOD_SQL = (
    "SELECT COUNT(*), COALESCE(SUM(e.reserved), 0) FROM hold_entries AS e JOIN holds AS h"
    f" ON h.id = e.hold_id WHERE e.budget = ? AND e.period_key = ? AND {_OPEN_STATES_SQL}"
)
_OPEN_OF_TEAM_SQL = (
    "SELECT h.id, e.reserved FROM holds AS h JOIN hold_entries AS e ON e.hold_id = h.id"
    f" AND e.budget = h.team WHERE h.team = ? AND {_OPEN_STATES_SQL} ORDER BY h.id"
)
_CHILDREN_SQL = "SELECT name FROM budgets WHERE parent = ? ORDER BY name"


class BudgetAdminPart(BudgetsPart):
    """Budget management: :meth:`preview_budget`, :meth:`rename_budget`,
    :meth:`delete_budget`."""

    def preview_budget(self, team: str, **changes: Any) -> BudgetChange:
        """What :meth:`update_budget` with ``changes`` would do to ``team``'s budget, read in
        one snapshot and written nowhere: its status before and after, and the open holds a
        period change moves out of the current period's count. BudgetNotFound or
        BudgetConfigError (as the update would raise) otherwise."""
        given = {name: value for name, value in changes.items() if value is not KEEP}
        if "limit_major" in given:
            try:
                given["limit_major"] = exact(given["limit_major"])
            except (TypeError, ValueError) as exc:
                raise BudgetConfigError(
                    f"invalid limit {changes['limit_major']!r}: {exc}"
                ) from None
        now = self.clock.now()

        def operation(conn: DB) -> BudgetChange:
            sql = f"SELECT {_BUDGET_COLUMNS} FROM budgets WHERE name = ?"
            row = conn.execute(sql, (team,)).fetchone()
            if row is None:
                raise BudgetNotFound(team=team)
            old = _budget_from_row(row)
            before = self._status(conn, old, now)
            after = self._status(conn, _merged_budget(team, old, given), now)
            holds, held = 0, 0
            if after.window.key != before.window.key:
                sql = _OPEN_IN_PERIOD_SQL
                holds, held = conn.execute(sql, (team, before.window.key)).fetchone()
            return BudgetChange(before, after, int(holds), int(held))

        return self._read(operation)

    def rename_budget(self, team: str, new: str) -> BudgetStatus:
        """Rename ``team``'s budget to ``new`` in one transaction: its holds, entries, running
        balances and rollups follow, and so do its children's parent links, so everything
        keeps counting. BudgetNotFound; BudgetConfigError when ``new`` is taken or no valid
        name. The event log keeps the old name (a ``budget_renamed`` event links the two)."""
        at = self.clock.now().isoformat()

        def operation(conn: DB) -> None:
            old = self._lock_budget_for_change(conn, team)
            make_budget(new, limit=old.limit, unit=old.unit, period=old.period, soft=old.soft,
                        tz=old.tz, pack=old.pack, exponent=old.exponent)  # fmt: skip
            if conn.execute("SELECT 1 FROM budgets WHERE name = ?", (new,)).fetchone():
                raise BudgetConfigError(
                    f"budget {new!r} already exists: choose another name (or delete {new} first)"
                )
            self._move_budget(conn, team, new, at)
            self._event(conn, at, "budget_renamed", None, new, previous=team)

        self._write(operation)
        return self.budget_status(new)

    def delete_budget(self, team: str, *, force: bool = False) -> DeletedBudget:
        """Delete ``team``'s budget. Refused (BudgetConfigError, nothing written) while budgets
        hang below it, and while it has open holds unless ``force``: they then stay open,
        archived with the budget, and still settle. A budget with history is archived under
        ``team~deleted-N`` (kept for reports and audits, hidden from :meth:`budgets`); one
        without is removed. The name is free again either way. A ``budget_deleted`` event is
        recorded."""
        at = self.clock.now().isoformat()

        def operation(conn: DB) -> DeletedBudget:
            budget = self._lock_budget_for_change(conn, team)
            below = [name for (name,) in conn.execute(_CHILDREN_SQL, (team,))]
            if below:
                raise BudgetConfigError(
                    f"budget {team} has budgets below it ({', '.join(below)}): delete them "
                    f"first, or move each with: klingcost budget set NAME --parent OTHER"
                )
            open_rows = conn.execute(_OPEN_OF_TEAM_SQL, (team,)).fetchall()
            ids = tuple(int(hold_id) for hold_id, _ in open_rows)
            held = sum(int(reserved) for _, reserved in open_rows)
            if ids and not force:
                shown = ", ".join(map(str, ids[:10])) + (" ..." if len(ids) > 10 else "")
                raise BudgetConfigError(
                    f"budget {team} has {len(ids)} open hold(s) (ids {shown}) still counting "
                    f"{budget.format(held)} {budget.unit}: settle them with `klingcost sync`, "
                    "release them with `klingcost holds void ID --reason TEXT`, or give "
                    "--force to delete it anyway (its open holds then stay open under the "
                    "archived budget, and sync still settles them)"
                )
            archived = None
            if conn.execute(
                "SELECT 1 FROM hold_entries WHERE budget = ? LIMIT 1", (team,)
            ).fetchone():
                pattern = team.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                taken = {
                    name
                    for (name,) in conn.execute(
                        "SELECT name FROM budgets WHERE name LIKE ? ESCAPE '\\'",
                        (f"{pattern}{ARCHIVED}%",),
                    )
                }
                archived = archived_name(team, taken)
                self._move_budget(conn, team, archived, at)
            else:
                conn.execute("DELETE FROM balances WHERE budget = ?", (team,))
                conn.execute("DELETE FROM budgets WHERE name = ?", (team,))
            self._event(conn, at, "budget_deleted", None, team, archived=archived,
                        forced=force, open_holds=list(ids), open_held=held)  # fmt: skip
            return DeletedBudget(team, archived, ids, held)

        return self._write(operation)

    def _lock_budget_for_change(self, conn: DB, team: str) -> Budget:
        """The budget row, locked (PostgreSQL: with the budget trees' lock, as set_budget)."""
        if self._locks_rows:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_BUDGETS_LOCK,)).fetchall()
        sql = f"SELECT {_BUDGET_COLUMNS} FROM budgets WHERE name = ?{self._row_lock}"
        row = conn.execute(sql, (team,)).fetchone()
        if row is None or ARCHIVED in team:
            raise BudgetNotFound(team=team)
        return _budget_from_row(row)

    @staticmethod
    def _move_budget(conn: DB, old: str, new: str, at: str) -> None:
        """Give budget ``old`` the name ``new``: a copy of its row, every reference moved to it
        (each statement keeps every foreign key whole), then the old row removed."""
        conn.execute(
            "INSERT INTO budgets (name, parent, unit, pack, exponent, limit_minor, period, tz,"
            " soft, created_at, updated_at) SELECT ?, parent, unit, pack, exponent, limit_minor,"
            " period, tz, soft, created_at, ? FROM budgets WHERE name = ?",
            (new, at, old),
        )
        for table, column in BUDGET_REFERENCES:
            conn.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (new, old))
        conn.execute("DELETE FROM budgets WHERE name = ?", (old,))
