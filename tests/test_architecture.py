"""The layout docs/architecture.md describes holds: the pure core does no I/O, and the ledger
does not pull in the HTTP stack."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

IO_MODULES = ("httpx", "sqlite3", "click", "starlette", "uvicorn", "psycopg", "anyio", "asyncio")
PURE_CORE = (
    # leaves
    "errors",
    "money",
    "periods",
    "clock",
    "display",
    # what a job is and what it costs
    "jobclass",
    "request",
    "sheet",
    "pricing",
    "listing",
    "jobs",
    "batch",
    "price_table",
    # what a budget allows, and what a reported charge means
    "budgets",
    "budget_admin",
    "forecast",
    "deduction",
    "settlement",
    "polling",
    # the protocol's answers, and secrets out of text
    "api.envelope",
    "api.redact",
)
SRC = Path(__file__).resolve().parent.parent / "src" / "klingcost"


def _imported_after(code: str) -> set[str]:
    """The I/O modules a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(set(sys.modules) & {set(IO_MODULES)!r})))"
    ran = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(ran.stdout.split())


@pytest.mark.parametrize("module", PURE_CORE)
def test_the_pure_core_imports_no_io(module: str) -> None:
    assert _imported_after(f"import klingcost.{module}") == set()


def test_opening_and_using_a_ledger_does_not_import_the_http_stack() -> None:
    code = (
        "import tempfile, pathlib\n"
        "from klingcost.ledger import Ledger\n"
        "from klingcost.budgets import HoldAmounts\n"
        "path = pathlib.Path(tempfile.mkdtemp()) / 'l.db'\n"
        "with Ledger.open(path) as ledger:\n"
        "    ledger.set_budget('t', limit=10, period='month')\n"
        "    hold = ledger.reserve('t', HoldAmounts(1000, 'video', 1), key='k')\n"
        "    ledger.settle(hold.id, units_milli=1000, cost_minor=1, raw_deduction='1')\n"
        "    ledger.check()\n"
    )
    assert _imported_after(code) == {"sqlite3"}


def test_only_the_ledger_runs_sql() -> None:
    """Every statement klingcost runs on a database is in ``ledger/``: reports, reconcile,
    calibration, alerts and the proxy read and write through the ledger's methods."""
    statement = re.compile(r"\.(execute|executemany|executescript)\(")
    outside = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "ledger" not in path.relative_to(SRC).parts[:1]
        and statement.search(path.read_text(encoding="utf-8"))
    )
    assert outside == []
