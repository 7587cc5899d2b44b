"""Changing a budget keeps what is not given, in one transaction (issue 13, item 19).

``Ledger.set_budget(team, limit=...)`` used to reset an existing budget's period, time zone and
parent to the defaults; the CLI kept them by reading the budget first and writing it after, so a
change made by another process in between was lost. Each test runs on both backends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest

import klingcost.budgets
import klingcost.ledger.budgets
from klingcost.errors import BudgetConfigError, BudgetNotFound
from klingcost.ledger import Ledger


def _fields(ledger: Ledger, team: str) -> tuple[Any, ...]:
    b = ledger.get_budget(team)
    return (b.limit, b.unit, b.period, b.parent, b.soft, b.tz, b.pack, b.exponent)


def test_a_partial_update_keeps_every_field_not_given(make_ledger: Callable[..., Ledger]) -> None:
    ledger = make_ledger()
    ledger.set_budget("acme", limit=10**6)
    ledger.set_budget("team", limit=500, parent="acme", period="week", tz="Asia/Tokyo", soft="2/3")
    ledger.set_budget("team", limit=700)  # the review's call: it reset period, tz and parent
    assert _fields(ledger, "team") == (
        700, "credits", "week", "acme", Fraction(2, 3), "Asia/Tokyo", None, 0
    )  # fmt: skip
    ledger.set_budget("team", soft="0.9")  # no limit: the limit is kept too
    ledger.update_budget("team", period="month")
    assert _fields(ledger, "team") == (
        700, "credits", "month", "acme", Fraction(9, 10), "Asia/Tokyo", None, 0
    )  # fmt: skip
    ledger.set_budget("team", parent=None)  # None is a value: no parent
    assert ledger.get_budget("team").parent is None
    assert ledger.get_budget("team").period == "month"
    event = ledger.events(kind="budget_set", team="team")[-1]
    assert event.data["given"] == ["parent"] and event.data["period"] == "month"


def test_a_new_budget_takes_the_defaults_and_needs_a_limit(
    make_ledger: Callable[..., Ledger],
) -> None:
    ledger = make_ledger()
    with pytest.raises(BudgetConfigError, match="does not exist yet: give --limit N"):
        ledger.set_budget("team", period="day")
    with pytest.raises(BudgetNotFound):
        ledger.update_budget("team", limit=5)
    assert ledger.budgets() == [] and ledger.events() == []  # nothing written
    ledger.set_budget("team", limit=5)
    assert _fields(ledger, "team") == (5, "credits", "none", None, Fraction(4, 5), "UTC", None, 0)


def test_limit_major_is_scaled_by_the_unit_the_budget_keeps(
    make_ledger: Callable[..., Ledger],
) -> None:
    ledger = make_ledger()
    ledger.set_budget("pack", limit_major="12.5", unit="units", pack="image")
    ledger.set_budget("pack", limit_major="2.5")  # in Kling units: the unit is kept
    assert _fields(ledger, "pack")[:2] == (2500, "units")
    assert ledger.get_budget("pack").pack == "image"
    with pytest.raises(BudgetConfigError, match="more decimals than units allows"):
        ledger.set_budget("pack", limit_major="0.0001")
    with pytest.raises(BudgetConfigError, match="counts units \\(image\\): to count usd"):
        ledger.set_budget("pack", unit="usd")  # a limit in units means nothing in usd
    with pytest.raises(BudgetConfigError, match="--pack video applies only to --unit units"):
        ledger.set_budget("credits", limit=5, pack="video")
    assert _fields(ledger, "pack")[:2] == (2500, "units")


def test_a_refused_update_changes_nothing(make_ledger: Callable[..., Ledger]) -> None:
    ledger = make_ledger()
    ledger.set_budget("acme", limit=100, period="week")
    before = _fields(ledger, "acme")
    with pytest.raises(BudgetConfigError, match="Nowhere/Zone"):
        ledger.set_budget("acme", limit=5, tz="Nowhere/Zone")
    with pytest.raises(BudgetNotFound):
        ledger.set_budget("acme", limit=5, parent="missing")
    assert _fields(ledger, "acme") == before


def test_a_concurrent_change_is_not_lost(
    make_ledger: Callable[..., Ledger], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's change is inside its transaction, paused, when B starts its own: B waits, then
    reads A's budget and keeps A's period. The CLI's old read-then-write lost it."""
    setup = make_ledger()
    setup.set_budget("team", limit=100, period="day")
    first, second = make_ledger(timeout=20), make_ledger(timeout=20)
    inside, release = threading.Event(), threading.Event()
    make_budget = klingcost.budgets.make_budget

    def paused(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "A":
            inside.set()
            release.wait(20)
        return make_budget(*args, **kwargs)

    monkeypatch.setattr(klingcost.ledger.budgets, "make_budget", paused)
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:  # reported below
            errors.append(exc)

    a = threading.Thread(
        target=run, args=(lambda: first.set_budget("team", period="month"),), name="A"
    )
    b = threading.Thread(target=run, args=(lambda: second.set_budget("team", limit=700),), name="B")
    a.start()
    assert inside.wait(20)  # A has read the budget inside its write transaction
    b.start()
    time.sleep(0.3)
    assert b.is_alive()  # B waits for A's transaction, rather than reading around it
    release.set()
    a.join(20)
    b.join(20)
    assert errors == []
    budget = setup.get_budget("team")
    assert (budget.limit, budget.period) == (700, "month")  # both changes kept
