# mypy: disable-error-code="comparison-overlap"
# (exact amounts are compared with int literals: a Fraction equals an int exactly)
"""klingcost.pricing: every pricing sentence of the seed, both worked examples, and Kling's
official price list. Every expected figure is written out from the sources (the seed and
kling-facts.md); openai-hk credits at 15,000 per video unit, 375 per image unit (the sheet's
stated inference)."""

from __future__ import annotations

import copy
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

import klingcost
from klingcost.errors import (
    PricingSheetError,
    RequestValidationError,
    UnknownProviderError,
    UnpricedRequestError,
)
from klingcost.pricing import Estimate, Step, estimate, price
from klingcost.request import validate_request
from klingcost.sheet import PRICING_ENV, load_sheet, parse_sheet

T2V = "videos/text2video"
I2V = "videos/image2video"
IMG = "images/generations"
O1 = "videos/omni-video"
URL = "https://example.com/frame.png"
VIDEO = [{"video_url": "https://example.com/clip.mp4"}]
CREDITS_PER_VIDEO_UNIT = 15000
CREDITS_PER_IMAGE_UNIT = 375


@pytest.fixture(autouse=True)
def _no_env_sheet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRICING_ENV, raising=False)


def video(
    model: str = "kling-v1", mode: str | None = None, duration: Any = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"model_name": model, "prompt": "a ship in space", **extra}
    if mode is not None:
        body["mode"] = mode
    if duration is not None:
        body["duration"] = duration
    return body


def units(endpoint: str, body: dict[str, Any], **kwargs: Any) -> Fraction:
    return estimate(endpoint, body, **kwargs).units


def product(breakdown: tuple[Step, ...]) -> Fraction:
    total = Fraction(1)
    for step in breakdown:
        total *= step.factor
    return total


# --- the seed's sentences, one test each ----------------------------------------------------


def test_seed_base_price_is_kling_v1_5s_std() -> None:
    """ "kling-v1 at 5s duration in std mode is the base price"."""
    result = estimate(T2V, video("kling-v1", "std", "5"))
    assert result.units == 1
    assert result.pack == "video"
    assert result.credits == 15000
    # Kling's defaults (kling-v1, std, 5 s) are the base price too.
    assert estimate(T2V, {"prompt": "p"}).units == 1


def test_seed_10s_costs_2x_the_base_price() -> None:
    """ "10s duration costs 2x the base price"."""
    result = estimate(T2V, video("kling-v1", "std", "10"))
    assert result.units == 2
    assert result.credits == 30000


def test_seed_pro_mode_costs_3_5x_the_base_price() -> None:
    """ "pro mode costs 3.5x the base price"."""
    result = estimate(T2V, video("kling-v1", "pro", "5"))
    assert result.units == Fraction(7, 2)
    assert result.credits == 52500


@pytest.mark.parametrize("model", ["kling-v1-5", "kling-v1-6"])
def test_seed_kling_v1_5_and_v1_6_cost_2x_the_base_price(model: str) -> None:
    """ "kling-v1-5 and kling-v1-6 cost 2x the base price"."""
    result = estimate(T2V, video(model, "std", "5"))
    assert result.units == 2
    assert result.credits == 30000


def test_seed_kling_v2_master_costs_10x_the_base_price() -> None:
    """ "kling-v2-master costs 10x the base price"."""
    result = estimate(T2V, video("kling-v2-master", duration="5"))
    assert result.units == 10
    assert result.credits == 150000
    assert result.request.mode is None


def test_seed_worked_example_kling_v1_5_10s_pro() -> None:
    """ "kling-v1-5 at 10s in pro mode = base price x2 x3.5" (= 7 units, as Kling's list)."""
    result = estimate(T2V, video("kling-v1-5", "pro", "10"))
    assert result.units == 7
    assert result.credits == 105000
    factors = sorted(step.factor for step in result.breakdown)
    assert factors == [1, 2, Fraction(7, 2)]  # base, x2 (10 s), x3.5 (pro)


def test_seed_audio_costs_2x_the_base_price() -> None:
    """ "audio costs 2x the base price" (kling-v2-6 sound on): 5 units against 2.5 silent."""
    silent = estimate(T2V, video("kling-v2-6", "pro", "5", sound="off"))
    sound = estimate(T2V, video("kling-v2-6", "pro", "5", sound="on"))
    assert silent.units == Fraction(5, 2)
    assert sound.units == 5
    assert sound.units == 2 * silent.units
    assert sound.credits == 75000


def test_seed_o1_pro_multiplier_is_4_3() -> None:
    """O1: "mode is pro, the price multiplier is 4/3" (on Kling's own list: on openai-hk std is
    billed as pro, see test_seed_o1_query_deducted_4_units)."""
    std = estimate(O1, {"prompt": "p", "mode": "std", "duration": 5}, provider="kling-global")
    pro = estimate(O1, {"prompt": "p", "mode": "pro", "duration": 5}, provider="kling-global")
    assert std.units == 3  # 0.6 units/s x 5 s
    assert pro.units == 4  # 0.8 units/s x 5 s
    assert pro.units / std.units == Fraction(4, 3)


def test_seed_o1_video_reference_multiplier_is_1_5() -> None:
    """O1: "video_list contains a video reference, the price multiplier is 1.5"."""
    for mode, provider in (("std", "kling-global"), ("pro", None)):
        body = {"prompt": "p", "mode": mode, "duration": 10}
        plain = estimate(O1, body, provider=provider)
        with_video = estimate(O1, {**body, "video_list": VIDEO}, provider=provider)
        assert with_video.units / plain.units == Fraction(3, 2)
    assert (
        estimate(O1, {"prompt": "p", "mode": "std", "duration": 10}, provider="kling-global").units
        == 6
    )


def test_seed_o1_worked_example_90000_credits() -> None:
    """ "mode = pro, duration 5s, with video reference = 4/3 * 9000 * 1.5 * 5 = 90,000 credits"."""
    result = estimate(O1, {"prompt": "p", "mode": "pro", "duration": 5, "video_list": VIDEO})
    assert result.credits == 90000
    assert result.units == 6
    factors = [step.factor for step in result.breakdown]
    assert Fraction(4, 3) in factors
    assert Fraction(3, 2) in factors
    assert 5 in factors


def test_seed_o1_std_is_9000_credits_per_second_on_the_list() -> None:
    # The worked example's 9000: the std O1 rate per second (0.6 units x 15,000 credits), from
    # which the credit price of a unit is inferred.
    for seconds in (5, 10):
        result = estimate(
            O1, {"prompt": "p", "mode": "std", "duration": seconds}, provider="kling-global"
        )
        assert result.units * CREDITS_PER_VIDEO_UNIT == 9000 * seconds


def test_seed_o1_query_deducted_4_units() -> None:
    # The seed's O1 example body (std, 5 s) and its query's final_unit_deduction "4": the pro
    # price. openai-hk bills O1 as pro whatever the mode, so a hold is never below that charge;
    # an O1 body without a mode is priced as pro everywhere (the official default).
    assert estimate(O1, {"prompt": "p", "duration": 5, "mode": "std"}).units == 4
    assert estimate(O1, {"prompt": "p", "duration": 5}).units == 4
    assert estimate(O1, {"prompt": "p", "duration": 5}, provider="kling-global").units == 4


# --- Kling's official price list (kling-facts.md) ------------------------------------------

OFFICIAL_VIDEO = [
    # model, mode, sound, units at 5 s, units at 10 s
    ("kling-v1", "std", None, "1", "2"),
    ("kling-v1", "pro", None, "3.5", "7"),
    ("kling-v1-5", "std", None, "2", "4"),
    ("kling-v1-5", "pro", None, "3.5", "7"),
    ("kling-v1-6", "std", None, "2", "4"),
    ("kling-v1-6", "pro", None, "3.5", "7"),
    ("kling-v2-1", "std", None, "2", "4"),
    ("kling-v2-1", "pro", None, "3.5", "7"),
    ("kling-v2-master", None, None, "10", "20"),
    ("kling-v2-1-master", None, None, "10", "20"),
    ("kling-v2-5-turbo", "std", None, "1.5", "3"),
    ("kling-v2-5-turbo", "pro", None, "2.5", "5"),
    ("kling-v2-6", "std", None, "1.5", "3"),
    ("kling-v2-6", "pro", "off", "2.5", "5"),
    ("kling-v2-6", "pro", "on", "5", "10"),
]
OFFICIAL_VIDEO_CASES = [
    pytest.param(
        endpoint,
        model,
        mode,
        sound,
        seconds,
        Fraction(expected),
        id=f"{endpoint.split('/')[1]}-{model}-{mode}-{sound}-{seconds}s",
    )
    for endpoint in (T2V, I2V)
    for model, mode, sound, five, ten in OFFICIAL_VIDEO
    for seconds, expected in ((5, five), (10, ten))
]


@pytest.mark.parametrize(
    ("endpoint", "model", "mode", "sound", "seconds", "expected"), OFFICIAL_VIDEO_CASES
)
def test_official_video_list(
    endpoint: str,
    model: str,
    mode: str | None,
    sound: str | None,
    seconds: int,
    expected: Fraction,
) -> None:
    body = video(model, mode, str(seconds))
    if sound is not None:
        body["sound"] = sound
    if endpoint == I2V:
        body["image"] = URL
    official = estimate(endpoint, body, provider="kling-global")  # Kling's own list
    assert official.units == expected and official.pack == "video"
    proxy = estimate(endpoint, body)  # openai-hk: the same units, but v2-6 is always pro
    if model == "kling-v2-6" and mode == "std":
        assert proxy.units == estimate(endpoint, {**body, "mode": "pro"}).units > expected
    else:
        assert proxy.units == expected
    assert proxy.credits == proxy.units * CREDITS_PER_VIDEO_UNIT


def test_openai_hk_bills_kling_v2_6_std_as_pro() -> None:
    """openai-hk docs: kling-v2-6 is "always pro"; Kling's own API prices std at 1.5."""
    body = video("kling-v2-6", "std")
    proxy = estimate(T2V, body)
    assert (proxy.units, proxy.credits) == (Fraction(5, 2), 37_500)
    assert "openai-hk bills kling-v2-6 at the pro price" in proxy.breakdown[1].rule
    assert product(proxy.breakdown) == proxy.units
    assert estimate(T2V, body, provider="kling-global").units == Fraction(3, 2)


@pytest.mark.parametrize(
    ("mode", "with_video", "per_second"),
    [("std", False, "0.6"), ("pro", False, "0.8"), ("std", True, "0.9"), ("pro", True, "1.2")],
)
@pytest.mark.parametrize("seconds", range(3, 11))
def test_official_o1_per_second(mode: str, with_video: bool, per_second: str, seconds: int) -> None:
    body: dict[str, Any] = {"prompt": "p", "mode": mode, "duration": seconds}
    body["video_list" if with_video else "image_list"] = (
        VIDEO if with_video else [{"image_url": URL, "type": "end_frame"}]
    )
    result = estimate(O1, body, provider="kling-global")
    assert result.units == Fraction(per_second) * seconds
    assert result.cost.amount == Fraction(per_second) * seconds * Fraction("0.14")
    assert result.pack == "video"
    # openai-hk bills O1 as pro: std is held at the pro rate.
    proxy = estimate(O1, body)
    pro_rate = Fraction(per_second) * (Fraction(4, 3) if mode == "std" else 1)
    assert proxy.credits == pro_rate * seconds * CREDITS_PER_VIDEO_UNIT


OFFICIAL_IMAGES = [
    # model, units per image text-only, with a reference image
    ("kling-v1", 1, 1),
    ("kling-v1-5", 4, 8),
    ("kling-v2", 4, 8),
    ("kling-v2-1", 4, 8),
    ("kling-image-o1", 8, 8),
]


@pytest.mark.parametrize(("model", "text", "reference"), OFFICIAL_IMAGES)
@pytest.mark.parametrize("n", [1, 2, 3, 9])
@pytest.mark.parametrize("with_image", [False, True])
def test_official_images_per_image_times_n(
    model: str, text: int, reference: int, n: int, with_image: bool
) -> None:
    body: dict[str, Any] = {"model_name": model, "prompt": "a cat", "n": n}
    if with_image:
        body["image"] = URL
    result = estimate(IMG, body)
    per_image = reference if with_image else text
    assert result.units == per_image * n
    assert result.pack == "image"
    assert result.credits == per_image * n * CREDITS_PER_IMAGE_UNIT


# --- other providers: what a unit costs ---------------------------------------------------


def test_kling_global_prices_in_usd() -> None:
    result = estimate(T2V, video("kling-v1-5", "pro", "10"), provider="kling-global")
    assert result.units == 7
    assert result.cost.currency == "usd"
    assert result.cost.amount == Fraction("0.98")  # 7 x USD 0.14
    assert result.credits is None
    image = estimate(IMG, {"prompt": "p", "n": 2}, provider="kling-global")
    assert image.cost.amount == Fraction("0.007")  # 2 x USD 0.0035


def test_kling_cn_prices_in_cny() -> None:
    result = estimate(O1, {"prompt": "p", "mode": "std", "duration": 5}, provider="kling-cn")
    assert result.cost.amount == 3
    assert result.cost.currency == "cny"
    assert estimate(IMG, {"prompt": "p"}, provider="kling-cn").cost.amount == Fraction("0.025")


def test_unknown_provider() -> None:
    with pytest.raises(UnknownProviderError, match=r"no provider 'acme'.*choose one of"):
        estimate(T2V, {"prompt": "p"}, provider="acme")


def test_provider_prompt_limits() -> None:
    long_body = {"prompt": "x" * 2000}
    with pytest.raises(RequestValidationError):
        estimate(T2V, long_body)  # openai-hk: 500
    assert estimate(T2V, long_body, provider="kling-global").units == 1  # Kling: 2500


# --- the estimate's shape ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        (T2V, video("kling-v1-5", "pro", "10")),
        (T2V, video("kling-v2-6", sound="on", duration=10)),
        (T2V, video("kling-v2-master")),
        (I2V, {"image": URL, "model_name": "kling-v1-6", "mode": "pro"}),
        (O1, {"prompt": "p", "mode": "pro", "duration": 7, "video_list": VIDEO}),
        (IMG, {"prompt": "p", "model_name": "kling-v1-5", "image": URL, "n": 4}),
    ],
)
def test_breakdown_product_is_the_total(endpoint: str, body: dict[str, Any]) -> None:
    result = estimate(endpoint, body)
    assert product(result.breakdown) == result.units
    sheet = load_sheet()
    for step in result.breakdown:
        assert type(step.factor) is Fraction
        assert step.rule
        assert step.source in sheet.sources
    assert result.cost.exact == result.units * result.cost.per_unit


def test_breakdown_names_each_rule_with_its_source() -> None:
    result = estimate(T2V, video("kling-v1-5", "pro", "10"))
    rules = [(step.rule, step.factor, step.source) for step in result.breakdown]
    assert rules == [
        ("base: kling-v1, 5 s, std", Fraction(1), "seed"),
        ("model and mode: kling-v1-5 pro", Fraction(7, 2), "seed"),
        ("duration: 10 s", Fraction(2), "seed"),
    ]


def test_to_dict_is_json_with_exact_strings() -> None:
    result = estimate(O1, {"prompt": "p", "mode": "pro", "duration": 5, "video_list": VIDEO})
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert {"endpoint", "model", "units", "pack", "credits", "breakdown"} <= set(data)
    assert data["endpoint"] == O1
    assert data["model"] == "kling-video-o1"
    assert data["units"] == "6"
    assert data["credits"] == "90000"
    assert data["pack"] == "video"
    factors = [step["factor"] for step in data["breakdown"]]
    assert factors == ["0.6", "4/3", "1.5", "5"]
    assert all(isinstance(step["source"], str) for step in data["breakdown"])


def test_nothing_in_an_estimate_is_a_float() -> None:
    result = estimate(T2V, video("kling-v2-5-turbo", "pro", "10"), provider="kling-global")

    def walk(node: Any) -> None:
        assert not isinstance(node, float)
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list | tuple):
            for value in node:
                walk(value)

    walk(result.to_dict())
    for value in (result.units, result.cost.exact, result.cost.per_unit, result.cost.amount):
        assert type(value) is Fraction


# --- rounding: credits round up to whole credits ------------------------------------------


def overlay(
    tmp_path: Path, per_unit_video: str, *, exponent: int = 0, currency: str = "credits"
) -> Path:
    path = tmp_path / "overlay.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "providers": {
                    "openai-hk": {
                        "currency": currency,
                        "exponent": exponent,
                        "per_unit": {"video": {"amount": per_unit_video, "source": "inferred"}},
                    }
                }
            }
        ),
        encoding="utf-8",
    )
    return path


def test_credits_round_up_to_whole_credits(tmp_path: Path) -> None:
    sheet = load_sheet(overlay(tmp_path, "1"))
    result = estimate(T2V, video("kling-v1", "pro"), sheet=sheet)
    assert result.units == Fraction(7, 2)
    assert result.cost.exact == Fraction(7, 2)
    assert result.cost.minor == 4
    assert result.credits == 4


def test_rounding_follows_the_exponent(tmp_path: Path) -> None:
    sheet = load_sheet(overlay(tmp_path, "1/3", exponent=2, currency="points"))
    result = estimate(T2V, video("kling-v1"), sheet=sheet)  # 1 unit x 1/3
    assert result.cost.exact == Fraction(1, 3)
    assert result.cost.minor == 34
    assert result.cost.amount == Fraction(34, 100)  # (credits is for the credits currency)


@pytest.mark.parametrize(("currency", "exponent"), [("credits", 2), ("usd", 2), ("cny", 4)])
def test_a_known_currency_keeps_the_ledger_exponent(
    tmp_path: Path, currency: str, exponent: int
) -> None:
    # Budgets add costs as they are: a provider to another exponent would count them 10^k off.
    with pytest.raises(PricingSheetError, match=f"{currency} is kept to 10"):
        load_sheet(overlay(tmp_path, "1", exponent=exponent, currency=currency))


def test_overlay_price_changes_credits_not_units(tmp_path: Path) -> None:
    sheet = load_sheet(overlay(tmp_path, "12000"))
    result = estimate(T2V, video("kling-v1-5", "pro", "10"), sheet=sheet)
    assert result.units == 7
    assert result.credits == 84000


def test_env_overlay_is_used_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRICING_ENV, str(overlay(tmp_path, "10000")))
    assert estimate(T2V, video("kling-v1")).credits == 10000


# --- pure, exact, deterministic -----------------------------------------------------------


def test_price_of_a_validated_request_equals_estimate() -> None:
    body = video("kling-v1-6", "pro", "10")
    request = validate_request(T2V, body)
    first = price(request)
    assert isinstance(first, Estimate)
    assert first.units == 7
    assert first.credits == 105000
    assert first == estimate(T2V, body)
    assert price(request) == first  # the cached path gives the same answer


def test_deterministic_and_body_untouched() -> None:
    body = video("kling-v2-6", sound="on", duration="10", negative_prompt=None)
    snapshot = copy.deepcopy(body)
    results = {estimate(T2V, body).to_dict()["credits"] for _ in range(5)}
    assert results == {"150000"}
    assert body == snapshot


def test_cache_keeps_providers_apart() -> None:
    request = validate_request(T2V, video("kling-v1"))
    usd = price(request, provider="kling-global")
    credits = price(request, provider="openai-hk")
    default = price(request)
    assert (usd.cost.currency, usd.cost.amount) == ("usd", Fraction("0.14"))
    assert (credits.cost.currency, credits.cost.amount) == ("credits", 15000)
    assert default.cost.amount == 15000


def test_cache_keeps_sheets_apart(tmp_path: Path) -> None:
    request = validate_request(T2V, video("kling-v1"))
    assert price(request).credits == 15000
    assert price(request, sheet=load_sheet(overlay(tmp_path, "100"))).credits == 100
    assert price(request).credits == 15000


def test_estimate_keeps_the_request() -> None:
    result = estimate(T2V, {"model": "kling-v1-5", "prompt": "p", "duration": 10})
    assert result.endpoint == T2V
    assert result.model == "kling-v1-5"
    assert result.request.duration == 10
    assert result.request.mode == "std"


# --- a sheet without a price for a valid request --------------------------------------------


def test_unpriced_request(tmp_path: Path) -> None:
    from importlib import resources

    data = yaml.safe_load(
        resources.files("klingcost").joinpath("data/pricing.yaml").read_text(encoding="utf-8")
    )
    del data["video"]["models"]["kling-v2-5-turbo"]
    del data["images"]["kling-v2"]
    del data["video"]["durations"]["10"]
    del data["video"]["sound"]["kling-v2-6"]
    sheet = parse_sheet(data, origin="trimmed.yaml")
    cases = [
        (T2V, video("kling-v2-5-turbo"), "video.models.kling-v2-5-turbo.std"),
        (IMG, {"prompt": "p", "model_name": "kling-v2"}, "images.kling-v2"),
        (T2V, video("kling-v1", duration=10), "video.durations.10"),
        (T2V, video("kling-v2-6", sound="on"), "video.sound.kling-v2-6"),
    ]
    for endpoint, body, missing in cases:
        with pytest.raises(UnpricedRequestError) as info:
            estimate(endpoint, body, sheet=sheet)
        assert info.value.missing == missing
        assert isinstance(info.value, klingcost.KlingcostError)
    assert estimate(T2V, video("kling-v1"), sheet=sheet).units == 1
