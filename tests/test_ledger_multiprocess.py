"""Many processes, one ledger: a limit that admits exactly K holds grants exactly K.

On each backend (conftest.py): one SQLite file, or one PostgreSQL database that the processes
reach over the network as workers on separate machines would."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import pytest

from klingcost.budgets import HoldAmounts
from klingcost.errors import BudgetExceeded
from klingcost.ledger import Ledger

PROCESSES = 4
ATTEMPTS = 60  # per process
K = 97  # the limit admits exactly K holds of COST; the processes try 240
COST = 7
AMOUNTS = HoldAmounts(units_milli=1000, pack="video", cost_minor=COST, currency="credits")


def _worker(path: str, worker: int, ready: Any, start: Any, results: Any) -> None:
    granted = refused = 0
    errors: list[str] = []
    with Ledger.open(path, timeout=30) as ledger:
        ready.put(worker)
        start.wait()
        for attempt in range(ATTEMPTS):
            try:
                hold = ledger.reserve("team", AMOUNTS, key=f"w{worker}-{attempt}")
                if attempt % 3 == 0:  # some holds go all the way: attach and settle
                    ledger.attach(hold.id, f"task-{worker}-{attempt}")
                    ledger.settle(hold.id, units_milli=1000, cost_minor=COST)
                granted += 1
            except BudgetExceeded:
                refused += 1
            except Exception as exc:  # every other error fails the test
                errors.append(f"{type(exc).__name__}: {exc}")
    results.put((granted, refused, errors))


@pytest.mark.slow
def test_exactly_k_of_many_concurrent_reserves_succeed(ledger_url: str) -> None:
    path = ledger_url
    with Ledger.open(path) as ledger:
        ledger.set_budget("company", limit=K * COST, period="month")  # the binding budget
        ledger.set_budget("team", limit=10**9, parent="company")
    context = mp.get_context("spawn")
    ready, start, results = context.Queue(), context.Event(), context.Queue()
    workers = [
        context.Process(target=_worker, args=(str(path), n, ready, start, results))
        for n in range(PROCESSES)
    ]
    for process in workers:
        process.start()
    for _ in workers:  # every process has the file open before any of them reserves
        ready.get(timeout=60)
    start.set()
    outcomes = [results.get(timeout=120) for _ in workers]
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert [error for _, _, errors in outcomes for error in errors] == []
    granted = sum(g for g, _, _ in outcomes)
    refused = sum(r for _, r, _ in outcomes)
    assert granted == K, f"{granted} holds granted; the limit admits exactly {K}"
    assert refused == PROCESSES * ATTEMPTS - K
    with Ledger.open(path) as ledger:
        status = ledger.budget_status("company")
        assert status.posted + status.held == K * COST
        assert status.available == 0
        assert ledger.check() == []
        holds = list(ledger.holds())
        assert len(holds) == K
        assert len({h.key for h in holds}) == K
