# mypy: disable-error-code="comparison-overlap"
# (exact amounts are compared with int literals: a Fraction equals an int exactly)
"""klingcost.deduction: parsing final_unit_deduction, what Kling lists per shape, the verdict."""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal
from fractions import Fraction

import pytest

from klingcost.deduction import (
    MARGIN,
    Listed,
    Shape,
    decide,
    drifted,
    listed_range,
    parse_deduction,
)
from klingcost.sheet import bundled_sheet, load_sheet, parse_sheet

KLING = [bundled_sheet()]


@pytest.mark.parametrize(
    ("value", "flag", "units"),
    [
        (None, "absent", None),
        ("", "absent", None),
        ("  ", "absent", None),
        ("0", "zero", Fraction(0)),
        ("0e999999999", "zero", Fraction(0)),
        ("-3", "negative", Fraction(-3)),
        ("-1e999999999", "negative", None),
        ("1e100", "absurd", Fraction(10**100)),
        ("1e999999999", "absurd", None),
        ("1e-999999999", "malformed", None),
        ("1e9999999999", "malformed", None),  # an exponent of 10 digits is not a number here
        ("NaN", "malformed", None),
        ("Infinity", "malformed", None),
        ("7 units", "malformed", None),
        ("9" * 65, "malformed", None),  # over 64 characters: not parsed at all
        ("7", "ok", Fraction(7)),
        (" 3.5 ", "ok", Fraction(7, 2)),
        (7, "ok", Fraction(7)),
        (Decimal("0.6"), "ok", Fraction(3, 5)),
        (True, "malformed", None),
        (7.0, "malformed", None),  # a float is not exact
        ({"a": 1}, "malformed", None),
    ],
)
def test_parse_deduction_never_trusts_the_text(value: object, flag: str, units: object) -> None:
    parsed = parse_deduction(value)
    assert (parsed.flag, parsed.units) == (flag, units)
    if isinstance(value, str):
        assert parsed.raw == value  # kept as sent, for reconcile to show


def test_huge_exponents_and_digit_runs_are_parsed_at_once() -> None:
    # An int over 4,300 digits cannot even be printed; nothing that long is a charge.
    assert parse_deduction(10**5000).flag == "absurd"
    assert parse_deduction(-(10**5000)).flag == "negative"
    started = time.perf_counter()
    for text in ("1e999999999", "-1e999999999", "1e-999999999", "9" * 100_000, "1" + "0" * 5000):
        parse_deduction(text)
    parse_deduction(Decimal("1e999999"))
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("shape", "low", "high"),
    [
        # 5 s clips: kling-v1 std (1) to kling-v2-master (10); kling-v2-6 pro with sound is 5.
        (Shape("videos/text2video", 5), 1, 10),
        (Shape("videos/image2video", 10), 2, 20),
        # O1 at 5 s: 0.6/s std (3) to 0.6 x 4/3 x 1.5 per second (6).
        (Shape("videos/omni-video", 5), 3, 6),
        (Shape("videos/omni-video", None), Fraction(9, 5), 12),
        # n=9 images: kling-v1's 1 per image to kling-image-o1's 8.
        (Shape("images/generations", None, 9), 9, 72),
        (Shape("images/generations", None, None), 1, 72),
        (Shape(None, None, None, pack="video"), 1, 20),
        (Shape(None, None, None, pack="image"), 1, 72),
    ],
)
def test_listed_range_spans_every_model_and_mode_of_the_shape(
    shape: Shape, low: Fraction, high: Fraction
) -> None:
    assert listed_range(shape, KLING) == Listed(Fraction(low), Fraction(high))


def test_a_shape_the_sheet_lists_nothing_for_has_no_range() -> None:
    assert listed_range(Shape("videos/text2video", 7), KLING) is None


def test_shape_from_a_holds_meta() -> None:
    meta = {"endpoint": "videos/text2video", "duration": "10", "n": 1, "model": "kling-v1"}
    assert Shape.from_meta(meta, "video") == Shape("videos/text2video", 10, 1, "video")
    assert Shape.from_meta({"duration": "1e9", "n": True}) == Shape()


def test_the_margin_is_a_quarter_beyond_either_end() -> None:
    listed = Listed(Fraction(2), Fraction(20))
    assert Fraction(1, 4) == MARGIN
    assert listed.plausible(Fraction(3, 2)) and listed.plausible(Fraction(25))
    assert not listed.plausible(Fraction(149, 100)) and not listed.plausible(Fraction(25001, 1000))


def test_drift_is_more_than_twice_or_less_than_half_the_estimate() -> None:
    assert not drifted(Fraction(14), Fraction(7)) and drifted(Fraction(1401, 100), Fraction(7))
    assert not drifted(Fraction(7, 2), Fraction(7)) and drifted(Fraction(349, 100), Fraction(7))
    assert drifted(Fraction(1), Fraction(0))


def test_the_real_seven_is_booked_against_an_overlays_absurd_estimate() -> None:
    # The attack: an overlay priced a kling-v1 10 s pro clip at 0.001 units, so the API's real
    # "7" was more than 10x the estimate and was thrown away: 0.001 was booked.
    listed = listed_range(Shape("videos/text2video", 10), KLING)
    decision = decide("succeed", parse_deduction("7"), estimate=Fraction(1, 1000), listed=listed)
    assert (decision.action, decision.basis, decision.flag) == ("settle", "booked", "ok")
    assert decision.units == 7 and decision.drift and decision.verdict == "drift"
    assert "drift: 7 units against an estimate of 0.001" in decision.note


def test_a_deduction_far_from_the_estimate_but_listed_is_booked_and_flagged() -> None:
    # The other attack's figure: 9.86 units against a 1-unit estimate, for a 5 s clip (Kling
    # lists up to 10 for that shape): booked, as before, but now flagged drift.
    listed = listed_range(Shape("videos/text2video", 5), KLING)
    decision = decide("succeed", parse_deduction("9.86"), estimate=Fraction(1), listed=listed)
    assert (decision.units, decision.verdict) == (Fraction(493, 50), "drift")


def test_an_implausible_figure_is_not_booked_and_the_estimate_is_kept_in_range() -> None:
    listed = listed_range(Shape("videos/text2video", 5), KLING)
    high = decide("succeed", parse_deduction("13"), estimate=Fraction(2), listed=listed)
    assert (high.basis, high.flag, high.units, high.verdict) == (
        "estimate",
        "absurd",
        2,
        "implausible",
    )
    assert "implausible: Kling lists 1 to 10 units for its shape" in high.note
    # Below the range: the estimate, the higher of the two, is booked.
    low = decide("succeed", parse_deduction("0.5"), estimate=Fraction(2), listed=listed)
    assert (low.units, low.verdict) == (2, "implausible")
    # An estimate outside Kling's list (a bogus overlay) is brought into it.
    bogus = decide("succeed", parse_deduction("0.001"), estimate=Fraction(1, 1000), listed=listed)
    assert bogus.units == 1 and "brought into the listed range (1 units)" in bogus.note


def test_absent_zero_and_malformed_settle_at_the_estimate_failed_tasks_are_voided() -> None:
    listed = Listed(Fraction(1), Fraction(10))
    for raw, flag in ((None, "absent"), ("0", "zero"), ("x", "malformed"), ("-2", "negative")):
        decision = decide("succeed", parse_deduction(raw), estimate=Fraction(2), listed=listed)
        assert (decision.basis, decision.flag, decision.units) == ("estimate", flag, 2)
        assert not decision.implausible
    charged = decide("failed", parse_deduction("2"), estimate=Fraction(2), listed=listed)
    assert (charged.action, charged.units) == ("settle", 2)
    not_charged = decide("failed", parse_deduction("900"), estimate=Fraction(2), listed=listed)
    assert (not_charged.action, not_charged.implausible) == ("void", True)
    pending = decide("processing", parse_deduction(None), estimate=Fraction(2), listed=listed)
    assert pending.action == "pending"


def test_a_published_sheet_widens_what_is_plausible() -> None:
    # An operator who publishes a sheet listing a dearer model makes its charges plausible.
    data = load_sheet().model_dump(mode="json", exclude={"origin"})
    data["video"]["models"]["kling-v3"] = {"flat": {"factor": 40, "source": "inferred"}}
    published = parse_sheet(data, origin="published")
    shape = Shape("videos/text2video", 5)
    assert listed_range(shape, KLING) == Listed(Fraction(1), Fraction(10))
    assert listed_range(shape, [*KLING, published]) == Listed(Fraction(1), Fraction(40))


def test_the_verdict_and_settlement_import_no_http_client() -> None:
    code = (
        "import sys, tempfile, os, types\n"
        "import klingcost.deduction, klingcost.settlement\n"
        "from klingcost.budgets import HoldAmounts\n"
        "from klingcost.ledger import Ledger\n"
        "from klingcost.deduction import parse_deduction\n"
        "path = os.path.join(tempfile.mkdtemp(), 'l.db')\n"
        "with Ledger.open(path) as ledger:\n"
        "    ledger.set_budget('t', limit=10**6)\n"
        "    meta = {'endpoint': 'videos/text2video', 'duration': 5}\n"
        "    hold = ledger.reserve('t', HoldAmounts(1000, 'video', 15000), meta=meta)\n"
        "    task = types.SimpleNamespace(task_id='x', status='succeed', status_msg='',"
        " deduction=parse_deduction('1'))\n"
        "    assert klingcost.settlement.resolve(ledger, hold, task).action == 'settled'\n"
        "print(sorted(m for m in ('httpx', 'click', 'starlette', 'uvicorn', 'psycopg')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
