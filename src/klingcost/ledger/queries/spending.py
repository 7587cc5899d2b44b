"""Spending: the sums of the holds per group (rollups for closed holds, the open holds
through their index), and the budget tree."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Final, NamedTuple

from klingcost.ledger.queries._window import window

if TYPE_CHECKING:
    from klingcost.ledger import Ledger


class GroupSums(NamedTuple):
    """The sums of one group of holds: counts, amounts in minor units of the currency, units
    in milli-units of the pack."""

    settled: int
    open: int
    voided: int
    settled_estimate_minor: int
    charged_minor: int
    held_minor: int
    charged_units_milli: int
    held_units_milli: int


_CLOSED_SUMS = (
    "SUM(n_settled), 0, SUM(n_voided), SUM(settled_est_minor), SUM(charged_minor), 0,"
    " SUM(charged_units), 0"
)
_OPEN_SUMS = "0, COUNT(*), 0, 0, 0, SUM(est_cost_minor), 0, SUM(est_units_milli)"
_OPEN_COLUMNS = {
    "day": "{day}",
    "team": "team",
    "endpoint": "COALESCE(endpoint, '')",
    "model": "COALESCE(model, '')",
    "mode": "COALESCE(mode, '')",
    "pack": "pack",
    "currency": "currency",
}
_EMPTY: Final = GroupSums(0, 0, 0, 0, 0, 0, 0, 0)


def grouped_sums(
    ledger: Ledger,
    columns: Sequence[str],
    *,
    since: date | None = None,
    until: date | None = None,
    team: str | None = None,
) -> dict[tuple[str, ...], GroupSums]:
    """Sums per group of ``columns`` (any of day, month, team, endpoint, model, mode, pack,
    currency), grouped by the database: from the rollups for closed holds, and from the open
    holds (few) through their index. ``since`` and ``until`` are inclusive UTC days."""
    day = ledger.backend.day("reserved_at")  # the UTC day, in the ledger's SQL
    closed_cols = [("substr(day, 1, 7)" if c == "month" else c) for c in columns]
    open_cols = [
        (f"substr({day}, 1, 7)" if c == "month" else _OPEN_COLUMNS[c].format(day=day))
        for c in columns
    ]
    group = ", ".join(str(i + 1) for i in range(len(columns)))
    group_by = f" GROUP BY {group}" if columns else ""

    def where(column: str) -> tuple[str, list[str]]:
        clauses, params = window(column, since, until)
        if team is not None:
            clauses.append("team = ?")
            params.append(team)
        return "".join(f" AND {c}" for c in clauses), params

    closed_where, params = where("day")
    closed_sql = (
        f"SELECT {', '.join([*closed_cols, _CLOSED_SUMS])} FROM rollup_daily"
        f" WHERE TRUE{closed_where}{group_by}"
    )
    open_where, open_params = where(day)
    open_sql = (
        f"SELECT {', '.join([*open_cols, _OPEN_SUMS])} FROM holds"
        f" WHERE state IN ('held', 'submitted', 'unknown'){open_where}{group_by}"
    )
    width = len(columns)
    merged: dict[tuple[str, ...], GroupSums] = {}
    with ledger.reading():
        for row in ledger.execute(closed_sql, params):
            if row[width] is not None:  # a group with no rows at all (no columns) is skipped
                merged[tuple(row[:width])] = GroupSums(*row[width:])
        for row in ledger.execute(open_sql, open_params):
            found = GroupSums(*row[width:])
            if found.open:
                key = tuple(row[:width])
                sums = merged.get(key, _EMPTY)
                merged[key] = sums._replace(
                    open=sums.open + found.open,
                    held_minor=sums.held_minor + (found.held_minor or 0),
                    held_units_milli=sums.held_units_milli + (found.held_units_milli or 0),
                )
    return merged


class BudgetNode(NamedTuple):
    """A budget's name and its parent's (None at the top)."""

    name: str
    parent: str | None


def budget_parents(ledger: Ledger) -> list[BudgetNode]:
    """Every budget with its parent, by name."""
    with ledger.reading():
        rows = ledger.execute("SELECT name, parent FROM budgets ORDER BY name").fetchall()
    return [BudgetNode(name, parent) for name, parent in rows]
