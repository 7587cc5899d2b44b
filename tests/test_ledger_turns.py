"""Turns at periodic work shared by processes (``klingcost.ledger.turns``), on SQLite and
PostgreSQL: one taker per interval, however many ask at once."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from threading import Barrier

import pytest

from klingcost.clock import FixedClock, ManualClock
from klingcost.errors import LedgerValueError
from klingcost.ledger import Ledger

START = datetime(2026, 12, 4, 4, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def test_a_turn_is_taken_once_an_interval_by_whoever_asks_first(
    make_ledger: Callable[..., Ledger],
) -> None:
    clock = ManualClock(START)
    one, two = make_ledger(clock=clock), make_ledger(clock=clock)  # two processes' connections
    assert one.last_turn("settle") is None
    assert one.take_turn("settle", "host-a:1", MINUTE)
    assert not two.take_turn("settle", "host-b:7", MINUTE)
    assert two.last_turn("settle") == ("host-a:1", START)
    clock.advance(seconds=59.999999)
    assert not two.take_turn("settle", "host-b:7", MINUTE)
    clock.advance(seconds=0.000001)  # a minute to the microsecond
    assert two.take_turn("settle", "host-b:7", MINUTE)
    assert one.last_turn("settle") == ("host-b:7", START + MINUTE)
    assert one.take_turn("another job", "host-a:1", MINUTE)  # each job has its own turns


def test_of_many_asking_at_once_exactly_one_takes_the_turn(
    make_ledger: Callable[..., Ledger],
) -> None:
    clock = FixedClock(START)
    ledgers = [make_ledger(clock=clock) for _ in range(8)]
    ledgers[0].take_turn("warm-up", "x", MINUTE)  # the schema is made before the race
    together = Barrier(len(ledgers))

    def ask(index: int) -> bool:
        together.wait()
        return ledgers[index].take_turn("settle", f"worker-{index}", MINUTE)

    with ThreadPoolExecutor(len(ledgers)) as pool:
        taken = list(pool.map(ask, range(len(ledgers))))
    assert taken.count(True) == 1
    winner = f"worker-{taken.index(True)}"
    assert ledgers[0].last_turn("settle") == (winner, START)


@pytest.mark.parametrize(
    ("job", "holder", "every"),
    [("", "a", MINUTE), ("settle", "", MINUTE), ("settle", "a", timedelta(0))],
)
def test_a_turn_without_a_job_a_holder_or_an_interval_is_refused(
    make_ledger: Callable[..., Ledger], job: str, holder: str, every: timedelta
) -> None:
    ledger = make_ledger()
    with pytest.raises(LedgerValueError):
        ledger.take_turn(job, holder, every)
    assert ledger.last_turn(job) is None  # nothing written
