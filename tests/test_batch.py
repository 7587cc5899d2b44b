"""estimate_batch: the library path of `klingcost estimate` on a JSON Lines batch (issue 14)."""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any, cast

from klingcost.batch import estimate_batch
from klingcost.errors import RequestValidationError
from klingcost.money import format_amount
from klingcost.pricing import estimate
from klingcost.sheet import load_sheet, parse_sheet

SHIP = {"model_name": "kling-v1-5", "mode": "pro", "duration": "10", "prompt": "a ship"}


def test_each_line_priced_as_estimate_prices_it_with_exact_totals() -> None:
    sheet = load_sheet()
    cat = {"model_name": "kling-v1-5", "prompt": "a cat", "n": 4}
    lines = [
        json.dumps({"endpoint": "text2video", "body": SHIP}),
        "",
        json.dumps({"endpoint": "images/generations", "body": cat}),
        json.dumps({"endpoint": "text2video", "body": SHIP}),
        "{not json",
        json.dumps({"endpoint": "text2video", "body": {"prompt": "x", "duration": 7}}),
    ]
    batch = estimate_batch(lines, sheet=sheet)
    got = list(batch)
    assert [line.number for line in got] == [1, 3, 4, 5, 6]  # the blank line is skipped
    ship = estimate("videos/text2video", SHIP, sheet=sheet)
    image = estimate("images/generations", cat, sheet=sheet)
    assert got[0].estimate == ship and got[2].estimate == ship
    assert got[1].estimate == image
    assert isinstance(got[3].error, str) and got[3].error.startswith("not JSON:")
    assert isinstance(got[4].error, RequestValidationError)
    totals = batch.totals()
    assert (totals.lines, totals.priced, totals.errors) == (5, 3, 2)
    assert totals.units == {"video": 2 * ship.units, "image": image.units}
    assert totals.cost == 2 * ship.cost.amount + image.cost.amount
    assert totals.currency == ship.cost.currency


def test_a_repeated_line_is_priced_once_and_a_different_prompt_is_not_a_repeat() -> None:
    sheet = load_sheet()
    same = json.dumps({"endpoint": "text2video", "body": SHIP})
    other = json.dumps({"endpoint": "text2video", "body": {**SHIP, "prompt": "a boat"}})
    got = list(estimate_batch([same, same, other], sheet=sheet))
    assert got[0].estimate is got[1].estimate  # reused: same bytes, same result
    assert got[2].estimate is not got[0].estimate  # the key is the whole body
    # A prompt that breaks a rule is caught although the job class was seen before.
    long = json.dumps({"endpoint": "text2video", "body": {**SHIP, "prompt": "p" * 3000}})
    got = list(estimate_batch([same, long], sheet=sheet))
    assert isinstance(got[1].error, RequestValidationError)


def test_each_call_prices_with_its_own_sheet() -> None:
    line = json.dumps({"endpoint": "text2video", "body": SHIP})
    base = load_sheet()
    data = base.model_dump(mode="python", exclude={"origin"})
    data["providers"]["openai-hk"]["per_unit"]["video"]["amount"] = 20000
    dearer = parse_sheet(cast(dict[str, Any], _jsonable(data)), origin="test")
    first = next(iter(estimate_batch([line], sheet=base)))
    second = next(iter(estimate_batch([line], sheet=dearer)))
    assert first.estimate is not None and second.estimate is not None
    assert second.estimate.cost.amount == first.estimate.cost.amount * Fraction(20000, 15000)


def _jsonable(value: object) -> object:
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# --- what `klingcost estimate` and `klingcost prices` print, computed by the library ------


def test_estimate_job_takes_a_job_as_a_file_gives_it() -> None:
    from klingcost.batch import estimate_job

    sheet = load_sheet()
    ship = estimate("videos/text2video", SHIP, sheet=sheet)
    wrapped = {"endpoint": "text2video", "body": SHIP}
    assert estimate_job(wrapped, sheet=sheet) == ship
    assert estimate_job(SHIP, endpoint="videos/text2video", sheet=sheet) == ship
    assert estimate_job({**SHIP, "endpoint": "text2video"}, sheet=sheet) == ship


def test_totals_and_errors_as_data() -> None:
    from klingcost.batch import error_dict

    sheet = load_sheet()
    ship = estimate("videos/text2video", SHIP, sheet=sheet)
    good = json.dumps({"endpoint": "text2video", "body": SHIP})
    bad = json.dumps({"endpoint": "text2video", "body": {**SHIP, "duration": 7}})
    batch = estimate_batch([good, good, bad], sheet=sheet)
    lines = list(batch)
    assert batch.totals().to_dict() == {
        "lines": 3,
        "priced": 2,
        "errors": 1,
        "units": {"video": format_amount(2 * ship.units)},
        "cost": format_amount(2 * ship.cost.amount),
        "currency": ship.cost.currency,
    }
    invalid = error_dict(lines[2].error)
    assert [p["field"] for p in invalid["problems"]] == ["duration"]
    assert invalid["problems"][0]["given"] == 7 and "option" not in invalid
    assert error_dict("not JSON: x") == {"message": "not JSON: x"}
    nobody = next(iter(estimate_batch([good], sheet=sheet, provider="nobody")))
    data = error_dict(nobody.error)
    assert data["option"] == "provider" and "--provider" not in data["message"]


def test_the_price_table_is_what_estimate_answers() -> None:
    from klingcost.price_table import price_table

    sheet = load_sheet()
    rows = list(price_table(sheet))
    assert len(rows) > 50
    body = {"model_name": "kling-v1-5", "prompt": "p", "mode": "pro", "duration": 10}
    ship = estimate("videos/text2video", body, sheet=sheet)
    (row,) = [
        r
        for r in rows
        if (r["endpoint"], r["model"], r["mode"], r["duration"], r["options"])
        == ("videos/text2video", "kling-v1-5", "pro", 10, "")
    ]
    assert (row["units"], row["cost"], row["currency"]) == (
        format_amount(ship.units),
        format_amount(ship.cost.amount),
        ship.cost.currency,
    )
    assert {r["endpoint"] for r in rows} >= {"videos/text2video", "images/generations"}
