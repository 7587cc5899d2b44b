"""Budgets: set, change and read a team's budget, each change in one transaction.

A budget hangs on a path to its root (``team -> parent -> ...``); a change that would make a
cycle, or put two currencies (or two minor units of one) on one path, is refused with
nothing written. Renaming and deleting: :mod:`klingcost.ledger.budget_admin`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from fractions import Fraction
from typing import Any, Final

from klingcost.budgets import (
    CURRENCY_EXPONENTS,
    DEFAULT_SOFT,
    UNITS,
    Budget,
    BudgetStatus,
    Pack,
    exponent_for,
    make_budget,
)
from klingcost.errors import BudgetConfigError, BudgetNotFound
from klingcost.ledger import migrations
from klingcost.ledger._base import LedgerBase
from klingcost.ledger.db import DB
from klingcost.ledger.rows import _BUDGET_COLUMNS, BudgetRow, _budget_from_row
from klingcost.ledger.types import KEEP, Keep
from klingcost.money import exact, format_amount
from klingcost.periods import Period, window_for

_BUDGET_ROW_SQL = f"SELECT {_BUDGET_COLUMNS} FROM budgets WHERE name = ?"
_BUDGETS_LOCK: Final = migrations.APPLICATION_ID + 1  # pg_advisory_xact_lock key of set_budget


def _path(conn: DB, team: str) -> list[BudgetRow]:
    """The budget rows from ``team`` up to its root (empty when ``team`` has no budget)."""
    rows: list[BudgetRow] = []
    name: str | None = team
    while name is not None and len(rows) < 64:  # set_budget refuses cycles; 64 is a backstop
        row = conn.execute(_BUDGET_ROW_SQL, (name,)).fetchone()
        if row is None:
            break
        budget = BudgetRow._make(row)
        rows.append(budget)
        name = budget.parent
    return rows


_SUBTREE_SQL = (
    # The first term reads the name from the table, so that it carries the column's collation
    # (PostgreSQL's ledger names sort as "C") in both terms.
    "WITH RECURSIVE down(name, depth) AS (SELECT name, 0 FROM budgets WHERE name = ? UNION ALL"
    " SELECT b.name, down.depth + 1 FROM budgets AS b JOIN down ON b.parent = down.name"
    " WHERE down.depth < 64) SELECT b.name, b.unit, b.exponent FROM budgets AS b JOIN down"
    " ON b.name = down.name"
)


def _check_one_currency(conn: DB, team: str) -> None:
    """Refuse a tree in which one job would meet two currencies: a hold is priced in one, so
    a budget in the other would refuse every job. Units budgets count units and mix freely."""
    # The tree below ``team`` was consistent before (each budget was checked against its own
    # path when it was set), so what can clash now is the path above against anything below.
    # A currency is compared with its exponent: the same cost in 10^-4 and 10^-2 usd would be
    # added as one number to both, 100 times off on one of them.
    above = [
        (r.name, f"{r.unit} to 10^-{r.exponent}") for r in _path(conn, team) if r.unit != UNITS
    ]
    below = [
        (name, f"{unit} to 10^-{exponent}")
        for name, unit, exponent in conn.execute(_SUBTREE_SQL, (team,))
        if unit != UNITS
    ]
    if not above:
        return
    first, unit = above[0]
    for name, other in [*above, *below]:
        if other != unit:
            raise BudgetConfigError(
                f"budget {first!r} counts {unit}, but {name!r} on the same path counts {other}: "
                "a job is priced in one currency and minor unit, so one of them would refuse "
                "every job or count it wrongly"
            )


#: What a new budget takes for a field not given (its limit must be given).
_NEW_BUDGET: Final[dict[str, Any]] = {
    "unit": "credits",
    "period": "none",
    "parent": None,
    "soft": DEFAULT_SOFT,
    "tz": "UTC",
    "pack": "video",
    "exponent": None,
}


def _merged_budget(team: str, old: Budget | None, given: Mapping[str, Any]) -> Budget:
    """The budget ``given`` makes of ``old`` (None: a new one), validated; BudgetConfigError.

    The messages speak the command line's words, as ``klingcost budget set`` shows them."""
    given = dict(given)
    unit = given.get("unit", old.unit if old else "credits")
    if given.get("pack") is not None and unit != UNITS:
        raise BudgetConfigError(
            f"--pack {given['pack']} applies only to --unit units, and budget {team} counts "
            f"{unit}: leave --pack out, or give --unit units"
        )
    if "limit_major" in given:
        exponent = given.get("exponent", old.exponent if old and unit == old.unit else None)
        scaled = given.pop("limit_major") * 10 ** exponent_for(unit, exponent)
        if scaled.denominator != 1:
            raise BudgetConfigError(
                f"limit {format_amount(scaled / 10 ** exponent_for(unit, exponent))} has more "
                f"decimals than {unit} allows ({exponent_for(unit, exponent)} decimal places)"
            )
        given["limit"] = int(scaled)
    if old is None:
        if "limit" not in given:
            raise BudgetConfigError(
                f"budget {team} does not exist yet: give --limit N to create it"
            )
        return make_budget(team, **{**_NEW_BUDGET, **given})
    pack = given.get("pack", old.pack or "video")
    # The minor unit follows the unit: kept with it, or the new unit's own (exponent_for).
    exponent = given.get("exponent", old.exponent if unit == old.unit else None)
    fields = {
        "unit": unit,
        "period": given.get("period", old.period),
        "parent": given.get("parent", old.parent),
        "soft": given.get("soft", old.soft),
        "tz": given.get("tz", old.tz),
        "pack": pack,
        "exponent": exponent,
    }
    if "limit" in given:
        return make_budget(team, limit=given["limit"], **fields)
    budget = make_budget(team, limit=old.limit, **fields)
    if (budget.unit, budget.pack, budget.exponent) != (old.unit, old.pack, old.exponent):
        raise BudgetConfigError(
            f"budget {team} counts {_counts(old)}: to count {_counts(budget)} instead, give "
            f"its --limit N in {_counts(budget)}"
        )
    return budget


def _counts(budget: Budget) -> str:
    if budget.unit == UNITS:
        return f"units ({budget.pack})"
    if CURRENCY_EXPONENTS.get(budget.unit) == budget.exponent:
        return budget.unit
    return f"{budget.unit} to 10^-{budget.exponent}"


class BudgetsPart(LedgerBase):
    """Budgets: :meth:`set_budget`, :meth:`update_budget`, :meth:`get_budget`,
    :meth:`budget_status`, :meth:`budgets`."""

    def set_budget(
        self,
        team: str,
        *,
        limit: int | Keep = KEEP,
        limit_major: str | Fraction | int | Keep = KEEP,
        unit: str | Keep = KEEP,
        period: Period | str | Keep = KEEP,
        parent: str | Keep | None = KEEP,
        soft: Fraction | str | int | Keep = KEEP,
        tz: str | Keep = KEEP,
        pack: Pack | str | Keep = KEEP,
        exponent: int | Keep | None = KEEP,
    ) -> BudgetStatus:
        """Create ``team``'s budget, or change what is given of an existing one.

        A field left out keeps its current value (``parent=None`` removes the parent); a new
        budget needs ``limit`` (an int in minor units of ``unit``) and takes the defaults for
        the rest: credits, no period, no parent, soft 0.8, UTC, video. The current budget is
        read and the new one written in one transaction, so a concurrent change to another
        field is never lost. A limit must be given when ``unit``, ``pack`` or ``exponent``
        changes what the budget counts (a limit in credits means nothing in usd).
        ``limit_major`` gives the limit in major units instead ("12.5" Kling units, "500000"
        credits), exactly, in the unit the budget will have: what ``klingcost budget set
        --limit`` passes, since only the transaction knows the unit of a budget it keeps.

        ``parent`` must exist and must not make a cycle; a budget that already has entries
        cannot change its unit. BudgetConfigError or BudgetNotFound otherwise; nothing is
        written then.
        """
        return self._set_budget(
            team,
            {
                "limit": limit,
                "limit_major": limit_major,
                "unit": unit,
                "period": period,
                "parent": parent,
                "soft": soft,
                "tz": tz,
                "pack": pack,
                "exponent": exponent,
            },
            create=True,
        )

    def update_budget(
        self,
        team: str,
        *,
        limit: int | Keep = KEEP,
        limit_major: str | Fraction | int | Keep = KEEP,
        unit: str | Keep = KEEP,
        period: Period | str | Keep = KEEP,
        parent: str | Keep | None = KEEP,
        soft: Fraction | str | int | Keep = KEEP,
        tz: str | Keep = KEEP,
        pack: Pack | str | Keep = KEEP,
        exponent: int | Keep | None = KEEP,
    ) -> BudgetStatus:
        """Change what is given of ``team``'s existing budget, as :meth:`set_budget` does;
        BudgetNotFound (nothing written) when there is no such budget yet."""
        return self._set_budget(
            team,
            {
                "limit": limit,
                "limit_major": limit_major,
                "unit": unit,
                "period": period,
                "parent": parent,
                "soft": soft,
                "tz": tz,
                "pack": pack,
                "exponent": exponent,
            },
            create=False,
        )

    def _set_budget(self, team: str, changes: dict[str, Any], *, create: bool) -> BudgetStatus:
        given = {name: value for name, value in changes.items() if value is not KEEP}
        if "limit_major" in given:
            if "limit" in given:
                raise BudgetConfigError(
                    f"budget {team!r}: give limit (minor units) or limit_major, not both"
                )
            try:  # parsed before the transaction: only its scale depends on the budget
                given["limit_major"] = exact(given["limit_major"])
            except (TypeError, ValueError) as exc:
                raise BudgetConfigError(
                    f"invalid limit {changes['limit_major']!r}: {exc}"
                ) from None
        now = self.clock.now().isoformat()

        def operation(conn: DB) -> None:
            if self._locks_rows:  # budget trees change one at a time: no cycle can slip in
                conn.execute("SELECT pg_advisory_xact_lock(?)", (_BUDGETS_LOCK,)).fetchall()
            sql = f"SELECT {_BUDGET_COLUMNS} FROM budgets WHERE name = ?{self._row_lock}"
            row = conn.execute(sql, (team,)).fetchone()
            old = None if row is None else _budget_from_row(row)
            if old is None and not create:
                raise BudgetNotFound(team=team)
            b = _merged_budget(team, old, given)
            soft_text = format_amount(b.soft)
            if b.parent is not None:
                ancestors = [r.name for r in _path(conn, b.parent)]
                if not ancestors:
                    raise BudgetNotFound(team=b.parent)
                if team in ancestors:
                    cycle = " -> ".join([team, *ancestors[: ancestors.index(team) + 1]])
                    raise BudgetConfigError(
                        f"budget {team!r} cannot have parent {b.parent!r}: {cycle}"
                    )
            counts = (b.unit, b.pack, b.exponent)
            if old is not None and (old.unit, old.pack, old.exponent) != counts:
                sql = "SELECT 1 FROM hold_entries WHERE budget = ? LIMIT 1"
                if conn.execute(sql, (team,)).fetchone():
                    raise BudgetConfigError(
                        f"budget {team!r} already has entries in {old.unit}; its unit cannot "
                        f"change to {b.unit} (create a new budget instead)"
                    )
            conn.execute(
                "INSERT INTO budgets (name, parent, unit, pack, exponent, limit_minor, period,"
                " tz, soft, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET parent = excluded.parent,"
                " unit = excluded.unit, pack = excluded.pack, exponent = excluded.exponent,"
                " limit_minor = excluded.limit_minor, period = excluded.period,"
                " tz = excluded.tz, soft = excluded.soft, updated_at = excluded.updated_at",
                (
                    team,
                    b.parent,
                    b.unit,
                    b.pack,
                    b.exponent,
                    b.limit,
                    b.period,
                    b.tz,
                    soft_text,
                    now,
                    now,
                ),
            )
            _check_one_currency(conn, team)
            self._event(
                conn,
                now,
                "budget_set",
                None,
                team,
                limit=b.limit,
                unit=b.unit,
                pack=b.pack,
                period=b.period,
                parent=b.parent,
                soft=soft_text,
                tz=b.tz,
                previous=None if old is None else [old.unit, old.pack, old.exponent],
                given=sorted(given),
            )

        self._write(operation)
        return self.budget_status(team)

    def get_budget(self, team: str) -> Budget:
        with self.reading():
            sql = f"SELECT {_BUDGET_COLUMNS} FROM budgets WHERE name = ?"
            row = self._db.execute(sql, (team,)).fetchone()
        if row is None:
            raise BudgetNotFound(team=team)
        return _budget_from_row(row)

    @staticmethod
    def _status(conn: DB, budget: Budget, now: datetime) -> BudgetStatus:
        window = window_for(budget.period, now, budget.tz)
        row = conn.execute(
            "SELECT posted, held FROM balances WHERE budget = ? AND period_key = ?",
            (budget.team, window.key),
        ).fetchone()
        posted, held = row if row else (0, 0)
        return BudgetStatus(budget, window, posted, held)

    def budget_status(self, team: str) -> BudgetStatus:
        """Limit, posted, held and available in the current period of ``team``'s budget."""
        now = self.clock.now()
        return self._read(lambda conn: self._status(conn, self.get_budget(team), now))

    def budgets(self) -> list[BudgetStatus]:
        """Every budget's status in its current period, by name."""
        now = self.clock.now()

        def operation(conn: DB) -> list[BudgetStatus]:
            sql = f"SELECT {_BUDGET_COLUMNS} FROM budgets WHERE name NOT LIKE '%~%' ORDER BY name"
            rows = conn.execute(sql)  # not the deleted ones (budget_admin.ARCHIVED)
            return [self._status(conn, _budget_from_row(row), now) for row in rows.fetchall()]

        return self._read(operation)
