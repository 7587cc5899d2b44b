"""The layout docs/architecture.md describes holds: the pure core does no I/O, and the ledger
does not pull in the HTTP stack."""

from __future__ import annotations

import subprocess
import sys

import pytest

IO_MODULES = ("httpx", "sqlite3", "click", "starlette", "uvicorn", "psycopg", "anyio", "asyncio")
PURE_CORE = ("errors", "money", "periods", "clock", "request", "sheet", "pricing", "budgets")


def _imported_after(code: str) -> set[str]:
    """The I/O modules a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(set(sys.modules) & {set(IO_MODULES)!r})))"
    ran = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(ran.stdout.split())


@pytest.mark.parametrize("module", [*PURE_CORE, "deduction", "jobclass", "listing"])
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
