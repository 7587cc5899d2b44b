"""The ledger's read models: every question reports, reconcile and calibration ask of the
ledger's tables, as named rows, and the one write calibration makes (the usage-log import).

Only the ledger writes SQL, on tables it defines: the modules that read it call these
functions and never see a cursor. Each runs in the ledger's own lock, snapshot or write
transaction and so turns the driver's errors into LedgerError, as every other ledger
operation does.

* :mod:`~klingcost.ledger.queries.spending`: :func:`grouped_sums` (rollups + open holds),
  :func:`budget_parents`;
* :mod:`~klingcost.ledger.queries.tasks`: :data:`TASK_COLUMNS`, :class:`TaskRow`,
  :func:`task_rows`, :func:`latest_tasks`, :func:`task_snapshot` (the CSV export's lines,
  built by SQLite);
* :mod:`~klingcost.ledger.queries.classes`: :func:`class_sums` (``rollup_class``),
  :func:`disagreeing_tasks` (reconcile), :func:`observed_charges` (calibration);
* :mod:`~klingcost.ledger.queries.usage`: :func:`store_usage` (one write transaction),
  :func:`credit_rows`, :func:`unmatched_usage`.
"""

from __future__ import annotations

from klingcost.ledger.queries.classes import (
    Charge,
    ClassSums,
    SettledTask,
    StoredClass,
    Unclassified,
    class_sums,
    disagreeing_tasks,
    observed_charges,
    stored_class,
)
from klingcost.ledger.queries.spending import BudgetNode, GroupSums, budget_parents, grouped_sums
from klingcost.ledger.queries.tasks import (
    TASK_COLUMNS,
    TaskRow,
    TaskSnapshot,
    latest_tasks,
    sql_decimal,
    task_cells,
    task_rows,
    task_snapshot,
)
from klingcost.ledger.queries.usage import (
    CreditRow,
    StoredUsage,
    UsageRecord,
    credit_rows,
    store_usage,
    unmatched_usage,
)

__all__ = [
    "TASK_COLUMNS",
    "BudgetNode",
    "Charge",
    "ClassSums",
    "CreditRow",
    "GroupSums",
    "SettledTask",
    "StoredClass",
    "StoredUsage",
    "TaskRow",
    "TaskSnapshot",
    "Unclassified",
    "UsageRecord",
    "budget_parents",
    "class_sums",
    "credit_rows",
    "disagreeing_tasks",
    "grouped_sums",
    "latest_tasks",
    "observed_charges",
    "sql_decimal",
    "store_usage",
    "stored_class",
    "task_cells",
    "task_rows",
    "task_snapshot",
    "unmatched_usage",
]
