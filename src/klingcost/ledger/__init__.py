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

One module per concept, each a part of :class:`Ledger` deriving from
:class:`~klingcost.ledger._base.LedgerBase` (the connection and its transactions):

* :mod:`~klingcost.ledger.types`: the values (Hold, Event, PublishedSheet, Discrepancy, KEEP);
* :mod:`~klingcost.ledger.rows`: the rows read, by name;
* :mod:`~klingcost.ledger.budgets`, :mod:`~klingcost.ledger.budget_admin`: budgets;
* :mod:`~klingcost.ledger.published`: the published price sheet;
* :mod:`~klingcost.ledger.reserve`, :mod:`~klingcost.ledger.holds`,
  :mod:`~klingcost.ledger.settle`: a hold's life;
* :mod:`~klingcost.ledger.events`, :mod:`~klingcost.ledger.audit`: the log and its check;
* :mod:`~klingcost.ledger.keys`, :mod:`~klingcost.ledger.alerts`,
  :mod:`~klingcost.ledger.forecast`: the proxy's keys, alert rules, burn forecasts.

Beside the parts: :mod:`~klingcost.ledger.outbox` (the alert outbox's statements),
:mod:`~klingcost.ledger.queries` (the read models of reports, reconcile and calibration), and
the storage: :mod:`~klingcost.ledger.schema` (one spec of the schema, rendered by
:mod:`~klingcost.ledger.ddl`), the shipped migrations, and the two backends. No code outside
this package runs SQL.
"""

from __future__ import annotations

from klingcost.budgets import Alert, BudgetStatus, HoldAmounts
from klingcost.ledger._base import default_ledger_path, prepare_home
from klingcost.ledger.alerts import AlertsPart
from klingcost.ledger.audit import AuditPart
from klingcost.ledger.budget_admin import BUDGET_REFERENCES, BudgetAdminPart
from klingcost.ledger.events import EventsPart
from klingcost.ledger.keys import KeysPart
from klingcost.ledger.published import LOCAL_OVERLAYS
from klingcost.ledger.reserve import RELEASED_KEY, ReservePart
from klingcost.ledger.settle import SettlePart
from klingcost.ledger.turns import TurnsPart
from klingcost.ledger.types import (
    HOLD_STATES,
    KEEP,
    OPEN_STATES,
    Discrepancy,
    Event,
    Hold,
    HoldState,
    Keep,
    MetaValue,
    PublishedSheet,
)


# Parts, not functions taking a ledger: each method keeps its docstring and its code in its
# concept's module, and the facade stays one list. A part that needs another derives from it
# (ReservePart from PublishedPart and HoldsPart, AlertsPart from ForecastPart), so mypy checks
# every call across parts; the method lookups are cached per class, so the hot path pays
# nothing for the composition.
class Ledger(
    BudgetAdminPart,
    ReservePart,
    SettlePart,
    EventsPart,
    AuditPart,
    KeysPart,
    AlertsPart,
    TurnsPart,
):
    """One ledger. Open with :meth:`open`; use as a context manager to close it."""


__all__ = [
    "BUDGET_REFERENCES",
    "HOLD_STATES",
    "KEEP",
    "LOCAL_OVERLAYS",
    "OPEN_STATES",
    "RELEASED_KEY",
    "Alert",
    "BudgetStatus",
    "Discrepancy",
    "Event",
    "Hold",
    "HoldAmounts",
    "HoldState",
    "Keep",
    "Ledger",
    "MetaValue",
    "PublishedSheet",
    "default_ledger_path",
    "prepare_home",
]
