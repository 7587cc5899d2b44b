"""Reserve: place a hold on a team and every budget above it, or refuse, in one transaction.

The hot path of every submission (tuned for issue 14): SQLite reads the sheet policy, the
team's path and its balances in one statement (:data:`_LEAN_PATH_SQL`) and writes the hold
without ``RETURNING``; PostgreSQL locks the path's budget rows by name first
(:meth:`ReservePart._locked_path`), so that no two transactions wait on each other. The
rows it reads are unpacked into named variables, never wrapped per row.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, cast

from klingcost.budgets import (
    CURRENCY_EXPONENTS,
    Alert,
    Budget,
    HoldAmounts,
    available,
    counted,
    counts,
    crosses_soft,
    fits,
)
from klingcost.errors import (
    BudgetCannotCount,
    BudgetExceeded,
    BudgetNotFound,
    ConcurrencyExceeded,
    HoldStateError,
    LedgerValueError,
    SheetMismatchError,
)
from klingcost.jobclass import COLUMNS, columns_of_meta
from klingcost.ledger.db import DB
from klingcost.ledger.holds import HoldsPart, _log_alerts
from klingcost.ledger.published import LOCAL_OVERLAYS, PublishedPart
from klingcost.ledger.rows import (
    _BUDGET_COLUMNS,
    _HOLD_SELECT,
    NAME,
    PARENT,
    PERIOD,
    TZ,
    _first,
    _hold_from_row,
    _soft,
)
from klingcost.ledger.types import Hold, MetaValue, _meta_json
from klingcost.money import format_minor
from klingcost.periods import period_key, window_for

if TYPE_CHECKING:
    import sqlite3

#: A voided hold's key becomes ``KEY#voided-ID``; no caller's key may contain this, so the
#: renamed key can never collide with a live one.
RELEASED_KEY: Final = "#voided-"
#: PostgreSQL: the names on a team's path in one round trip, then their rows locked (always
#: by name, so that no two transactions wait on each other) before any balance is read.
_PATH_NAMES_SQL = (
    'WITH RECURSIVE up(name, depth) AS (SELECT CAST(? AS TEXT) COLLATE "C", 0 UNION ALL'
    " SELECT b.parent, up.depth + 1 FROM budgets AS b JOIN up ON b.name = up.name"
    " WHERE b.parent IS NOT NULL AND up.depth < 64) SELECT name FROM up"
)
_LOCK_BUDGETS_SQL = f"SELECT {_BUDGET_COLUMNS} FROM budgets WHERE name = ANY(?) ORDER BY name"
_BALANCES_SQL = (
    "SELECT budget, period_key, posted, held FROM balances"
    " WHERE budget = ANY(?) AND period_key = ANY(?)"
)
_BALANCE_SQL = "SELECT posted, held FROM balances WHERE budget = ? AND period_key = ?"

# The job class is kept in columns as well as in ``meta``: the rollups and reports read them.
_INSERT_HOLD_SQL = (
    "INSERT INTO holds (idempotency_key, team, state, est_units_milli, pack, est_cost_minor,"
    " currency, meta, reserved_at, updated_at, sheet_sha256, key_id,"
    f" {', '.join(COLUMNS)})"
    f" VALUES (?, ?, 'held', ?, ?, ?, ?, ?, ?, ?, ?, ?{', ?' * len(COLUMNS)})"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
)
_INSERT_ENTRY_SQL = (
    "INSERT INTO hold_entries (hold_id, budget, depth, period_key, reserved) VALUES (?, ?, ?, ?, ?)"
)
_HOLD_BALANCE_SQL = (
    "INSERT INTO balances (budget, period_key, posted, held) VALUES (?, ?, 0, ?)"
    " ON CONFLICT (budget, period_key) DO UPDATE SET held = balances.held + excluded.held"
)

#: SQLite's reserve reads everything it decides on in one statement: the sheet policy (the
#: first row, depth -1), then the team's path up to its root, each budget with its balance in
#: any of the period keys the caller names (``IN`` over the keys of the (period, tz) pairs this
#: process has met; a row whose key is not among them is read on its own). The policy is read
#: in the same transaction as the hold is written, so a sheet published a moment ago by any
#: process is seen by the next reserve. ``{open_for_key}`` is NULL, or the count of a proxy
#: key's open holds when its ``--max-concurrent`` is checked (:data:`_OPEN_FOR_KEY_SQL`).
_LEAN_PATH_SQL = (
    "WITH RECURSIVE up(name, depth) AS (SELECT ?, 0 UNION ALL"
    " SELECT b.parent, up.depth + 1 FROM budgets AS b JOIN up ON b.name = up.name"
    " WHERE b.parent IS NOT NULL AND up.depth < 63)"
    " SELECT -1, (SELECT sha256 FROM pricing_sheets ORDER BY version DESC LIMIT 1),"
    " (SELECT version FROM pricing_sheets ORDER BY version DESC LIMIT 1),"
    f" (SELECT value FROM ledger_settings WHERE name = '{LOCAL_OVERLAYS}'),"
    " {open_for_key}, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
    " UNION ALL SELECT up.depth, b.name, b.unit, b.pack, b.limit_minor, b.period, b.tz, b.soft,"
    " b.exponent, bal.period_key, bal.posted, bal.held"
    " FROM up JOIN budgets AS b ON b.name = up.name LEFT JOIN balances AS bal"
    " ON bal.budget = b.name AND bal.period_key IN ({keys})"
)
_OPEN_FOR_KEY_SQL = (
    "(SELECT count(*) FROM holds WHERE key_id = ?"
    " AND (state = 'held' OR state = 'submitted' OR state = 'unknown'))"
)
#: PostgreSQL: the key's row locked, so that reserves under one key count its open holds one
#: at a time (the count is a later statement, so it sees what the one before committed).
_LOCK_KEY_SQL = "SELECT team FROM api_keys WHERE id = ?"
#: The hold without ``RETURNING`` (SQLite opens an ephemeral table for it): the row count
#: says whether it was inserted, ``lastrowid`` its id.
_INSERT_HOLD_LEAN_SQL = _INSERT_HOLD_SQL.removesuffix(" RETURNING id")


class ReservePart(PublishedPart, HoldsPart):
    """Reserve: :meth:`reserve`, the hold that counts against a team's budgets."""

    def _locked_path(self, conn: DB, team: str) -> list[tuple[Any, ...]]:
        """PostgreSQL: ``team``'s path with its budget rows locked (by name). The rows come
        from the locking read, so they are current; a parent that changed meanwhile is locked
        too before anything is decided."""
        names = {name for (name,) in conn.execute(_PATH_NAMES_SQL, (team,))}
        rows: dict[str, tuple[Any, ...]] = {}
        while True:
            wanted = sorted(names - set(rows))
            for row in conn.execute(_LOCK_BUDGETS_SQL + self._row_lock, (wanted,)):
                rows[row[NAME]] = tuple(row)
            path: list[tuple[Any, ...]] = []
            name: str | None = team
            while name is not None and name in rows and len(path) < 64:
                path.append(rows[name])
                name = rows[name][PARENT]
            if name is None or name in names or len(path) >= 64:
                return path  # complete (or ``name`` has no budget: the team's path is empty)
            names.add(name)  # a parent set since the path was read: lock it as well

    def reserve(
        self,
        team: str,
        amounts: HoldAmounts,
        *,
        key: str | None = None,
        meta: Mapping[str, MetaValue] | None = None,
        sheet_sha256: str | None = None,
        key_id: str | None = None,
        max_open_for_key: int | None = None,
    ) -> Hold:
        """Place a hold for ``amounts`` on ``team`` and every budget above it, or refuse.

        ``key`` makes it idempotent: reserving with a key already used returns that hold and
        charges nothing more (another team or amount under the same key is a HoldStateError).
        A voided hold frees its key, so the same key can be reserved (and sent) again.
        Raises BudgetExceeded, with nothing written, when any budget on the path lacks room
        (a budget charged past its limit has none until it is back under), and
        BudgetCannotCount when a budget on the path cannot count the job at all (a units
        budget of the other pack): a budget that counts nothing would guard nothing.

        ``sheet_sha256`` names the price sheet ``amounts`` were priced with
        (:func:`klingcost.sheet.sheet_hash`); it is kept on the hold. Once a sheet is
        published in the ledger (:meth:`publish_sheet`), a hold priced with another sheet, or
        with none named, is refused (SheetMismatchError) unless the ledger allows local
        overlays (:meth:`allow_local_overlays`).

        ``key_id`` names the proxy key placing the hold (kept on it). With ``max_open_for_key``
        too, the key's open holds are counted in the same write transaction (SQLite: in the
        path's own read; PostgreSQL: after locking the key's row), and the hold is refused
        with ConcurrencyExceeded, nothing written, when there are already that many.
        """
        if not isinstance(amounts, HoldAmounts):
            raise TypeError(f"amounts must be HoldAmounts (given {type(amounts).__name__})")
        for name, value in (("team", team), ("key", key), ("key_id", key_id)):
            if value is not None and not isinstance(value, str):
                raise LedgerValueError(f"{name} must be a string (given {value!r})")
        if key is not None and RELEASED_KEY in key:
            raise HoldStateError(
                f"an idempotency key may not contain {RELEASED_KEY!r} (given {key!r}): the "
                "ledger renames a voided hold's key so, to free it for a retry"
            )
        if max_open_for_key is not None and (
            key_id is None
            or isinstance(max_open_for_key, bool)
            or not isinstance(max_open_for_key, int)
        ):
            raise LedgerValueError(
                f"max_open_for_key must be an int, with a key_id (given {max_open_for_key!r})"
            )
        count_key = key_id if max_open_for_key is not None else None
        meta_json = _meta_json(meta)
        job_class = columns_of_meta(meta)
        hold_key = key if key is not None else uuid.uuid4().hex
        now = self.clock.now()
        at = now.isoformat()
        keys: dict[tuple[str, str], str] = {}  # (period, tz) -> its key at ``now``

        def reserved_before(conn: DB) -> Hold | None:
            """The hold already under ``key``, checked as the same reservation; None when the
            key is free, or was freed just now by a voided hold (see :meth:`_release_key`)."""
            if key is None:
                return None
            found = conn.execute(f"{_HOLD_SELECT} WHERE h.idempotency_key = ?", (key,)).fetchone()
            if found is None:
                return None
            earlier = _hold_from_row(found)
            if earlier.state == "voided":
                self._release_key(conn, at, earlier)
                return None
            return _same_reservation(earlier, team, amounts)

        # A used key is looked up only when the insert says so (or before refusing): the common
        # case, a new key, costs no extra read. Either way nothing more is held under it.
        def operation(conn: DB) -> Hold:
            a = amounts
            open_for_key: int | None = None
            if self._locks_rows:
                self._check_sheet(conn, sheet_sha256)
                path = self._locked_path(conn, team)
                balances = self._balances(conn, path, now) if path else {}
                if count_key is not None:
                    conn.execute(_LOCK_KEY_SQL + self._row_lock, (count_key,)).fetchall()
                    (open_for_key,) = conn.execute(_OPEN_FOR_KEY_SQL, (count_key,)).fetchone()
            else:
                path, balances, open_for_key = self._lean_path(
                    conn, team, now, sheet_sha256, keys, count_key
                )
            if not path:
                if (earlier := reserved_before(conn)) is not None:
                    return earlier
                raise BudgetNotFound(team=team)
            if count_key is not None and max_open_for_key is not None:
                opened = int(open_for_key or 0)
                if opened >= max_open_for_key:
                    if (earlier := reserved_before(conn)) is not None:
                        return earlier
                    raise ConcurrencyExceeded(
                        key_id=count_key, team=team, limit=max_open_for_key, open_holds=opened
                    )
            entries, alerts = [], []
            for depth, (name, unit, pack, limit, period, tz, soft, exponent, _) in enumerate(path):
                if not counts(unit, pack, amounts):
                    if (earlier := reserved_before(conn)) is not None:
                        return earlier
                    raise BudgetCannotCount(
                        budget=name,
                        team=team,
                        counts=f"Kling units of the {pack} pack",
                        pack=amounts.pack,
                        currency=amounts.currency,
                    )
                amount = counted(unit, pack, amounts, name, exponent)
                pkey = keys[period, tz] if (period, tz) in keys else period_key(period, now, tz)
                posted, held = balances.get((name, pkey), (0, 0))
                if not fits(limit, posted, held, amount):
                    if (earlier := reserved_before(conn)) is not None:
                        return earlier
                    budget = Budget(
                        name, limit, unit, period, None, _soft(soft), tz, pack, exponent
                    )
                    raise _exceeded(budget, team, amount, posted, held, now)
                used = posted + held
                if amount and crosses_soft(limit, _soft(soft), used, used + amount):
                    alerts.append(Alert("soft", name, pkey, used + amount, limit))
                entries.append((name, depth, pkey, amount))
            row = (hold_key, team, a.units_milli, a.pack, a.cost_minor, a.currency, meta_json)
            for _ in range(3):  # a voided hold under the key frees it: then insert again
                values = (*row, at, at, sheet_sha256, key_id, *job_class)
                if self._locks_rows:
                    inserted = conn.execute(_INSERT_HOLD_SQL, values).fetchone()
                else:  # no RETURNING: the row count and lastrowid say the same, cheaper
                    cursor = cast("sqlite3.Cursor", conn.execute(_INSERT_HOLD_LEAN_SQL, values))
                    inserted = (cursor.lastrowid,) if cursor.rowcount == 1 else None
                if inserted is not None:
                    break
                if (earlier := reserved_before(conn)) is not None:
                    return earlier
            else:
                raise HoldStateError(f"key {hold_key!r} stays taken by a concurrent reserve")
            (hold_id,) = inserted
            conn.executemany(_INSERT_ENTRY_SQL, [(hold_id, *entry) for entry in entries])
            conn.executemany(
                _HOLD_BALANCE_SQL, [(name, pkey, amount) for name, _, pkey, amount in entries]
            )
            self._event(
                conn,
                at,
                "reserve",
                hold_id,
                team,
                key=hold_key,
                pack=amounts.pack,
                units_milli=amounts.units_milli,
                cost_minor=amounts.cost_minor,
                currency=amounts.currency,
                sheet_sha256=sheet_sha256,
                **({"key_id": key_id} if key_id is not None else {}),
            )
            self._record_alerts(conn, at, hold_id, alerts)
            return Hold(
                hold_id,
                hold_key,
                team,
                "held",
                amounts,
                now,
                now,
                meta=dict(meta) if meta else {},  # what _meta_json stored, without a parse
                alerts=tuple(alerts),
                sheet_sha256=sheet_sha256,
                key_id=key_id,
            )

        hold = self._write(operation)
        _log_alerts(hold)
        return hold

    def _lean_path(
        self,
        conn: DB,
        team: str,
        now: datetime,
        given: str | None,
        keys: dict[tuple[str, str], str],
        count_key: str | None = None,
    ) -> tuple[list[tuple[Any, ...]], dict[tuple[str, str], tuple[int, int]], int | None]:
        """SQLite, inside a reserve: the sheet check, ``team``'s path and its balances at
        ``now``, and the open holds of proxy key ``count_key`` (when given), in one statement
        (:data:`_LEAN_PATH_SQL`). Fills ``keys`` with the period key of each (period, tz) on
        the path."""
        seen = self._period_zones
        for period, tz in seen:
            keys[period, tz] = period_key(period, now, tz)  # type: ignore[arg-type]
        wanted = sorted(set(keys.values())) or ["all"]
        counted = "NULL" if count_key is None else _OPEN_FOR_KEY_SQL
        sql = _LEAN_PATH_SQL.format(keys=", ".join("?" * len(wanted)), open_for_key=counted)
        params = (team, *(() if count_key is None else (count_key,)), *wanted)
        rows = sorted(conn.execute(sql, params).fetchall(), key=_first)  # by depth
        _, published, version, overlays, open_for_key = rows[0][:5]
        if not (published is None or published == given or overlays == "allow"):
            raise SheetMismatchError(
                ledger=str(self.path), published=published, version=version, given=given
            )
        # Plain tuples in BudgetRow's order (no parent: the path is complete), as
        # _locked_path's: no Python work per row.
        path: list[tuple[Any, ...]] = []
        balances: dict[tuple[str, str], tuple[int, int]] = {}
        for _, name, unit, pack, limit, period, tz, soft, exponent, pkey, posted, held in rows[1:]:
            if not path or path[-1][0] != name:  # one row per budget and matching key
                path.append((name, unit, pack, limit, period, tz, soft, exponent, None))
                if (period, tz) not in keys:  # a pair not asked for: read its balance alone
                    keys[period, tz] = key = period_key(period, now, tz)
                    if len(seen) < 32:
                        seen.add((period, tz))
                    found = conn.execute(_BALANCE_SQL, (name, key)).fetchone()
                    if found is not None:
                        balances[name, key] = (found[0], found[1])
            if pkey is not None:
                balances[name, pkey] = (posted, held)
        return path, balances, open_for_key

    def _release_key(self, conn: DB, at: str, voided: Hold) -> None:
        """Free a voided hold's idempotency key, renaming it ``KEY#voided-ID``.

        Nothing was charged under a voided hold (the API refused the submission, or a person
        said so), so a retry with the same key must be able to submit again rather than be
        told it already did. The hold keeps its record; the ``reserve`` event keeps the key.
        """
        renamed = f"{voided.key}{RELEASED_KEY}{voided.id}"
        cursor = conn.execute(
            "UPDATE holds SET idempotency_key = ? WHERE id = ? AND idempotency_key = ?",
            (renamed, voided.id, voided.key),
        )
        if cursor.rowcount == 1:
            self._event(
                conn, at, "release_key", voided.id, voided.team, key=voided.key, renamed=renamed
            )

    @staticmethod
    def _balances(
        conn: DB, path: list[tuple[Any, ...]], now: datetime
    ) -> dict[tuple[str, str], tuple[int, int]]:
        """The path's balances in its periods at ``now``, in one round trip (PostgreSQL)."""
        keys = {(row[NAME], period_key(row[PERIOD], now, row[TZ])) for row in path}
        names = sorted({name for name, _ in keys})
        pkeys = sorted({pkey for _, pkey in keys})
        return {
            (budget, pkey): (posted, held)
            for budget, pkey, posted, held in conn.execute(_BALANCES_SQL, (names, pkeys))
            if (budget, pkey) in keys
        }


def _same_reservation(existing: Hold, team: str, amounts: HoldAmounts) -> Hold:
    if existing.team != team or existing.estimate != amounts:
        raise HoldStateError(
            f"key {existing.key!r} already names hold {existing.id} of {existing.team} "
            f"({_amounts_text(existing.estimate)}), and this reservation is "
            f"{_amounts_text(amounts)} on {team}: give another key for another job"
        )
    return existing


def _amounts_text(amounts: HoldAmounts) -> str:
    """A hold's amounts for people: ``7 video units, 105000 credits``."""
    exponent = CURRENCY_EXPONENTS.get(amounts.currency, 0)
    units = f"{format_minor(amounts.units_milli, 3)} {amounts.pack} units"
    return f"{units}, {format_minor(amounts.cost_minor, exponent)} {amounts.currency}"


def _exceeded(
    budget: Budget, team: str, amount: int, posted: int, held: int, now: datetime
) -> BudgetExceeded:
    return BudgetExceeded(
        team=budget.team,
        needed=amount,
        available=max(0, available(budget.limit, posted, held)),
        limit=budget.limit,
        unit=budget.unit_label,
        period=budget.period,
        window=window_for(budget.period, now, budget.tz).describe(),
        requested_by=team,
        used=posted + held,
    )
