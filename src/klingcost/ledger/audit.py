"""The audit: check the ledger's storage, then recompute every running balance and rollup
from the entries and report each difference (:class:`~klingcost.ledger.types.Discrepancy`);
rebuild the rollups when one is off."""

from __future__ import annotations

from typing import Any

from klingcost.ledger import rollups
from klingcost.ledger._base import LedgerBase
from klingcost.ledger.db import DB
from klingcost.ledger.introspect import schema_differences
from klingcost.ledger.types import Discrepancy


class AuditPart(LedgerBase):
    """The audit: :meth:`check`, :meth:`rebuild_rollups`."""

    def check(self, *, full: bool = False) -> list[Discrepancy]:
        """Check the file, then recompute every running balance and rollup from the entries;
        return each difference.

        SQLite's own check runs first (``PRAGMA quick_check``; ``integrity_check`` when
        ``full``): a damaged file is reported by what SQLite says (``damaged=True``), and its
        balances are not recomputed, since nothing read from it can be trusted. ``full`` also
        compares the schema with its spec (:mod:`klingcost.ledger.schema`): a table, column,
        type, key, index, view or trigger added, dropped or changed by hand is named.
        """
        with self.reading():
            damage = self.backend.damage(full=full)
        if damage:
            return [Discrepancy(message, damaged=True) for message in damage]
        dialect = self.dialect
        found = self._read(lambda conn: _check(conn, dialect))
        if full:  # not always: reading a file's schema loads sqlite-utils (and click)
            found += [Discrepancy(f"schema: {d}") for d in schema_differences(self.backend)]
        return found

    def rebuild_rollups(self) -> None:
        """Recompute the report rollups from the holds (a repair after ``check`` found one off)."""
        dialect = self.dialect
        self._write(lambda conn: rollups.rebuild_rollups(conn, dialect))


_RECOMPUTE_SQL = """
WITH recomputed AS (
    SELECT e.budget, e.period_key,
        SUM(CASE WHEN h.state = 'settled' THEN COALESCE(e.charged, 0) ELSE 0 END) AS posted,
        SUM(CASE WHEN h.state IN ('held', 'submitted', 'unknown') THEN e.reserved ELSE 0 END)
            AS held
    FROM hold_entries AS e JOIN holds AS h ON h.id = e.hold_id
    GROUP BY e.budget, e.period_key
)
SELECT bal.budget, bal.period_key, bal.posted, bal.held, r.posted, r.held
FROM balances AS bal LEFT JOIN recomputed AS r
    ON r.budget = bal.budget AND r.period_key = bal.period_key
UNION ALL
SELECT r.budget, r.period_key, NULL, NULL, r.posted, r.held
FROM recomputed AS r LEFT JOIN balances AS bal
    ON r.budget = bal.budget AND r.period_key = bal.period_key
WHERE bal.budget IS NULL
ORDER BY 1, 2
"""


def _check(conn: DB, dialect: str = "sqlite") -> list[Discrepancy]:
    found: list[Discrepancy] = []
    for budget, pkey, posted, held, want_posted, want_held in conn.execute(_RECOMPUTE_SQL):
        if (posted or 0) != (want_posted or 0):
            found.append(Discrepancy("posted differs", budget, pkey, posted, want_posted or 0))
        if (held or 0) != (want_held or 0):
            found.append(Discrepancy("held differs", budget, pkey, held, want_held or 0))
    for (hold_id,) in conn.execute(
        "SELECT id FROM holds AS h WHERE NOT EXISTS"
        " (SELECT 1 FROM hold_entries AS e WHERE e.hold_id = h.id AND e.budget = h.team)"
    ):
        found.append(Discrepancy("hold has no entry for its own team", hold_id=hold_id))
    for hold_id, budget in conn.execute(
        "SELECT e.hold_id, e.budget FROM hold_entries AS e JOIN holds AS h ON h.id = e.hold_id"
        " WHERE h.state = 'settled' AND e.charged IS NULL"
    ):
        found.append(Discrepancy("settled hold has no charge", budget, hold_id=hold_id))
    for (hold_id,) in conn.execute(
        "SELECT h.id FROM holds AS h LEFT JOIN tasks AS t ON t.hold_id = h.id"
        " WHERE h.state = 'submitted' AND t.task_id IS NULL"
    ):
        found.append(Discrepancy("submitted hold has no task", hold_id=hold_id))
    for (hold_id,) in conn.execute(
        "SELECT h.id FROM holds AS h LEFT JOIN tasks AS t ON t.hold_id = h.id"
        " WHERE h.task_id IS NOT t.task_id"
    ):
        found.append(Discrepancy("hold's task_id differs from the tasks table", hold_id=hold_id))
    found += _check_rollups(conn, dialect)
    return found


def _check_rollups(conn: DB, dialect: str) -> list[Discrepancy]:
    """Every rollup row that differs from the holds, once per (table, key)."""
    found: list[Discrepancy] = []
    for name, (key, sums, maxes) in rollups.ROLLUPS.items():
        columns = ", ".join((*key, *sums, *maxes))
        recomputed = rollups.recompute_sql(name, dialect)
        stored = f"SELECT {columns} FROM {name} WHERE NOT ({' = 0 AND '.join((*sums, *maxes))} = 0)"
        fresh = f"SELECT * FROM ({recomputed}) AS fresh"
        seen: set[tuple[Any, ...]] = set()
        for side, sql in (
            ("recorded", f"{stored} EXCEPT {fresh}"),
            ("expected", f"{fresh} EXCEPT {stored}"),
        ):
            for row in conn.execute(sql):
                where = tuple(row[: len(key)])
                if where in seen:
                    continue
                seen.add(where)
                label = " ".join(f"{c}={v!r}" for c, v in zip(key, where, strict=True))
                found.append(Discrepancy(f"{name} differs from the holds ({side}) at {label}"))
    return found
