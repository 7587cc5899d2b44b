"""A ledger written by klingcost reads well in the sqlite-utils command line (and so in
Datasette, which reads the same tables and views): tables with counts, rows, and the spending
from a view, without klingcost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from klingcost.budgets import HoldAmounts
from klingcost.ledger import Ledger
from klingcost.ledger._sqlite import SQLiteBackend

SQLITE_UTILS = str(Path(sys.executable).parent / "sqlite-utils")


def sqlite_utils(*args: str) -> Any:
    ran = subprocess.run(
        [SQLITE_UTILS, *args], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(ran.stdout)


def test_sqlite_utils_reads_the_spending(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("studio", limit=600_000, period="month")
        meta = {"endpoint": "videos/text2video", "model": "kling-v1-5", "mode": "pro"}
        for n, (units_milli, charged) in enumerate(((7000, "7"), (7700, "7.7"))):
            amounts = HoldAmounts(7000, "video", 105_000, "credits")
            hold = ledger.reserve("studio", amounts, key=f"job-{n}", meta=meta)
            ledger.attach(hold.id, f"84713077156647585{n}")
            cost = units_milli * 15  # 15,000 credits a unit
            ledger.settle(hold.id, units_milli=units_milli, cost_minor=cost, raw_deduction=charged)
        open_hold = ledger.reserve("studio", HoldAmounts(1000, "video", 15_000), key="job-open")

    tables: list[dict[str, Any]] = sqlite_utils("tables", str(path), "--counts")
    counts = {t["table"]: t["count"] for t in tables}
    assert (counts["holds"], counts["tasks"], counts["budgets"]) == (3, 2, 1)
    views: list[dict[str, Any]] = sqlite_utils("views", str(path))
    assert {"budget_balances", "hold_summary", "open_holds"} <= {v["view"] for v in views}

    rows: list[dict[str, Any]] = sqlite_utils("rows", str(path), "hold_summary")
    spent = sorted((r["id"], r["model"], r["units_milli"], r["cost_minor"]) for r in rows)
    assert spent == [
        (1, "kling-v1-5", 7000, 105_000),
        (2, "kling-v1-5", 7700, 115_500),
        (open_hold.id, None, None, None),
    ]
    query = "select budget, posted, held, available from budget_balances"
    [balance] = sqlite_utils("query", str(path), query)
    assert balance == {"budget": "studio", "posted": 220_500, "held": 15_000, "available": 364_500}
    [still_open] = sqlite_utils("rows", str(path), "open_holds")
    assert (still_open["id"], still_open["state"]) == (open_hold.id, "held")
    # The day's spending, from the rollup the ledger's triggers keep.
    [day] = sqlite_utils("rows", str(path), "rollup_daily", "-c", "team", "-c", "charged_minor")
    assert day == {"team": "studio", "charged_minor": 220_500}


def test_the_ledger_reads_its_schema_through_sqlite_utils_on_its_own_connection(
    tmp_path: Path,
) -> None:
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        ledger.set_budget("studio", limit=10, period="month")
        backend = ledger.backend
        assert isinstance(backend, SQLiteBackend)
        database = backend.database
        assert database.conn is backend.raw  # no second connection, nothing to keep in sync
        ledger.reserve("studio", HoldAmounts(1000, "video", 10), key="job")
        assert database.table("holds").count == 1  # a write through the ledger is seen at once
        assert database.table("holds").pks == ["id"]
        assert [c.name for c in database.table("holds").columns][-2:] == ["sheet_sha256", "key_id"]
        assert backend.database is database  # made once


def test_reserving_and_settling_never_load_sqlite_utils(tmp_path: Path) -> None:
    # The hot path stays plain sqlite3: sqlite-utils (and the click it imports) load only
    # when the schema is read.
    code = (
        "import sys\n"
        "from klingcost.ledger import Ledger\n"
        "from klingcost.budgets import HoldAmounts\n"
        f"with Ledger.open({str(tmp_path / 'l.db')!r}) as ledger:\n"
        "    ledger.set_budget('t', limit=10, period='month')\n"
        "    hold = ledger.reserve('t', HoldAmounts(1000, 'video', 1), key='k')\n"
        "    ledger.attach(hold.id, 'task-1')\n"
        "    ledger.settle(hold.id, units_milli=1000, cost_minor=1, raw_deduction='1')\n"
        "    print('sqlite_utils' in sys.modules)\n"
        "    ledger.check(full=True)\n"
        "    print('sqlite_utils' in sys.modules)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert ran.stdout.split() == ["False", "True"]
