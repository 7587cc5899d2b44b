"""Spending reports: where the credits went, per team, model, mode, endpoint, pack and time.

    report = spending_report(ledger, by=("team", "month"), since=date(2026, 11, 1))
    for row in report.rows:            # ReportRow: typed, frozen, exact amounts
        print(row.team, row.period, row.charged)
    write_csv(report, sys.stdout)      # or write_json, write_markdown, render_table
    export_tasks_csv(ledger, out)      # one row per task, streamed

A grouped report reads the ledger's rollups (closed holds, per UTC day, team, endpoint, model,
mode, pack and currency) and the open holds (the jobs in flight, few): its cost does not grow
with the number of tasks. Weeks (ISO, ``2026-W48``) and months (``2026-11``) are folded from
days. Days are UTC days of the hold's reservation; ``since`` and ``until`` are inclusive dates.

**Grouped report columns** (CSV header, JSON keys; the same set whatever ``by`` is, a column
that is not grouped on is empty):

==================  ======================================================================
``kind``            ``group`` for a group, ``total`` for the total of one currency
``team``            the team that placed the holds
``endpoint``        ``videos/text2video``, ``images/generations``, ...
``model``           ``kling-v1-5``, ...
``mode``            ``std``, ``pro`` or empty (a model with one price, or an image)
``pack``            ``video`` or ``image``: the resource pack the units come from
``period``          the day (``2026-11-25``), ISO week (``2026-W48``) or month (``2026-11``)
``currency``        what the amounts are in (``credits`` for openai-hk)
``tasks``           holds that are settled or still open (voided ones cost nothing)
``settled``         holds settled at what the API charged
``open``            holds still open (held, submitted or outcome unknown)
``voided``          holds released without a charge
``estimated``       the estimates of settled and open holds
``charged``         what the settled holds were charged
``held``            the estimates of the open holds, still reserved
``variance``        ``charged`` minus the estimates of the settled holds
``budget_limit``    the team's budget limit (only when grouped by team)
``budget_used``     posted + held in the budget's *current* period (only when grouped by team)
``budget_share``    ``budget_used / budget_limit``, a decimal rounded to 4 places
``budget_unit``     the budget's unit (``credits``, or ``units (video)``)
``budget_period``   the current period's key (``2026-11``, ``all``)
==================  ======================================================================

Amounts are exact decimals in major units of ``currency`` (whole credits). The budget columns
describe the budget's current period whatever the report's window: a budget is kept per period,
and a window of days need not match one. ``budget_used`` counts the team's own holds and its
children's, as the budget itself does.

**Task export columns** (:data:`TASK_COLUMNS`, one row per hold): ``hold_id``, ``task_id``,
``team``, ``state``, ``reserved_at``, ``updated_at``, ``endpoint``, ``model``, ``mode``,
``duration``, ``sound``, ``video_reference``, ``reference_image``, ``n``, ``pack``,
``currency``, ``estimated``, ``charged``, ``held``, ``variance`` (in ``currency``),
``estimated_units``, ``charged_units``, ``variance_units`` (Kling units), ``raw_deduction``
(``final_unit_deduction`` as the API sent it), ``deduction_flag`` (``ok``, ``absent``,
``zero``, ``malformed``, ``negative``, ``absurd``), ``task_status``, ``reason``.

**Spreadsheet safety of CSV** (:func:`csv_cell`): a spreadsheet runs a cell that starts with
``=``, ``+``, ``-`` or ``@`` (or a tab or line break before one) as a formula, and text
in the ledger (a void ``reason``, a team, a model, an API's ``raw_deduction``) is anyone's. So
both CSV writers prefix such a text cell with a single quote (``=1+2`` is written ``'=1+2``),
unless the cell is a plain number (``-1``, ``2.5``, ``-1e5``), which is written as it is. JSON
is written unchanged. Task ids stay plain digits: a spreadsheet that opens the CSV reads an
18-digit id as a number and rounds it to 15 digits, so import that column as text.

The package's rooms: :mod:`~klingcost.reports.model` (the report's types, no I/O),
:mod:`~klingcost.reports.spending` (a report read from a ledger),
:mod:`~klingcost.reports.render` (CSV, JSON, table, Markdown), :mod:`~klingcost.reports.tasks`
(one row per task) and :mod:`~klingcost.reports.html` (the self-contained HTML page, imported
on its own: ``from klingcost.reports.html import html_report``). The SQL they read through is
the ledger's (:mod:`klingcost.ledger.queries`).
"""

from __future__ import annotations

from klingcost.display import csv_cell, group_digits, percent_text, share_text
from klingcost.errors import ReportError
from klingcost.ledger.queries import grouped_sums
from klingcost.reports.model import (
    COLUMNS,
    GROUP_KEYS,
    BudgetColumns,
    BudgetForecast,
    Report,
    ReportRow,
    parse_group_by,
    period_of,
)
from klingcost.reports.render import (
    render_table,
    text_cells,
    write_csv,
    write_json,
    write_markdown,
)
from klingcost.reports.spending import (
    budget_forecasts,
    budgets_below,
    daily_sums,
    spending_report,
)
from klingcost.reports.tasks import (
    TASK_COLUMNS,
    TaskRow,
    export_tasks_csv,
    export_tasks_json,
    iter_tasks,
    latest_tasks,
    task_rows,
)

__all__ = [
    "COLUMNS",
    "GROUP_KEYS",
    "TASK_COLUMNS",
    "BudgetColumns",
    "BudgetForecast",
    "Report",
    "ReportError",
    "ReportRow",
    "TaskRow",
    "budget_forecasts",
    "budgets_below",
    "csv_cell",
    "daily_sums",
    "export_tasks_csv",
    "export_tasks_json",
    "group_digits",
    "grouped_sums",
    "iter_tasks",
    "latest_tasks",
    "parse_group_by",
    "percent_text",
    "period_of",
    "render_table",
    "share_text",
    "spending_report",
    "task_rows",
    "text_cells",
    "write_csv",
    "write_json",
    "write_markdown",
]
