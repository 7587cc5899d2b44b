"""A real SQLite ledger stores a job class as holds always stored it, and gives it back."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from klingcost.budgets import HoldAmounts
from klingcost.jobclass import COLUMNS, JobClass
from klingcost.ledger import Ledger
from klingcost.pricing import estimate
from test_jobclass import STORED_TODAY, _narrowed


@pytest.mark.parametrize(("endpoint", "body", "meta"), STORED_TODAY)
def test_a_real_ledger_stores_the_class_and_gives_it_back(
    tmp_path: Path, endpoint: str, body: dict[str, Any], meta: dict[str, Any]
) -> None:
    priced = estimate(endpoint, body)
    job = priced.request.job
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("t", limit=10**9)  # credits: counts images and videos alike
        hold = ledger.reserve(
            "t", HoldAmounts(1000, priced.pack, priced.cost.minor), meta=job.to_meta()
        )
        assert JobClass.from_meta(hold.meta) == _narrowed(job)
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM holds").fetchone()
    assert dict(row) == job.to_columns()  # what the ledger wrote, column for column
    assert row["duration"] == (None if meta["duration"] is None else str(meta["duration"]))
    assert JobClass.from_row(row) == _narrowed(job)
