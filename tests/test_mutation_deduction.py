# mypy: disable-error-code="comparison-overlap"
# (exact amounts are compared with int literals: a Fraction equals an int exactly)
"""The deduction verdict's edges, one assertion per rule a settlement relies on.

Written against the survivors of ``scripts/mutation deduction``: each test fails when one
boundary, flag or note of :mod:`klingcost.deduction` changes.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from klingcost.deduction import (
    Decision,
    Listed,
    Shape,
    decide,
    drifted,
    judge,
    listed_range,
    parse_deduction,
)
from klingcost.sheet import PriceSheet, load_sheet, parse_sheet

T2V = "videos/text2video"
IMG = "images/generations"
ONE_TO_TWENTY = Listed(Fraction(1), Fraction(20))


def _sheet(change: Any) -> PriceSheet:
    data = load_sheet().model_dump(mode="json", exclude={"origin"})
    change(data)
    return parse_sheet(data, origin="published")


# --- parsing ----------------------------------------------------------------------------------


def test_a_value_of_the_wrong_type_is_kept_as_json_text() -> None:
    # reconcile shows ``raw``: the operator sees what the API sent, as JSON.
    assert parse_deduction([1, 2]).raw == "[1, 2]"
    assert parse_deduction({"u": Decimal("1.5")}).raw == '{"u": "1.5"}'
    assert parse_deduction([1, 2]).flag == "malformed"


def test_a_value_json_cannot_write_is_kept_as_its_repr() -> None:
    loop: list[object] = []
    loop.append(loop)
    assert parse_deduction(loop) == parse_deduction(loop)
    assert parse_deduction(loop).raw == "[[...]]"


def test_an_integer_of_64_digits_is_parsed_one_of_65_is_not() -> None:
    largest = 10**64 - 1
    assert parse_deduction(largest).units == largest
    assert parse_deduction(largest).raw == str(largest)
    assert parse_deduction(10**64).raw == "(an integer of over 64 digits)"
    assert (parse_deduction(10**64).units, parse_deduction(10**64).flag) == (None, "absurd")
    assert parse_deduction(-(10**64)).flag == "negative"


def test_an_integer_value_is_parsed_as_its_text() -> None:
    assert parse_deduction(7) == parse_deduction("7")
    assert parse_deduction(Decimal("2.5")).raw == "2.5"


def test_a_64_character_text_is_parsed() -> None:
    text = "0" * 63 + "7"
    assert (parse_deduction(text).units, parse_deduction(text).flag) == (7, "ok")
    assert parse_deduction("0" * 64 + "7").flag == "malformed"


def test_an_exponent_of_1000_is_a_number_one_of_1001_is_not() -> None:
    assert parse_deduction("1e1000").units == 10**1000
    assert parse_deduction("1e1000").flag == "absurd"
    assert parse_deduction("1e-1000") == parse_deduction("1e-1000")
    assert parse_deduction("1e-1000").units == Fraction(1, 10**1000)
    assert (parse_deduction("1e1001").units, parse_deduction("1e1001").flag) == (None, "absurd")
    assert parse_deduction("-1e1001").flag == "negative"
    assert parse_deduction("1e-1001").flag == "malformed"


def test_the_cap_itself_is_ok_one_more_is_absurd() -> None:
    assert parse_deduction("1000").flag == "ok"
    assert parse_deduction("1000.001").flag == "absurd"
    assert parse_deduction("5", cap=Fraction(5)).flag == "ok"


# --- the shape and its listed range -----------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (3600, 3600),
        ("3600", 3600),
        (3601, None),
        (0, None),
        (-5, None),
        ("03600", None),
        ("12345", None),
        (True, None),
    ],
)
def test_a_meta_duration_is_kept_only_between_1_and_3600(
    duration: object, expected: object
) -> None:
    assert Shape.from_meta({"duration": duration}).duration == expected


def test_a_meta_endpoint_that_is_not_text_is_unknown_and_the_pack_is_kept() -> None:
    assert Shape.from_meta({"endpoint": 5}, pack="image") == Shape(None, None, None, "image")
    assert Shape.from_meta({"endpoint": T2V, "n": "2"}) == Shape(T2V, None, 2, None)


def test_an_image_pack_without_an_endpoint_is_priced_as_images() -> None:
    sheet = load_sheet()
    by_pack = listed_range(Shape(pack="image", n=1), [sheet])
    assert by_pack == listed_range(Shape(IMG, n=1), [sheet])
    assert by_pack != listed_range(Shape(n=1), [sheet])


def test_a_models_sound_factor_widens_the_range() -> None:
    def loud(data: dict[str, Any]) -> None:
        data["video"]["sound"]["kling-v2-6"]["factor"] = 20

    # kling-v2-6 pro is 2.5 units for 5 s; with sound at 20x it is 50 (kling-v3 4k is 15).
    assert listed_range(Shape(T2V, 5), [_sheet(loud)]) == Listed(Fraction(1), Fraction(50))


def test_the_range_spans_every_sheet_whatever_their_order() -> None:
    def dear(data: dict[str, Any]) -> None:
        data["video"]["models"]["kling-v9"] = {"flat": {"factor": 40, "source": "inferred"}}

    assert listed_range(Shape(T2V, 5), [_sheet(dear), load_sheet()]) == Listed(
        Fraction(1), Fraction(40)
    )


def test_a_fractional_range_prints_as_a_plain_decimal() -> None:
    assert Listed(Fraction(1, 10**7), Fraction(5, 2)).describe() == "0.0000001 to 2.5 units"


# --- judging and drift ------------------------------------------------------------------------


def test_a_figure_in_range_is_ok_and_plausible() -> None:
    assert judge(parse_deduction("7"), ONE_TO_TWENTY) == ("ok", False)
    assert judge(parse_deduction("7"), None) == ("ok", False)
    assert judge(parse_deduction("5000"), None) == ("absurd", True)
    assert judge(parse_deduction("100"), ONE_TO_TWENTY) == ("absurd", True)


def test_equal_units_never_drift() -> None:
    assert drifted(Fraction(1), Fraction(1)) is False
    assert drifted(Fraction(0), Fraction(0)) is False
    assert drifted(Fraction(1), Fraction(0)) is True


# --- decisions --------------------------------------------------------------------------------


def test_a_running_task_waits() -> None:
    assert decide(
        "processing", parse_deduction("3"), estimate=Fraction(2), listed=ONE_TO_TWENTY
    ) == Decision("pending", "pending", "ok", note="task processing")


def test_a_failed_task_is_voided_with_its_flag() -> None:
    failed = decide("failed", parse_deduction("900"), estimate=Fraction(2), listed=ONE_TO_TWENTY)
    assert failed == Decision("void", "void", "absurd", implausible=True, note="task failed")
    said = decide(
        "failed", parse_deduction(None), estimate=Fraction(2), listed=None, status_msg="boom"
    )
    assert said == Decision("void", "void", "absent", note="task failed: boom")


def test_an_absent_figure_settles_at_the_estimate_as_it_was() -> None:
    # Nothing implausible was said: the estimate the hold was admitted at is booked unclamped.
    absent = decide(
        "succeed", parse_deduction(None), estimate=Fraction(1, 1000), listed=ONE_TO_TWENTY
    )
    assert absent == Decision(
        "settle",
        "estimate",
        "absent",
        Fraction(1, 1000),
        note="final_unit_deduction absent (None): settled at the estimate",
    )
    unlisted = decide("succeed", parse_deduction(""), estimate=Fraction(3), listed=None)
    assert (unlisted.action, unlisted.units) == ("settle", 3)


def test_an_implausible_figure_settles_at_the_estimate_brought_into_range() -> None:
    far = decide(
        "succeed", parse_deduction("900"), estimate=Fraction(1, 1000), listed=ONE_TO_TWENTY
    )
    assert far == Decision(
        "settle",
        "estimate",
        "absurd",
        Fraction(1),
        implausible=True,
        note="final_unit_deduction absurd ('900'), implausible: Kling lists 1 to 20 units for "
        "its shape: settled at the estimate brought into the listed range (1 units)",
    )
