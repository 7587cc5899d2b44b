"""A proxy key's ``--max-concurrent``: ``Ledger.reserve(key_id=, max_open_for_key=)`` counts the
key's open holds inside its own write transaction, so that concurrent clients (threads with
connections of their own, or processes) never hold more than the limit. Both backends."""

from __future__ import annotations

import multiprocessing as mp
import threading
from collections.abc import Callable
from typing import Any

import pytest

from klingcost.budgets import HoldAmounts
from klingcost.errors import ConcurrencyExceeded, LedgerValueError
from klingcost.keys import create_key
from klingcost.ledger import Ledger

AMOUNTS = HoldAmounts(units_milli=1000, pack="video", cost_minor=10, currency="credits")
LIMIT = 3
CLIENTS = 16
#: Processes are slow to spawn on a loaded machine: fewer of them, still twice the limit.
PROCESSES = 6
SECRET = b"s" * 48


def _setup(ledger: Ledger) -> str:
    ledger.set_budget("acme", limit=10**9)
    return create_key(ledger, "acme", secret=SECRET, max_concurrent=LIMIT).id


def test_the_limit_refuses_with_nothing_written_and_frees_a_slot_on_void(
    make_ledger: Callable[..., Ledger],
) -> None:
    ledger = make_ledger()
    key_id = _setup(ledger)
    held = [
        ledger.reserve("acme", AMOUNTS, key=f"j{n}", key_id=key_id, max_open_for_key=LIMIT)
        for n in range(LIMIT)
    ]
    assert {h.key_id for h in held} == {key_id}
    assert ledger.get_hold(held[0].id).key_id == key_id
    with pytest.raises(ConcurrencyExceeded) as caught:
        ledger.reserve("acme", AMOUNTS, key="over", key_id=key_id, max_open_for_key=LIMIT)
    assert (caught.value.limit, caught.value.open_holds, caught.value.key_id) == (3, 3, key_id)
    assert ledger.hold_for_key("over") is None
    assert ledger.budget_status("acme").held == LIMIT * AMOUNTS.cost_minor
    # A retry of a reservation already made is answered with it, even at the limit.
    assert ledger.reserve("acme", AMOUNTS, key="j0", key_id=key_id, max_open_for_key=3) == held[0]
    # Settled and voided holds leave the count; the key's other callers are not limited.
    ledger.void(held[0].id, reason="done")
    ledger.attach(held[1].id, "task-1")
    ledger.settle(held[1].id, units_milli=1000, cost_minor=10)
    assert ledger.open_holds_for_key(key_id) == 1
    ledger.reserve("acme", AMOUNTS, key_id=key_id, max_open_for_key=LIMIT)
    ledger.reserve("acme", AMOUNTS, key_id=key_id, max_open_for_key=LIMIT)
    assert ledger.open_holds_for_key(key_id) == LIMIT
    ledger.reserve("acme", AMOUNTS, key_id=key_id)  # no limit given: not counted
    assert ledger.reserve("acme", AMOUNTS).key_id is None
    with pytest.raises(LedgerValueError, match="max_open_for_key"):
        ledger.reserve("acme", AMOUNTS, max_open_for_key=1)
    assert ledger.check() == []


def _burst(url: str, key_id: str, start: Any, outcome: list[str]) -> None:
    with Ledger.open(url, timeout=60) as ledger:
        start.wait()
        try:
            ledger.reserve("acme", AMOUNTS, key_id=key_id, max_open_for_key=LIMIT)
            outcome.append("held")
        except ConcurrencyExceeded:
            outcome.append("refused")
        except Exception as exc:  # any other error fails the test
            outcome.append(f"{type(exc).__name__}: {exc}")


def test_sixteen_threads_never_hold_more_than_the_limit(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as ledger:
        key_id = _setup(ledger)
    for _ in range(2):  # two bursts: the second finds the first's holds open
        start = threading.Barrier(CLIENTS)
        outcome: list[str] = []
        threads = [
            threading.Thread(target=_burst, args=(ledger_url, key_id, start, outcome))
            for _ in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        with Ledger.open(ledger_url) as ledger:
            assert sorted(outcome) == ["held"] * LIMIT + ["refused"] * (CLIENTS - LIMIT)
            assert ledger.open_holds_for_key(key_id) == LIMIT
            assert ledger.check() == []
            for hold in list(ledger.holds(state="open")):  # free every slot for the next burst
                ledger.void(hold.id, reason="burst over")


def _process(url: str, key_id: str, ready: Any, start: Any, results: Any) -> None:
    outcome: list[str] = []
    with Ledger.open(url, timeout=60):
        ready.put(1)
    _burst(url, key_id, _Started(start), outcome)
    results.put(outcome[0])


class _Started:
    """A multiprocessing Event as the barrier ``_burst`` waits on."""

    def __init__(self, event: Any) -> None:
        self.event = event

    def wait(self) -> None:
        self.event.wait(timeout=120)


@pytest.mark.slow
def test_concurrent_processes_never_hold_more_than_the_limit(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as ledger:
        key_id = _setup(ledger)
    context = mp.get_context("spawn")
    ready, start, results = context.Queue(), context.Event(), context.Queue()
    workers = [
        context.Process(target=_process, args=(ledger_url, key_id, ready, start, results))
        for _ in range(PROCESSES)
    ]
    for process in workers:
        process.start()
    for _ in workers:
        ready.get(timeout=120)
    start.set()
    outcome = sorted(results.get(timeout=120) for _ in workers)
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert outcome == ["held"] * LIMIT + ["refused"] * (PROCESSES - LIMIT)
    with Ledger.open(ledger_url) as ledger:
        assert ledger.open_holds_for_key(key_id) == LIMIT
        assert len(list(ledger.holds())) == LIMIT
