"""The ledger: budgets, holds and an append-only event log, in one SQLite file or PostgreSQL.

Spending is two-phase, like TigerBeetle's pending transfers::

    hold = ledger.reserve("team-a", HoldAmounts(4000, "video", 60000, "credits"), key=job_id)
    ledger.attach(hold.id, task_id)                  # the API accepted the job
    ledger.settle(hold.id, units_milli=4000, cost_minor=60000)   # what it charged
    ledger.void(hold.id, reason="task failed")       # or: nothing was charged

``reserve`` checks every budget on the team's path (team -> parent -> ...) and writes the hold in
one transaction (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: the path's budget rows locked first),
so concurrent workers in any number of processes, or on any number of machines sharing a
PostgreSQL ledger, can never overspend. Running balances per budget and period are updated in
the same transaction, so a check costs the same with a million entries as with ten;
:meth:`Ledger.check` recomputes them.

A hold whose outcome is unknown (``mark_unknown``: a crash or a timeout after sending) keeps
counting against its budgets until someone settles or voids it. Nothing releases it silently.

Where the ledger lives: a file path (SQLite, the embedded default) or a ``postgresql://`` URL
(psycopg 3, ``pip install 'klingcost[postgres]'``); :mod:`klingcost.ledger.backends` holds what
differs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from fractions import Fraction
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast

from klingcost import _outbox
from klingcost._testpoints import reach
from klingcost.budget_admin import ARCHIVED, BudgetChange, DeletedBudget, archived_name
from klingcost.budgets import (
    CURRENCY_EXPONENTS,
    DEFAULT_SOFT,
    MAX_MINOR,
    UNITS,
    Alert,
    Budget,
    BudgetStatus,
    HoldAmounts,
    Pack,
    available,
    counted,
    counts,
    crosses_soft,
    exponent_for,
    fits,
    make_budget,
)
from klingcost.clock import Clock, SystemClock
from klingcost.deduction import DEDUCTION_FLAGS, parse_deduction
from klingcost.errors import (
    BudgetCannotCount,
    BudgetConfigError,
    BudgetExceeded,
    BudgetNotFound,
    ConcurrencyExceeded,
    HoldNotFound,
    HoldStateError,
    InvalidAmountError,
    KeyNotFound,
    LedgerError,
    LedgerNotFound,
    LedgerSetupError,
    LedgerValueError,
    SheetMismatchError,
)
from klingcost.home import klingcost_home
from klingcost.keys import ApiKey
from klingcost.ledger import migrations, rollups, schema
from klingcost.ledger.backends import open_backend
from klingcost.ledger.checkpointer import CAP_PAGES, INLINE_PAGES, Checkpointer
from klingcost.ledger.db import DB, Backend, Cursor, Dialect
from klingcost.ledger.pgurl import is_postgres_url
from klingcost.money import exact, format_amount, format_minor
from klingcost.periods import Period, period_key, window_for

if TYPE_CHECKING:
    import sqlite3

    from klingcost.forecast import Forecast
    from klingcost.sheet import PriceSheet

logger = logging.getLogger("klingcost.ledger")

HoldState = Literal["held", "submitted", "unknown", "settled", "voided"]
HOLD_STATES: Final[tuple[HoldState, ...]] = ("held", "submitted", "unknown", "settled", "voided")
OPEN_STATES: Final[frozenset[str]] = frozenset({"held", "submitted", "unknown"})
MetaValue = str | int | None
T = TypeVar("T")


def default_ledger_path(environ: Mapping[str, str] | None = None) -> Path | str:
    """``KLINGCOST_LEDGER``, else ``$KLINGCOST_HOME/ledger.db``, else ``~/.klingcost/ledger.db``.

    A ``postgresql://`` URL in ``KLINGCOST_LEDGER`` is returned as it is (a str).
    """
    env = os.environ if environ is None else environ
    if env.get("KLINGCOST_LEDGER"):
        if is_postgres_url(env["KLINGCOST_LEDGER"]):
            return env["KLINGCOST_LEDGER"]
        return Path(env["KLINGCOST_LEDGER"]).expanduser()
    return klingcost_home(env) / "ledger.db"


def prepare_home(file: Path) -> None:
    """Make the default ledger's folder (``$KLINGCOST_HOME`` or ``~/.klingcost``) before a new
    ledger is made in it, or say in one line why it cannot be (LedgerSetupError, exit 2)."""
    if file.exists():
        return
    folder = file.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LedgerSetupError(
            f"cannot create the klingcost home {folder}: {exc.strerror or exc}; set "
            "KLINGCOST_HOME to a folder you can write, or give --ledger PATH"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LedgerSetupError(
            f"cannot write a new ledger in the klingcost home {folder}: permission denied; "
            "set KLINGCOST_HOME to a folder you can write, or give --ledger PATH"
        )


@dataclass(frozen=True, slots=True)
class Hold:
    id: int
    key: str
    team: str
    state: HoldState
    estimate: HoldAmounts
    reserved_at: datetime
    updated_at: datetime
    task_id: str | None = None
    units_milli: int | None = None
    cost_minor: int | None = None
    variance_units_milli: int | None = None
    variance_cost_minor: int | None = None
    raw_deduction: str | None = None
    reason: str | None = None
    meta: Mapping[str, MetaValue] = field(default_factory=dict)
    alerts: tuple[Alert, ...] = ()
    #: At settlement: how ``raw_deduction`` parsed (``ok``, ``absent``, ``zero``, ``malformed``,
    #: ``negative`` or ``absurd``) and the task's final status, when the settler said.
    deduction_flag: str | None = None
    task_status: str | None = None
    #: The sha256 of the price sheet the hold was priced with (see :meth:`Ledger.reserve`).
    sheet_sha256: str | None = None
    #: The proxy key that placed it (:mod:`klingcost.keys`), None for any other caller.
    key_id: str | None = None

    @property
    def is_open(self) -> bool:
        """Still counting against its budgets as held: held, submitted or unknown."""
        return self.state in OPEN_STATES


@dataclass(frozen=True, slots=True)
class PublishedSheet:
    """A version of the price sheet a ledger publishes (``klingcost pricing publish``)."""

    version: int
    sha256: str
    origin: str
    published_at: str
    #: The sheet as canonical JSON (:func:`klingcost.sheet.canonical_text`).
    canonical: str


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """A running balance (or a hold) that does not agree with the entries."""

    what: str
    budget: str | None = None
    period_key: str | None = None
    recorded: int | None = None
    expected: int | None = None
    hold_id: int | None = None
    #: Found by the database's own check of its storage (SQLite's quick_check): the file is
    #: damaged, and nothing read from it can be trusted.
    damaged: bool = False

    def __str__(self) -> str:
        where = " ".join(
            part
            for part in (
                f"budget {self.budget!r}" if self.budget else "",
                f"period {self.period_key}" if self.period_key else "",
                f"hold {self.hold_id}" if self.hold_id is not None else "",
            )
            if part
        )
        numbers = (
            f": recorded {self.recorded}, entries say {self.expected}"
            if self.recorded is not None or self.expected is not None
            else ""
        )
        return f"{self.what} {where}{numbers}".rstrip()


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    at: datetime
    kind: str
    hold_id: int | None
    team: str | None
    data: Mapping[str, Any]


@lru_cache(maxsize=256)
def _soft(text: str) -> Fraction:
    return Fraction(text)


def _meta_json(meta: Mapping[str, MetaValue] | None) -> str:
    if not meta:
        return "{}"
    for name, value in meta.items():
        if not isinstance(name, str) or not (
            value is None or (isinstance(value, str | int) and not isinstance(value, bool))
        ):
            raise InvalidAmountError(
                f"hold meta must map names to str, int or None (given {name!r}: {value!r})"
            )
    return json.dumps(dict(meta), separators=(",", ":"), sort_keys=True)


def _int_amount(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmountError(f"{name} must be an int in minor units (given {value!r})")
    if value < 0:
        raise InvalidAmountError(f"{name} cannot be negative (given {value})")
    if value > MAX_MINOR:
        raise InvalidAmountError(f"{name} is past what the ledger holds, 2**63 - 1 (given {value})")
    return value


# ``holds.task_id`` copies ``tasks.task_id``; both are written by ``attach`` alone, in one
# transaction, so a hold reads without a join (and ``UPDATE ... RETURNING`` gives the same row).
_HOLD_ROW = (
    "id, idempotency_key, team, state, pack, currency, est_units_milli, est_cost_minor,"
    " units_milli, cost_minor, variance_units_milli, variance_cost_minor, raw_deduction,"
    " reason, meta, reserved_at, updated_at, task_id, deduction_flag, task_status, sheet_sha256,"
    " key_id"
)
_HOLD_COLUMNS = ", ".join(f"h.{name.strip()}" for name in _HOLD_ROW.split(","))
_HOLD_SELECT = f"SELECT {_HOLD_COLUMNS} FROM holds AS h"
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
_BUDGET_ROW_SQL = (
    "SELECT name, unit, pack, limit_minor, period, tz, soft, exponent, parent"
    " FROM budgets WHERE name = ?"
)
#: PostgreSQL: the names on a team's path in one round trip, then their rows locked (always
#: by name, so that no two transactions wait on each other) before any balance is read.
_PATH_NAMES_SQL = (
    'WITH RECURSIVE up(name, depth) AS (SELECT CAST(? AS TEXT) COLLATE "C", 0 UNION ALL'
    " SELECT b.parent, up.depth + 1 FROM budgets AS b JOIN up ON b.name = up.name"
    " WHERE b.parent IS NOT NULL AND up.depth < 64) SELECT name FROM up"
)
_LOCK_BUDGETS_SQL = (
    "SELECT name, unit, pack, limit_minor, period, tz, soft, exponent, parent"
    " FROM budgets WHERE name = ANY(?) ORDER BY name"
)
_BALANCES_SQL = (
    "SELECT budget, period_key, posted, held FROM balances"
    " WHERE budget = ANY(?) AND period_key = ANY(?)"
)
_LOCK_ENTRY_BUDGETS_SQL = (
    "SELECT name FROM budgets WHERE name IN (SELECT budget FROM hold_entries WHERE hold_id = ?)"
    " ORDER BY name"
)
_BALANCE_SQL = "SELECT posted, held FROM balances WHERE budget = ? AND period_key = ?"
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
_BUDGET_COLUMNS = "name, limit_minor, unit, period, parent, soft, tz, pack, exponent"
# The job class is kept in columns as well as in ``meta``: the rollups and reports read them.
_INSERT_HOLD_SQL = (
    "INSERT INTO holds (idempotency_key, team, state, est_units_milli, pack, est_cost_minor,"
    " currency, meta, reserved_at, updated_at, sheet_sha256, key_id,"
    f" {', '.join(schema.CLASS_COLUMNS)})"
    f" VALUES (?, ?, 'held', ?, ?, ?, ?, ?, ?, ?, ?, ?{', ?' * len(schema.CLASS_COLUMNS)})"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
)
_INSERT_ENTRY_SQL = (
    "INSERT INTO hold_entries (hold_id, budget, depth, period_key, reserved) VALUES (?, ?, ?, ?, ?)"
)
_HOLD_BALANCE_SQL = (
    "INSERT INTO balances (budget, period_key, posted, held) VALUES (?, ?, 0, ?)"
    " ON CONFLICT (budget, period_key) DO UPDATE SET held = balances.held + excluded.held"
)
_BUDGETS_LOCK: Final = migrations.APPLICATION_ID + 1  # pg_advisory_xact_lock key of set_budget
_SHEETS_LOCK: Final = migrations.APPLICATION_ID + 2  # ... and of publish_sheet
_EVENT_SQL = "INSERT INTO events (at, kind, hold_id, team, data) VALUES (?, ?, ?, ?, ?)"
_INT_CLASS_COLUMNS = frozenset({"sound", "video_reference", "reference_image", "n"})
#: A voided hold's key becomes ``KEY#voided-ID``; no caller's key may contain this, so the
#: renamed key can never collide with a live one.
RELEASED_KEY: Final = "#voided-"
#: The settlement verdicts that alert a hold's budgets, and the event each records.
_VERDICT_ALERTS: Final = {"drift": "deduction_drift", "implausible": "implausible_deduction"}
#: The ledger setting that lets submitters price with a sheet other than the published one.
LOCAL_OVERLAYS: Final = "local_overlays"
_SHEET_POLICY_SQL = (
    "SELECT (SELECT sha256 FROM pricing_sheets ORDER BY version DESC LIMIT 1),"
    " (SELECT version FROM pricing_sheets ORDER BY version DESC LIMIT 1),"
    f" (SELECT value FROM ledger_settings WHERE name = '{LOCAL_OVERLAYS}')"
)
_SHEET_COLUMNS = "version, sha256, origin, published_at, canonical"
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
#: attach's one step for a hold still as ``reserve`` returned it (held, without a task):
#: the row count says whether it was.
_ATTACH_LEAN_SQL = (
    "UPDATE holds SET state = 'submitted', task_id = ?, updated_at = ?"
    " WHERE id = ? AND task_id IS NULL AND state = 'held'"
)
_INSERT_TASK_LEAN_SQL = _INSERT_TASK_SQL.removesuffix(" RETURNING hold_id")
#: A budget's settled charges per UTC day: its own team's and every team's below it, from the
#: daily rollup, in the column the budget counts (units of its pack, or cost in its currency).
_DAILY_CHARGES_SQL = (
    "WITH RECURSIVE down(name, depth) AS (SELECT name, 0 FROM budgets WHERE name = ? UNION ALL"
    " SELECT b.name, down.depth + 1 FROM budgets AS b JOIN down ON b.parent = down.name"
    " WHERE down.depth < 64) SELECT r.day, SUM(r.{column}) FROM rollup_daily AS r"
    " JOIN down ON r.team = down.name WHERE r.day >= ? AND r.day <= ? AND r.{match} = ?"
    " GROUP BY r.day"
)


def _job_class(meta: Mapping[str, MetaValue] | None) -> tuple[MetaValue, ...]:
    if not meta:
        return (None,) * len(schema.CLASS_COLUMNS)
    return tuple(_class_value(name, meta.get(name)) for name in schema.CLASS_COLUMNS)


def _class_value(name: str, value: MetaValue) -> MetaValue:
    # A digit string in an integer column is stored as the int, as SQLite's affinity does (and
    # PostgreSQL's BIGINT needs); a number in a text column as its text.
    if name in _INT_CLASS_COLUMNS:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif isinstance(value, int):
        return str(value)
    return value


def _path(conn: DB, team: str) -> list[tuple[Any, ...]]:
    """The budget rows from ``team`` up to its root (empty when ``team`` has no budget)."""
    rows: list[tuple[Any, ...]] = []
    name: str | None = team
    while name is not None and len(rows) < 64:  # set_budget refuses cycles; 64 is a backstop
        row = conn.execute(_BUDGET_ROW_SQL, (name,)).fetchone()
        if row is None:
            break
        rows.append(row)
        name = row[8]
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
    above = [(r[0], f"{r[1]} to 10^-{r[7]}") for r in _path(conn, team) if r[1] != UNITS]
    below = [
        (r[0], f"{r[1]} to 10^-{r[2]}")
        for r in conn.execute(_SUBTREE_SQL, (team,))
        if r[1] != UNITS
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


def _hold_from_row(row: tuple[Any, ...], alerts: tuple[Alert, ...] = ()) -> Hold:
    return Hold(
        id=row[0],
        key=row[1],
        team=row[2],
        state=row[3],
        estimate=HoldAmounts(row[6], row[4], row[7], row[5]),
        units_milli=row[8],
        cost_minor=row[9],
        variance_units_milli=row[10],
        variance_cost_minor=row[11],
        raw_deduction=row[12],
        reason=row[13],
        meta=json.loads(row[14]),
        reserved_at=datetime.fromisoformat(row[15]),
        updated_at=datetime.fromisoformat(row[16]),
        task_id=row[17],
        alerts=alerts,
        deduction_flag=row[18],
        task_status=row[19],
        sheet_sha256=row[20],
        key_id=row[21],
    )


def _budget_from_row(row: tuple[Any, ...]) -> Budget:
    return Budget(
        team=row[0],
        limit=row[1],
        unit=row[2],
        period=row[3],
        parent=row[4],
        soft=_soft(row[5]),
        tz=row[6],
        pack=row[7],
        exponent=row[8],
    )


class Keep(Enum):
    """The default of :meth:`Ledger.set_budget`'s fields: keep the current value (or, for a
    new budget, take the default). Distinct from None, which ``parent=None`` means."""

    KEEP = "keep"


#: Leave this field of a budget as it is.
KEEP: Final = Keep.KEEP
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


class Ledger:
    """One ledger. Open with :meth:`open`; use as a context manager to close it."""

    def __init__(self, backend: Backend, *, clock: Clock, timeout: float):
        self.backend = backend
        self._db: DB = backend.db
        #: The file (a Path), or the PostgreSQL URL without its password (a str).
        self.path: Path | str = backend.location
        self.clock = clock
        self.timeout = timeout
        self._lock = threading.RLock()
        self._row_lock = backend.row_lock
        #: PostgreSQL locks rows explicitly; SQLite's write transaction locks the whole file.
        self._locks_rows = bool(backend.row_lock)
        #: The (period, tz) pairs of the budgets this ledger has reserved on: SQLite's reserve
        #: reads their balances with the path (see :meth:`_lean_path`).
        self._period_zones: set[tuple[str, str]] = set()
        #: Set by a write that enqueued alerts (see :meth:`_write`).
        self._enqueued = False
        #: Deliver enqueued alerts in a background thread after the commit (tests that drive
        #: delivery themselves turn it off).
        self.deliver_in_background = True
        #: When this process last looked for forecast warnings (:meth:`warn_forecasts`).
        self.forecasts_checked_at: datetime | None = None
        #: The background delivery thread, if one runs (:func:`klingcost.alerts.kick`).
        self._delivery: threading.Thread | None = None
        self._delivery_again = False

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        clock: Clock | None = None,
        timeout: float = 10.0,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        create: bool = True,
        read_only: bool = False,
    ) -> Ledger:
        """Open (creating and migrating as needed) the ledger at ``path`` or the default one.

        ``path`` is a file (SQLite) or a ``postgresql://`` URL (PostgreSQL). Order: ``path``,
        ``KLINGCOST_LEDGER``, ``$KLINGCOST_HOME/ledger.db``, ``~/.klingcost/ledger.db``.
        ``timeout`` is how long a write waits for a lock (the file's, or a budget row's).
        ``synchronous="FULL"`` makes every SQLite write survive a power loss too (an fsync
        each); PostgreSQL's durability is the server's (``synchronous_commit``).
        ``create=False`` refuses (LedgerNotFound) a ledger file that does not exist yet, rather
        than make an empty one: what a command that only reads wants (a mistyped path must not
        read as "no spending").
        ``read_only=True`` (implies ``create=False``) opens it for reading only, so that a
        read-only file, directory or database role can be read; every write then raises
        LedgerError. A SQLite file reached under two paths (a hard link, a file bind-mounted on
        its own) is refused with LedgerSetupError: see :mod:`klingcost.ledger._one_path`.
        """
        location = os.fspath(path) if path is not None else default_ledger_path()
        if create and not read_only and path is None and not os.environ.get("KLINGCOST_LEDGER"):
            prepare_home(Path(location))
        if (read_only or not create) and not is_postgres_url(location):
            file = Path(location).expanduser()
            if not file.exists():
                raise LedgerNotFound(
                    f"no ledger at {file}: check --ledger / KLINGCOST_LEDGER "
                    "(`klingcost budget set` starts one)"
                )
        backend = open_backend(
            location, timeout=timeout, synchronous=synchronous, read_only=read_only
        )
        return cls(backend, clock=clock or SystemClock(), timeout=timeout)

    @property
    def read_only(self) -> bool:
        """Opened with ``read_only=True``: every write raises LedgerError."""
        return self.backend.read_only

    @property
    def dialect(self) -> Dialect:
        """``sqlite`` or ``postgres``."""
        return self.backend.dialect

    @property
    def conn(self) -> Any:
        """The driver's connection (sqlite3, or psycopg for PostgreSQL), in autocommit mode.

        Its SQL is the database's own; :meth:`execute` takes the ledger's (``?`` placeholders)
        on either backend.
        """
        return self.backend.raw

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        """Run one statement written for SQLite (``?`` placeholders) on either backend, in its
        own transaction; the driver's errors become LedgerError."""
        with self.reading():
            return self._db.execute(sql, parameters)

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the connection's lock (re-entrant) while reading through it, and turn the
        driver's errors into LedgerError: a damaged file or a lost server is the ledger's
        failure, never a raw sqlite3/psycopg error. Readers in other modules use it too."""
        with self._lock:
            try:
                yield
            except LedgerError:
                raise
            except (OverflowError, UnicodeEncodeError) as exc:  # the driver could not bind it
                raise LedgerValueError(
                    f"ledger {self.path}: a value cannot be stored ({type(exc).__name__}: {exc})"
                ) from exc
            except Exception as exc:
                if type(exc).__module__.split(".")[0] not in ("sqlite3", "psycopg"):
                    raise
                raise LedgerError(f"ledger {self.path} failed: {exc}") from exc

    def close(self) -> None:
        delivery = self._delivery
        if delivery is not None:  # an alert on its way: give it a moment to leave
            delivery.join(_outbox.CLOSE_WAIT)
        self.backend.close()

    @contextmanager
    def background_checkpoints(
        self, *, interval: float = 0.05, cap_pages: int = CAP_PAGES
    ) -> Iterator[Checkpointer | None]:
        """Run SQLite's WAL checkpoints in a thread while the block runs (for servers).

        This connection's inline auto-checkpoint is raised to ``cap_pages`` meanwhile (default
        :data:`klingcost.ledger.checkpointer.CAP_PAGES`) and set back after: a request checkpoints
        only when the WAL reaches the cap, which happens when writes come back to back with no
        gap for the thread's checkpoint to finish in (a WAL starts over only at a write that
        finds it all copied); that inline checkpoint then finds the thread's work done and
        copies only the rest. PostgreSQL: nothing to do (yields None).
        """
        if self.dialect != "sqlite":
            yield None
            return
        checkpointer = Checkpointer(Path(self.path), interval=interval)
        with checkpointer:
            self._autocheckpoint(cap_pages)
            try:
                yield checkpointer
            finally:
                self._autocheckpoint(INLINE_PAGES)

    def _autocheckpoint(self, pages: int) -> None:
        try:
            with self.reading():
                self._db.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}").fetchall()
        except LedgerError:  # closed meanwhile: nothing left to set
            pass

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # ``path`` is the file, or the URL without its passwords (backends.redact).
        return f"Ledger({str(self.path)!r})"

    __str__ = __repr__

    # --- transactions ---------------------------------------------------------------------

    def _write(self, operation: Callable[[DB], T]) -> T:
        """Run ``operation`` in one write transaction (SQLite: BEGIN IMMEDIATE, retried while
        the file is busy; PostgreSQL: READ COMMITTED, retried when it loses a race).

        A transaction that enqueued alerts starts their delivery in the background once it
        has committed (:func:`klingcost.alerts.kick`): never before (a rolled-back alert must
        not be sent), and never in the caller's way."""
        with self.reading():
            self._enqueued = False
            result = self.backend.write(operation)
            enqueued, self._enqueued = self._enqueued, False
        if enqueued and self.deliver_in_background:
            _outbox.kick(self)
        return result

    def _read(self, operation: Callable[[DB], T]) -> T:
        """Run reads in one snapshot."""
        with self.reading():
            return self.backend.read(operation)

    def _locked_path(self, conn: DB, team: str) -> list[tuple[Any, ...]]:
        """PostgreSQL: ``team``'s path with its budget rows locked (by name). The rows come
        from the locking read, so they are current; a parent that changed meanwhile is locked
        too before anything is decided."""
        names = {row[0] for row in conn.execute(_PATH_NAMES_SQL, (team,))}
        rows: dict[str, tuple[Any, ...]] = {}
        while True:
            wanted = sorted(names - set(rows))
            for row in conn.execute(_LOCK_BUDGETS_SQL + self._row_lock, (wanted,)):
                rows[row[0]] = tuple(row)
            path: list[tuple[Any, ...]] = []
            name: str | None = team
            while name is not None and name in rows and len(path) < 64:
                path.append(rows[name])
                name = rows[name][8]
            if name is None or name in names or len(path) >= 64:
                return path  # complete (or ``name`` has no budget: the team's path is empty)
            names.add(name)  # a parent set since the path was read: lock it as well

    def _event(
        self,
        conn: DB,
        at: str,
        kind: str,
        hold: int | None,
        team: str | None,
        **data: Any,
    ) -> None:
        text = json.dumps(data, separators=(",", ":"), default=str)
        if kind not in _outbox.EVENT_KINDS:  # the common case: no alert, nothing more
            conn.execute(_EVENT_SQL, (at, kind, hold, team, text))
            return
        # An alert event: its outbox rows are written in this same transaction.
        row = conn.execute(_EVENT_SQL + " RETURNING id", (at, kind, hold, team, text)).fetchone()
        if _outbox.enqueue(conn, row[0], kind, team, data, at):
            self._enqueued = True  # _write kicks a delivery once the transaction commits

    # --- budgets --------------------------------------------------------------------------

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
                ancestors = [r[0] for r in _path(conn, b.parent)]
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

    # --- the published price sheet ------------------------------------------------------

    def publish_sheet(self, sheet: PriceSheet) -> PublishedSheet:
        """Make ``sheet`` the one the ledger's holds are priced by (a new version, unless it
        is the current one already). Versions are kept, append-only, with their sha256."""
        from klingcost.sheet import canonical_text, sheet_hash

        canonical, digest = canonical_text(sheet), sheet_hash(sheet)
        at = self.clock.now().isoformat()

        def operation(conn: DB) -> PublishedSheet:
            if self._locks_rows:  # one publisher at a time: versions are numbered in order
                conn.execute("SELECT pg_advisory_xact_lock(?)", (_SHEETS_LOCK,)).fetchall()
            row = conn.execute(
                f"SELECT {_SHEET_COLUMNS} FROM pricing_sheets ORDER BY version DESC LIMIT 1"
            ).fetchone()
            if row is not None and row[1] == digest:
                return PublishedSheet(*row)
            version = 1 if row is None else row[0] + 1
            conn.execute(
                f"INSERT INTO pricing_sheets ({_SHEET_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (version, digest, sheet.origin, at, canonical),
            )
            self._event(
                conn,
                at,
                "pricing_publish",
                None,
                None,
                version=version,
                sha256=digest,
                origin=sheet.origin,
                previous=None if row is None else row[1],
            )
            return PublishedSheet(version, digest, sheet.origin, at, canonical)

        return self._write(operation)

    def published_sheet(self, version: int | None = None) -> PublishedSheet | None:
        """The sheet the ledger publishes (its latest version, or ``version``); None if none."""
        where = "ORDER BY version DESC LIMIT 1" if version is None else "WHERE version = ?"
        sql = f"SELECT {_SHEET_COLUMNS} FROM pricing_sheets {where}"
        with self.reading():
            row = self._db.execute(sql, () if version is None else (version,)).fetchone()
        return None if row is None else PublishedSheet(*row)

    def published_versions(self) -> list[PublishedSheet]:
        """Every published version, oldest first (``canonical`` left empty)."""
        sql = "SELECT version, sha256, origin, published_at, '' FROM pricing_sheets ORDER BY 1"
        with self.reading():
            return [PublishedSheet(*row) for row in self._db.execute(sql).fetchall()]

    def allow_local_overlays(self, allow: bool) -> None:
        """Let submitters price with a sheet other than the published one (``True``), or
        refuse such holds (``False``, the default once a sheet is published)."""
        if not isinstance(allow, bool):
            raise LedgerValueError(f"allow must be True or False (given {allow!r})")
        at = self.clock.now().isoformat()
        value = "allow" if allow else "refuse"

        def operation(conn: DB) -> None:
            conn.execute(
                "INSERT INTO ledger_settings (name, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (LOCAL_OVERLAYS, value, at),
            )
            self._event(conn, at, "setting", None, None, name=LOCAL_OVERLAYS, value=value)

        self._write(operation)

    def local_overlays_allowed(self) -> bool:
        with self.reading():
            row = self._db.execute(_SHEET_POLICY_SQL).fetchone()
        return row is not None and row[2] == "allow"

    def _check_sheet(self, conn: DB, given: str | None) -> None:
        """Inside a reserve: refuse a hold priced with another sheet than the published one."""
        published, version, overlays = conn.execute(_SHEET_POLICY_SQL).fetchone()
        if published is None or published == given or overlays == "allow":
            return
        raise SheetMismatchError(
            ledger=str(self.path), published=published, version=version, given=given
        )

    # --- holds ----------------------------------------------------------------------------

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
        job_class = _job_class(meta)
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
                    open_for_key = conn.execute(_OPEN_FOR_KEY_SQL, (count_key,)).fetchone()[0]
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
            hold_id = inserted[0]
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

    @staticmethod
    def _balances(
        conn: DB, path: list[tuple[Any, ...]], now: datetime
    ) -> dict[tuple[str, str], tuple[int, int]]:
        """The path's balances in its periods at ``now``, in one round trip (PostgreSQL)."""
        keys = {(row[0], period_key(row[4], now, row[5])) for row in path}
        names = sorted({name for name, _ in keys})
        pkeys = sorted({pkey for _, pkey in keys})
        return {
            (r[0], r[1]): (r[2], r[3])
            for r in conn.execute(_BALANCES_SQL, (names, pkeys))
            if (r[0], r[1]) in keys
        }

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
            return None if row is None else self._load(self._db, row[0])

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
            return [_dt(row[0]) for row in conn.execute(sql, (hold_id,)).fetchall()]

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
                for budget in {entry[0] for entry in entries}:
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
            last = rows[-1][0]

    # --- audit ----------------------------------------------------------------------------

    def events(
        self,
        *,
        hold_id: int | None = None,
        kind: str | None = None,
        team: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
        since: datetime | None = None,
        latest: int | None = None,
    ) -> list[Event]:
        """Events in the order they were recorded, optionally filtered; ``since`` keeps those
        recorded at or after it, ``latest`` only the last so many (still oldest first)."""
        clauses, params = ["id > ?"], list[object]([after_id])
        for column, value in (("hold_id", hold_id), ("kind", kind), ("team", team)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:  # ISO text in UTC sorts as time does
            clauses.append("at >= ?")
            params.append(since.astimezone(UTC).isoformat())
        where = " AND ".join(clauses)
        sql = f"SELECT id, at, kind, hold_id, team, data FROM events WHERE {where} ORDER BY id"
        if latest is not None:
            sql = f"SELECT * FROM ({sql} DESC LIMIT {int(latest)}) AS last ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.reading():
            rows = self._db.execute(sql, params).fetchall()
        return [Event(r[0], _dt(r[1]), r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def check(self, *, full: bool = False) -> list[Discrepancy]:
        """Check the file, then recompute every running balance and rollup from the entries;
        return each difference.

        SQLite's own check runs first (``PRAGMA quick_check``; ``integrity_check`` when
        ``full``): a damaged file is reported by what SQLite says (``damaged=True``), and its
        balances are not recomputed, since nothing read from it can be trusted.
        """
        with self.reading():
            damage = self.backend.damage(full=full)
        if damage:
            return [Discrepancy(message, damaged=True) for message in damage]
        dialect = self.dialect
        return self._read(lambda conn: _check(conn, dialect))

    def rebuild_rollups(self) -> None:
        """Recompute the report rollups from the holds (a repair after ``check`` found one off)."""
        dialect = self.dialect
        self._write(lambda conn: rollups.rebuild_rollups(conn, dialect))

    # --- budget management ----------------------------------------------------------------

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
            moved = (0, 0)
            if after.window.key != before.window.key:
                moved = conn.execute(_OPEN_IN_PERIOD_SQL, (team, before.window.key)).fetchone()
            return BudgetChange(before, after, int(moved[0]), int(moved[1]))

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
            below = [r[0] for r in conn.execute(_CHILDREN_SQL, (team,))]
            if below:
                raise BudgetConfigError(
                    f"budget {team} has budgets below it ({', '.join(below)}): delete them "
                    f"first, or move each with: klingcost budget set NAME --parent OTHER"
                )
            open_rows = conn.execute(_OPEN_OF_TEAM_SQL, (team,)).fetchall()
            ids = tuple(int(r[0]) for r in open_rows)
            held = sum(int(r[1]) for r in open_rows)
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
                    r[0]
                    for r in conn.execute(
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

    # --- keys -------------------------------------------------------------------------------
    # The proxy's keys (:mod:`klingcost.keys` makes and checks them; rows hold no secret) and
    # the refusals every guard records.

    def add_key(self, key: ApiKey) -> ApiKey:
        """Store a new key of ``key.team``, which must have a budget (BudgetNotFound)."""
        at = key.created_at.isoformat()
        expires = None if key.expires_at is None else key.expires_at.isoformat()

        def operation(conn: DB) -> ApiKey:
            if conn.execute("SELECT 1 FROM budgets WHERE name = ?", (key.team,)).fetchone() is None:
                raise BudgetNotFound(team=key.team)
            conn.execute(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id,
                    key.team,
                    key.name,
                    key.key_hash,
                    key.access_key,
                    at,
                    expires,
                    None,
                    key.max_concurrent,
                ),
            )
            self._event(
                conn,
                at,
                "key_create",
                None,
                key.team,
                key_id=key.id,
                name=key.name,
                expires_at=expires,
                max_concurrent=key.max_concurrent,
            )
            return replace(key, revoked_at=None)

        return self._write(operation)

    def api_keys(self, team: str | None = None) -> list[ApiKey]:
        """Every key (revoked ones too), oldest first, optionally of one team."""
        where, params = ("WHERE team = ?", (team,)) if team is not None else ("", ())
        sql = f"SELECT {_KEY_COLUMNS} FROM api_keys {where} ORDER BY created_at, id"
        with self.reading():
            return [_key_from_row(row) for row in self._db.execute(sql, params).fetchall()]

    def get_key(self, key_id: str) -> ApiKey:
        with self.reading():
            sql = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?"
            row = self._db.execute(sql, (key_id,)).fetchone()
        if row is None:
            raise KeyNotFound(key_id=key_id)
        return _key_from_row(row)

    def find_key(
        self, *, key_hash: str | None = None, access_key: str | None = None
    ) -> ApiKey | None:
        """The key with this bearer-key hash, or this access key; None when there is none."""
        column, value = (
            ("key_hash", key_hash) if key_hash is not None else ("access_key", access_key)
        )
        with self.reading():
            sql = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE {column} = ?"
            row = self._db.execute(sql, (value,)).fetchone()
        return None if row is None else _key_from_row(row)

    def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke a key (KeyNotFound if there is none): refused from now on. Its open holds stay
        as they are. Revoking again changes nothing."""
        at = self.clock.now().isoformat()

        def operation(conn: DB) -> ApiKey:
            sql = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?{self._row_lock}"
            row = conn.execute(sql, (key_id,)).fetchone()
            if row is None:
                raise KeyNotFound(key_id=key_id)
            key = _key_from_row(row)
            if key.revoked_at is not None:
                return key
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (at, key_id))
            self._event(conn, at, "key_revoke", None, key.team, key_id=key_id)
            return replace(key, revoked_at=_dt(at))

        return self._write(operation)

    def open_holds_for_key(self, key_id: str) -> int:
        """How many open holds ``key_id`` placed (what ``--max-concurrent`` counts)."""
        with self.reading():
            return int(self._db.execute(f"SELECT {_OPEN_FOR_KEY_SQL}", (key_id,)).fetchone()[0])

    def record_refusal(
        self,
        team: str,
        *,
        reason: str,
        needed: int | None,
        left: int | None,
        period: str | None,
        job_class: Mapping[str, MetaValue] | None = None,
        key_id: str | None = None,
        source: str = "guard",
        unit: str | None = None,
        budget: str | None = None,
    ) -> Event:
        """Record a refused submission: an event of kind ``refused`` (in its own transaction;
        the refused reserve wrote nothing). ``reason`` is ``budget``, ``cannot_count``,
        ``concurrency`` or ``unpriced``; ``needed`` and ``left`` are in ``unit`` of ``budget``
        (the budget that refused, on ``team``'s path); ``source`` says which guard refused
        (``guard``, ``submit``, ``proxy``)."""
        at = self.clock.now().isoformat()
        data = {
            "reason": reason,
            "needed": needed,
            "left": left,
            "unit": unit,
            "period": period,
            "budget": budget,
            "key_id": key_id,
            "source": source,
            "job_class": dict(job_class or {}),
        }

        def operation(conn: DB) -> None:
            self._event(conn, at, "refused", None, team, **data)

        self._write(operation)
        return Event(0, _dt(at), "refused", None, team, data)

    def refusals(
        self,
        *,
        team: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[Event]:
        """Refused submissions in the order they were recorded (``refused`` events); ``since``
        and ``until`` are UTC days (``YYYY-MM-DD``, inclusive)."""
        where, params = "kind = 'refused' AND id > ?", list[object]([after_id])
        for clause, value in (
            ("team = ?", team),
            ("substr(at, 1, 10) >= ?", since),
            ("substr(at, 1, 10) <= ?", until),
        ):
            if value is not None:
                where += f" AND {clause}"
                params.append(value)
        sql = f"SELECT id, at, kind, hold_id, team, data FROM events WHERE {where} ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.reading():
            rows = self._db.execute(sql, params).fetchall()
        return [Event(r[0], _dt(r[1]), r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    # --- alerts ---------------------------------------------------------------------------

    def add_alert_rule(
        self, team: str, *, channel: str, url: str, on: Sequence[str] = _outbox.ALERT_KINDS
    ) -> _outbox.AlertRule:
        """Send ``team``'s alerts of the kinds ``on`` (soft, refused, over, forecast) to
        ``url`` over ``channel`` (webhook, slack, feishu, dingtalk). BudgetNotFound for a team
        without a budget; LedgerValueError (the URL masked) for a bad URL or kind."""
        url = _outbox.check_url(channel, url)
        kinds = tuple(dict.fromkeys(on))
        bad = [kind for kind in kinds if kind not in _outbox.ALERT_KINDS]
        if bad or not kinds:
            raise LedgerValueError(
                f"{', '.join(map(repr, bad)) or 'nothing'} given; allowed: "
                f"{', '.join(_outbox.ALERT_KINDS)} (comma-separated)",
                option="on",
                value=bad,
                allowed=", ".join(_outbox.ALERT_KINDS),
            )
        at = self.clock.now().isoformat()

        def operation(conn: DB) -> _outbox.AlertRule:
            if conn.execute("SELECT 1 FROM budgets WHERE name = ?", (team,)).fetchone() is None:
                raise BudgetNotFound(team=team)
            rule = _outbox.insert_rule(conn, team, channel, url, kinds, at)
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

    def alert_rules(self, team: str | None = None) -> list[_outbox.AlertRule]:
        """The alert rules (of ``team``), by id."""
        with self.reading():
            return _outbox.rules(self._db, team)

    def alert_rule(self, rule_id: int) -> _outbox.AlertRule:
        """Rule ``rule_id``; LedgerValueError when there is none."""
        with self.reading():
            rule = _outbox.rule(self._db, rule_id)
        if rule is None:
            raise LedgerValueError(
                f"no alert rule {rule_id} in the ledger (see `klingcost alerts list`)"
            )
        return rule

    def remove_alert_rule(self, rule_id: int) -> _outbox.AlertRule:
        """Delete rule ``rule_id`` and its undelivered alerts (the event log keeps both)."""
        at = self.clock.now().isoformat()

        def operation(conn: DB) -> _outbox.AlertRule:
            rule = _outbox.rule(conn, rule_id)
            if rule is None:
                raise LedgerValueError(
                    f"no alert rule {rule_id} in the ledger (see `klingcost alerts list`)"
                )
            dropped = _outbox.delete_rule(conn, rule_id)
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
    ) -> list[_outbox.PendingAlert]:
        """Lease the outbox rows due at ``now`` for delivery (:func:`_outbox.claim_due`).

        Looks first without a write transaction: a loop that finds nothing due never takes
        SQLite's write lock from the submissions."""
        with self.reading():
            if not _outbox.any_due(self._db, now):
                return []
        skip = self._locks_rows
        return self._write(
            lambda conn: _outbox.claim_due(conn, now, lease, limit, skip_locked=skip)
        )

    def record_alert_attempt(
        self, outbox_id: int, *, at: datetime, error: str | None, next_at: datetime | None
    ) -> None:
        """Record a delivery attempt: delivered (``error`` None) or due again at ``next_at``."""
        self._write(
            lambda conn: _outbox.record_attempt(
                conn, outbox_id, at=at, error=error, next_at=next_at
            )
        )

    def alert_outbox(
        self, *, rule_id: int | None = None, limit: int = 100
    ) -> list[_outbox.OutboxRow]:
        """The latest outbox rows (of one rule), newest first."""
        with self.reading():
            return _outbox.outbox_rows(self._db, rule_id=rule_id, limit=limit)

    def alert_counts(self) -> dict[int, _outbox.OutboxCounts]:
        """Per rule id: how many alerts are pending, delivered and given up."""
        with self.reading():
            return _outbox.counts(self._db)

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
        at = _outbox.stamp(now)
        key = status.window.key
        if not _outbox.claim_mark(conn, status.team, "forecast", key, at, at):
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

    # --- forecast -------------------------------------------------------------------------

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
            created = _dt(row[0]).astimezone(UTC).date()
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


_KEY_COLUMNS = (
    "id, team, name, key_hash, access_key, created_at, expires_at, revoked_at, max_concurrent"
)


def _key_from_row(row: tuple[Any, ...]) -> ApiKey:
    return ApiKey(
        id=row[0],
        team=row[1],
        name=row[2],
        key_hash=row[3],
        access_key=row[4],
        created_at=_dt(row[5]),
        expires_at=None if row[6] is None else _dt(row[6]),
        revoked_at=None if row[7] is None else _dt(row[7]),
        max_concurrent=row[8],
    )


def _share_of_day(instant: datetime) -> Fraction:
    """How much of its UTC day has gone at ``instant``, exactly (to the microsecond)."""
    utc = instant.astimezone(UTC)
    gone = utc - utc.replace(hour=0, minute=0, second=0, microsecond=0)
    return Fraction(gone // timedelta(microseconds=1), 86_400_000_000)


def _first(row: tuple[Any, ...]) -> Any:
    return row[0]


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


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


def _log_alerts(hold: Hold) -> None:
    for alert in hold.alerts:
        logger.warning("%s (hold %s)", alert, hold.id)


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


__all__ = [
    "HOLD_STATES",
    "KEEP",
    "Alert",
    "BudgetStatus",
    "Discrepancy",
    "Event",
    "Hold",
    "HoldAmounts",
    "HoldState",
    "Keep",
    "Ledger",
    "PublishedSheet",
    "default_ledger_path",
]
