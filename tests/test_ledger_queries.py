"""The ledger's read models (klingcost.ledger.queries): named rows on both backends, and the
usage-log write, whole or not at all."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest

from klingcost.budgets import HoldAmounts
from klingcost.clock import ManualClock
from klingcost.ledger import Ledger, queries

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
META: dict[str, str | int | None] = {
    "endpoint": "videos/text2video",
    "model": "kling-v1-5",
    "mode": "pro",
    "duration": 10,
    "sound": 0,
    "video_reference": 0,
    "reference_image": 0,
    "n": 1,
}


@pytest.fixture
def ledger(make_ledger: Callable[..., Ledger]) -> Ledger:
    """Two settled tasks (one charged as estimated, one over) and one open, on each backend."""
    opened = make_ledger(clock=ManualClock(START))
    opened.set_budget("studio", limit=10**12)
    for charged in (7000, 8400, None):
        hold = opened.reserve("studio", HoldAmounts(7000, "video", 105_000, "credits"), meta=META)
        opened.attach(hold.id, f"task-{hold.id}")
        if charged is not None:
            opened.settle(
                hold.id,
                units_milli=charged,
                cost_minor=charged * 15,
                raw_deduction={7000: "7", 8400: "8.4"}[charged],
                task_status="succeed",
            )
    return opened


def test_grouped_sums_are_named(ledger: Ledger) -> None:
    sums = queries.grouped_sums(ledger, ["team", "model"], since=date(2026, 11, 20))
    row = sums[("studio", "kling-v1-5")]
    assert (row.settled, row.open, row.voided) == (2, 1, 0)
    assert row.settled_estimate_minor == 2 * 105_000
    assert row.charged_minor == (7000 + 8400) * 15
    assert (row.held_minor, row.held_units_milli) == (105_000, 7000)
    assert queries.grouped_sums(ledger, ["team"], until=date(2026, 11, 19)) == {}


def test_class_sums_and_the_task_that_disagrees(ledger: Ledger) -> None:
    (only,) = queries.class_sums(ledger)
    assert only.job.label == "videos/text2video kling-v1-5 pro 10s"
    assert (only.settled, only.compared, only.agreeing) == (2, 2, 1)
    assert (only.estimated_units_milli, only.charged_units_milli) == (14_000, 15_400)
    (task,) = queries.disagreeing_tasks(ledger)
    assert (task.estimated_units_milli, task.charged_units_milli) == (7000, 8400)
    assert task.deduction_flag == "ok" and task.job == only.job
    (charge_a, charge_b) = sorted(queries.observed_charges(ledger))
    assert (charge_a.units_milli, charge_a.tasks, charge_b.units_milli) == (7000, 1, 8400)


def test_task_rows_and_the_snapshot_agree(ledger: Ledger) -> None:
    rows = [queries.TaskRow(*queries.task_cells(r)) for r in queries.task_rows(ledger)]
    assert [(r.state, r.charged) for r in rows][:2] == [
        ("settled", "105000"),
        ("settled", "126000"),
    ]
    newest = queries.latest_tasks(ledger, limit=1)[0]
    assert (newest.state, newest.held, newest.charged) == ("submitted", "105000", None)
    with queries.task_snapshot(ledger) as tasks:
        assert tasks.row(newest.hold_id)[0] == newest.hold_id
        if tasks.builds_lines:
            (lines,) = tasks.line_batches(state="open")
            assert lines[0].startswith(f"{newest.hold_id},task-{newest.hold_id},studio,")


def _record(reqid: str) -> queries.UsageRecord:
    return queries.UsageRecord(reqid, "kling-v1-5", "1500", None, None, "{}")


def test_store_usage_matches_and_keeps_nothing_when_then_fails(ledger: Ledger) -> None:
    first = next(ledger.holds(state="settled"))
    records = [_record(str(first.task_id)), _record("proxy-1")]

    def refuse(stored: queries.StoredUsage) -> None:
        assert stored.new == 2  # inside the transaction, both rows are there
        raise RuntimeError("the overlay could not be written")

    with pytest.raises(RuntimeError):
        queries.store_usage(ledger, records, imported_at=START.isoformat(), then=refuse)
    assert queries.credit_rows(ledger) == [] and queries.unmatched_usage(ledger) == ()

    stored = queries.store_usage(ledger, records, imported_at=START.isoformat(), then=lambda s: s)
    assert (stored.new, stored.matched_by_id, stored.matched_by_order) == (2, 1, 1)
    assert sorted(c.units_milli for c in stored.credits) == [7000, 8400]
    again = queries.store_usage(ledger, records, imported_at=START.isoformat(), then=lambda s: s)
    assert again.new == 0  # once each, by reqid


def test_a_hold_reserved_without_a_class_is_listed_as_unclassified(ledger: Ledger) -> None:
    from klingcost.reconcile import reconcile

    hold = ledger.reserve("studio", HoldAmounts(2000, "image", 30_000, "credits"))
    ledger.attach(hold.id, "task-bare")
    ledger.settle(hold.id, units_milli=2000, cost_minor=30_000, raw_deduction="2")
    jobs = {row.job for row in queries.class_sums(ledger)}
    assert queries.Unclassified("image") in jobs
    (bare,) = [c for c in reconcile(ledger).to_dict()["classes"] if c["label"] == "? ? n=0"]
    assert bare["class"] == {
        "endpoint": "",
        "model": "",
        "mode": None,
        "duration": None,
        "sound": False,
        "video_reference": False,
        "reference_image": False,
        "n": 0,
        "pack": "image",
    }
    assert bare["compared"] == 1
