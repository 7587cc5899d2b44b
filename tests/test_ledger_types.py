"""A hold's typed fields (endpoint, job class, cost exponent) and the ledger package's surface:
the facade still offers every name and method it did before it was split by concept."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

import klingcost.ledger
from klingcost.budgets import HoldAmounts
from klingcost.ledger import Hold, Ledger, MetaValue, schema

META: dict[str, MetaValue] = {
    "endpoint": "/v1/videos/text2video",
    "model": "kling-v2-1",
    "mode": "pro",
    "duration": 10,  # a number in a text column: stored as its text
    "sound": "1",  # a digit string in an integer column: stored as the int
    "video_reference": 0,
    "reference_image": "0",
    "n": "1",
    "provider": "kling",  # not part of the job class
}


def _stored_class(ledger: Ledger, hold_id: int) -> dict[str, object]:
    columns = ", ".join(schema.CLASS_COLUMNS)
    row = ledger.execute(f"SELECT {columns} FROM holds WHERE id = ?", (hold_id,)).fetchone()
    return dict(zip(schema.CLASS_COLUMNS, row, strict=True))


def test_a_hold_gives_its_job_class_as_the_ledger_stores_it(
    make_ledger: Callable[..., Ledger],
) -> None:
    ledger = make_ledger()
    ledger.set_budget("team", limit=10**9)
    reserved = ledger.reserve("team", HoldAmounts(1000, "video", 100), key="k", meta=META)
    stored = _stored_class(ledger, reserved.id)
    assert stored == {
        "endpoint": "/v1/videos/text2video",
        "model": "kling-v2-1",
        "mode": "pro",
        "duration": "10",
        "sound": 1,
        "video_reference": 0,
        "reference_image": 0,
        "n": 1,
    }
    # The same from the hold reserve returned, from one read back, and after attach.
    assert reserved.job_class == stored
    assert ledger.get_hold(reserved.id).job_class == stored
    attached = ledger.attach(reserved.id, "task-1", reserved=reserved)
    assert attached.job_class == stored
    assert reserved.endpoint == attached.endpoint == "/v1/videos/text2video"
    # Typed: klingcost.jobclass's JobClass, the same for the hold as reserved and as read back.
    job = ledger.get_hold(reserved.id).job
    assert job is not None and job == reserved.job
    assert (job.endpoint, job.model, job.mode, job.duration) == (
        "/v1/videos/text2video",
        "kling-v2-1",
        "pro",
        10,
    )
    assert (job.sound, job.video_reference, job.reference_image, job.n) == (True, False, False, 1)


def test_a_hold_without_a_job_class_says_none(make_ledger: Callable[..., Ledger]) -> None:
    ledger = make_ledger()
    ledger.set_budget("team", limit=10**9)
    hold = ledger.reserve("team", HoldAmounts(1000, "video", 100), meta={"endpoint": 7})
    assert hold.endpoint is None  # a number is no endpoint (stored as its text in the column)
    back = ledger.get_hold(hold.id)
    assert back.endpoint is None
    assert back.job is None  # no model: no class
    assert back.job_class == dict.fromkeys(schema.CLASS_COLUMNS) | {"endpoint": "7"}
    assert ledger.reserve("team", HoldAmounts(1, "video", 1)).job_class == dict.fromkeys(
        schema.CLASS_COLUMNS
    )


@pytest.mark.parametrize(("currency", "exponent"), [("credits", 0), ("usd", 4), ("cny", 3)])
def test_a_hold_knows_the_minor_unit_of_its_cost(
    make_ledger: Callable[..., Ledger], currency: str, exponent: int
) -> None:
    ledger = make_ledger()
    ledger.set_budget("team", limit=10**9, unit=currency)
    amounts = HoldAmounts(1000, "video", 9800, currency, exponent=exponent)
    reserved = ledger.reserve("team", amounts)
    assert reserved.cost_exponent == exponent
    # Read back, the estimate no longer carries it: the currency's own minor unit says it.
    back = ledger.get_hold(reserved.id)
    assert back.estimate.exponent is None
    assert back.cost_exponent == exponent


def test_a_currency_klingcost_does_not_know_counts_in_minor_units() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    hold = Hold(1, "k", "t", "held", HoldAmounts(1, "video", 5, "xts"), now, now)
    assert hold.cost_exponent == 0
    assert replace(hold, estimate=HoldAmounts(1, "video", 5, "xts", exponent=6)).cost_exponent == 6


def test_every_name_the_ledger_exported_is_still_there() -> None:
    for name in klingcost.ledger.__all__:
        assert getattr(klingcost.ledger, name) is not None, name
    # The names other modules and the docs import from klingcost.ledger, besides __all__.
    for name in ("BUDGET_REFERENCES", "LOCAL_OVERLAYS", "OPEN_STATES", "RELEASED_KEY"):
        assert name in klingcost.ledger.__all__


def test_the_facade_offers_every_method_of_the_ledger() -> None:
    public = {name for name in dir(Ledger) if not name.startswith("_")}
    assert public >= {
        "open", "close", "execute", "reading", "conn", "dialect", "read_only",
        "background_checkpoints", "set_budget", "update_budget", "get_budget",
        "budget_status", "budgets", "preview_budget", "rename_budget", "delete_budget",
        "publish_sheet", "published_sheet", "published_versions", "allow_local_overlays",
        "local_overlays_allowed", "reserve", "attach", "settle", "void", "mark_unknown",
        "note_not_found", "get_hold", "hold_for_task", "hold_for_key", "holds", "events",
        "check", "rebuild_rollups", "add_key", "api_keys", "get_key", "find_key",
        "revoke_key", "open_holds_for_key", "record_refusal", "refusals", "add_alert_rule",
        "alert_rules", "alert_rule", "remove_alert_rule", "claim_due_alerts",
        "record_alert_attempt", "alert_outbox", "alert_counts", "warn_forecasts",
        "daily_charges", "forecast",
    }  # fmt: skip


def test_each_part_of_the_ledger_reads_in_one_sitting() -> None:
    """One concept per module, a few hundred lines each (reserve, the hot path on two
    backends, is the largest)."""
    parts = {sys.modules[cls.__module__] for cls in Ledger.__mro__ if cls is not object}
    parts |= {sys.modules["klingcost.ledger.types"], sys.modules["klingcost.ledger.rows"]}
    sizes = {m.__name__: len(Path(str(m.__file__)).read_text().splitlines()) for m in parts}
    assert len(sizes) == 16, sizes  # the facade, its base, 12 parts, the values and the rows
    assert max(sizes.values()) <= 450, sizes
