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
from klingcost.errors import UnpricedRequestError
from klingcost.listing import catalogue_jobs, listed_units
from klingcost.pricing import estimate, price
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
        # 5 s clips: kling-v1 std (1) to kling-v3 4k (3 units/s x 5 = 15).
        (Shape("videos/text2video", 5), 1, 15),
        # 10 s: kling-v1 std (2) to kling-v3 4k (30; kling-v2-master is 20).
        (Shape("videos/image2video", 10), 2, 30),
        # 15 s exists only for kling-v3: std silent 0.6/s (9) to 4k 3/s (45).
        (Shape("videos/text2video", 15), 9, 45),
        # 7 s too (kling-v3 takes every second from 3 to 15): 0.6 x 7 to 3 x 7.
        (Shape("videos/text2video", 7), Fraction(21, 5), 21),
        # multi-image2video takes kling-v1-6 only: std (2 x 2) to pro (3.5 x 2) at 10 s.
        (Shape("videos/multi-image2video", 10), 4, 7),
        # Omni at 5 s: O1 std and kling-v3-omni std at 0.6/s (3) to kling-v3-omni 4k with a
        # video reference, 4.5/s (22.5; O1's dearest, pro with a video reference, is 6).
        (Shape("videos/omni-video", 5), 3, Fraction(45, 2)),
        (Shape("videos/omni-video", None), Fraction(9, 5), Fraction(135, 2)),
        # n=9 images: kling-v1's 1 per image to kling-v3-omni at 4k, 16 per image.
        (Shape("images/generations", None, 9), 9, 144),
        (Shape("images/generations", None, None), 1, 144),
        (Shape(None, None, None, pack="video"), 1, Fraction(135, 2)),
        (Shape(None, None, None, pack="image"), 1, 144),
    ],
)
def test_listed_range_spans_every_model_and_mode_of_the_shape(
    shape: Shape, low: Fraction, high: Fraction
) -> None:
    assert listed_range(shape, KLING) == Listed(Fraction(low), Fraction(high))


def test_a_shape_the_sheet_lists_nothing_for_has_no_range() -> None:
    assert listed_range(Shape("videos/text2video", 16), KLING) is None
    assert listed_range(Shape("videos/multi-image2video", 7), KLING) is None


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
    # lists up to 15 for that shape): booked, as before, but now flagged drift.
    listed = listed_range(Shape("videos/text2video", 5), KLING)
    decision = decide("succeed", parse_deduction("9.86"), estimate=Fraction(1), listed=listed)
    assert (decision.units, decision.verdict) == (Fraction(493, 50), "drift")


def test_an_implausible_figure_is_not_booked_and_the_estimate_is_kept_in_range() -> None:
    listed = listed_range(Shape("videos/text2video", 5), KLING)
    # 5 s clips are listed at 1 to 15 units: 18.75 with the margin, 19 beyond it.
    high = decide("succeed", parse_deduction("19"), estimate=Fraction(2), listed=listed)
    assert (high.basis, high.flag, high.units, high.verdict) == (
        "estimate",
        "absurd",
        2,
        "implausible",
    )
    assert "implausible: Kling lists 1 to 15 units for its shape" in high.note
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
    data["video"]["models"]["kling-v9"] = {"flat": {"factor": 40, "source": "inferred"}}
    published = parse_sheet(data, origin="published")
    shape = Shape("videos/text2video", 5)
    assert listed_range(shape, KLING) == Listed(Fraction(1), Fraction(15))
    assert listed_range(shape, [*KLING, published]) == Listed(Fraction(1), Fraction(40))


# --- the range is priced by klingcost.pricing over the sheet's catalogue ---------------------

V3_4K_10S = {"model_name": "kling-v3", "mode": "4k", "duration": "10", "prompt": "a ship"}


def test_a_kling_v3_4k_10_second_charge_of_30_is_booked_as_30() -> None:
    # The review's case: the old hand-written range knew no per-second model, so a 10 s clip
    # was listed at 2 to 20 and a true charge of 30 was booked as 20 (money spent, not counted).
    assert estimate("videos/text2video", V3_4K_10S).units == 30
    listed = listed_range(Shape("videos/text2video", 10), KLING)
    decision = decide("succeed", parse_deduction("30"), estimate=Fraction(30), listed=listed)
    assert (decision.basis, decision.flag, decision.units, decision.verdict) == (
        "booked",
        "ok",
        30,
        "ok",
    )


def test_a_kling_v3_text2video_of_15_seconds_has_a_range_and_its_charges_lie_in_it() -> None:
    # 15 s was listed as nothing, so any figure up to the cap was booked for it.
    listed = listed_range(Shape("videos/text2video", 15), KLING)
    assert listed == Listed(Fraction(9), Fraction(45))
    for mode, sound, voices in (
        ("std", "off", 0),
        ("pro", "on", 0),
        ("pro", "on", 1),
        ("4k", "on", 0),
    ):
        body: dict[str, object] = {
            "model_name": "kling-v3",
            "mode": mode,
            "duration": 15,
            "sound": sound,
            "prompt": "a ship",
        }
        if voices:
            body["voice_list"] = [{"voice_id": "v1"}]
        units = estimate("videos/text2video", body).units
        decision = decide("succeed", parse_deduction(str(units)), estimate=units, listed=listed)
        assert (decision.basis, decision.units) == ("booked", units), body
    absurd = decide("succeed", parse_deduction("100"), estimate=Fraction(9), listed=listed)
    assert (absurd.verdict, absurd.units) == ("implausible", 9)


def test_a_charge_above_the_new_maximum_is_still_not_booked() -> None:
    listed = listed_range(Shape("videos/text2video", 10), KLING)
    assert listed == Listed(Fraction(2), Fraction(30))  # kling-v1 std to kling-v3 4k
    edge = decide("succeed", parse_deduction("37.5"), estimate=Fraction(30), listed=listed)
    assert (edge.basis, edge.units) == ("booked", Fraction(75, 2))  # 30 + 1/4
    over = decide("succeed", parse_deduction("37.51"), estimate=Fraction(30), listed=listed)
    assert (over.basis, over.flag, over.units, over.verdict) == (
        "estimate",
        "absurd",
        30,
        "implausible",
    )
    assert "Kling lists 2 to 30 units for its shape" in over.note


VIDEO_REFERENCE = [{"video_url": "https://x.invalid/v.mp4", "refer_type": "feature"}]


@pytest.mark.parametrize(
    ("body", "units"),
    [
        # kling-v3-omni image at 4k: 16 image units each, 144 for nine.
        ({"model_name": "kling-v3-omni", "resolution": "4k", "n": 9}, 144),
        # kling-v3-omni 4k with a video reference, 15 s: 4.5 units/s.
        (
            {"model_name": "kling-v3-omni", "mode": "4k", "duration": 15},
            Fraction(135, 2),
        ),
    ],
)
def test_the_dearest_options_of_the_catalogue_are_the_top_of_the_range(
    body: dict[str, object], units: Fraction
) -> None:
    if "n" in body:
        endpoint, full = "images/generations", body
    else:
        endpoint, full = "videos/omni-video", {**body, "video_list": VIDEO_REFERENCE}
    priced = estimate(endpoint, {"prompt": "a ship", **full})
    assert priced.units == units
    shape = Shape.from_meta(
        {"endpoint": endpoint, "duration": priced.request.duration, "n": priced.request.n}
    )
    listed = listed_range(shape, KLING)
    assert listed is not None and listed.high == units


def test_a_voice_factor_widens_the_range() -> None:
    # kling-v2-6 pro with voices is priced by video.voice (2.5 x 2.4 = 6 for 5 s), which the
    # old table did not read: at 10x it is 25 units, the top of the 5 s range.
    data = load_sheet().model_dump(mode="json", exclude={"origin"})
    data["video"]["voice"]["kling-v2-6"]["factor"] = 10
    sheet = parse_sheet(data, origin="loud voices")
    body = {"model_name": "kling-v2-6", "mode": "pro", "sound": "on", "prompt": "a ship"}
    voiced = {**body, "voice_list": [{"voice_id": "v"}]}
    assert estimate("videos/text2video", voiced).units == 6
    assert estimate("videos/text2video", voiced, sheet=sheet).units == 25
    assert listed_range(Shape("videos/text2video", 5), [sheet]) == Listed(Fraction(1), Fraction(25))


def test_a_model_an_overlay_prices_per_second_is_listed_at_once() -> None:
    # A model added by an overlay alone is in the range the day it is priced: no second table.
    data = load_sheet().model_dump(mode="json", exclude={"origin"})
    data["per_second"]["kling-v9"] = {
        "pro": {"silent": {"units": 10, "source": "inferred"}},
    }
    data["catalog"]["videos/text2video"]["kling-v9"] = {"source": "inferred", "durations": "3-20"}
    sheet = parse_sheet(data, origin="overlay")
    body = {"model_name": "kling-v9", "mode": "pro", "duration": 20, "prompt": "a ship"}
    assert estimate("videos/text2video", body, sheet=sheet).units == 200
    assert listed_range(Shape("videos/text2video", 20), KLING) is None
    assert listed_range(Shape("videos/text2video", 20), [sheet]) == Listed(
        Fraction(200), Fraction(200)
    )
    assert listed_range(Shape("videos/text2video", 5), [sheet]) == Listed(Fraction(1), Fraction(50))


def test_the_listing_is_computed_once_per_sheet() -> None:
    sheet = parse_sheet(load_sheet().model_dump(mode="json", exclude={"origin"}), origin="copy")
    first = listed_units(sheet)
    assert listed_units(sheet) is first  # cached on the sheet: settling does not re-price it
    assert listed_units(bundled_sheet()) is not first
    assert listed_units(bundled_sheet()) == first  # the same sheet lists the same


def test_every_job_the_catalogue_takes_lies_in_the_range_of_its_shape() -> None:
    sheet = bundled_sheet()
    jobs = list(catalogue_jobs(sheet))
    taken = {(endpoint, model) for endpoint, models in sheet.models.items() for model in models}
    assert {(job.endpoint, job.model) for job in jobs} == taken
    priced = 0
    for job in jobs:
        try:
            units = price(job, sheet=sheet).units
        except UnpricedRequestError:  # taken, but not priced (kling-v3 4k with voices)
            continue
        priced += 1
        listed = listed_range(Shape(job.endpoint, job.duration, job.n), [sheet])
        assert listed is not None and listed.low <= units <= listed.high, job.job
    assert priced > 450


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
