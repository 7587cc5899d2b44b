# mypy: disable-error-code="comparison-overlap"
# (exact amounts are compared with int literals: a Fraction equals an int exactly)
"""klingcost.pricing: the whole of what an estimate says, key by key, as ``--json`` prints it;
what mutation testing showed the other tests never asked. Every figure is written out from the
bundled sheet (src/klingcost/data/pricing.yaml)."""

from __future__ import annotations

from fractions import Fraction
from importlib import resources
from typing import Any

import pytest
import yaml

from klingcost.errors import UnpricedRequestError
from klingcost.pricing import Cost, estimate
from klingcost.sheet import PRICING_ENV, parse_sheet

T2V = "videos/text2video"
I2V = "videos/image2video"
IMG = "images/generations"
O1 = "videos/omni-video"
IMAGE_URL = "https://example.com/frame.png"
VIDEO_LIST = [{"video_url": "https://example.com/clip.mp4"}]
BASE = {
    "rule": "base: kling-v1, 5 s, std",
    "factor": "1",
    "source": "seed",
    "note": "kling-v1 at 5s duration in std mode is the base price",
}
TEN_SECONDS = {
    "rule": "duration: 10 s",
    "factor": "2",
    "source": "seed",
    "note": "10s duration costs 2x the base price",
}


@pytest.fixture(autouse=True)
def _no_env_sheet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRICING_ENV, raising=False)


def test_json_of_a_std_clip_the_proxy_bills_as_pro() -> None:
    body = {"model_name": "kling-v2-6", "prompt": "p", "mode": "std", "duration": "10"}
    note = "openai-hk bills kling-v2-6 at the pro price, whatever the mode"
    assert estimate(T2V, body).to_dict() == {
        "endpoint": T2V,
        "model": "kling-v2-6",
        "mode": "std",  # the request as given; the breakdown says why pro is charged
        "duration": 10,
        "sound": False,
        "video_reference": False,
        "reference_image": False,
        "n": 1,
        "voice": False,
        "resolution": None,
        "pack": "video",
        "units": "5",
        "provider": "openai-hk",
        "currency": "credits",
        "cost": "75000",
        "credits": "75000",
        "per_unit": "15000",
        "breakdown": [
            BASE,
            {
                "rule": f"mode std given; {note}",
                "factor": "1",
                "source": "openai-hk-docs",
                "note": note,
            },
            {
                "rule": "model and mode: kling-v2-6 pro",
                "factor": "2.5",
                "source": "openai-hk-docs",
                "note": "kling-v2-6: 2.5x base, always pro",
            },
            TEN_SECONDS,
        ],
        "warnings": [],
    }


def test_json_of_a_pro_clip_with_sound() -> None:
    body = {"model_name": "kling-v2-6", "prompt": "p", "mode": "pro", "sound": "on"}
    data = estimate(T2V, body).to_dict()
    assert (data["mode"], data["duration"], data["sound"], data["units"]) == ("pro", 5, True, "5")
    assert data["breakdown"] == [
        BASE,
        {
            "rule": "model and mode: kling-v2-6 pro",
            "factor": "2.5",
            "source": "openai-hk-docs",
            "note": "kling-v2-6: 2.5x base, always pro",
        },
        {
            "rule": "sound: on",
            "factor": "2",
            "source": "seed",
            "note": "audio costs 2x the base price (5 units per 5 s pro clip with sound, "
            "kling-official)",
        },
    ]


def test_json_of_a_one_price_model() -> None:
    body = {"model_name": "kling-v2-master", "prompt": "p", "image": IMAGE_URL}
    data = estimate(I2V, body).to_dict()
    assert (data["mode"], data["reference_image"], data["units"], data["credits"]) == (
        None,
        True,
        "10",
        "150000",
    )
    assert data["breakdown"] == [
        BASE,
        {
            "rule": "model and mode: kling-v2-master one price, no std/pro",
            "factor": "10",
            "source": "seed",
            "note": "kling-v2-master costs 10x the base price",
        },
    ]


def test_json_of_images_with_a_reference_priced_in_usd() -> None:
    body = {"model_name": "kling-v2", "prompt": "p", "image": IMAGE_URL, "n": 3}
    assert estimate(IMG, body, provider="kling-global").to_dict() == {
        "endpoint": IMG,
        "model": "kling-v2",
        "mode": None,
        "duration": None,
        "sound": False,
        "video_reference": False,
        "reference_image": True,
        "n": 3,
        "voice": False,
        "resolution": None,
        "pack": "image",
        "units": "24",
        "provider": "kling-global",
        "currency": "usd",
        "cost": "0.084",
        "credits": None,
        "per_unit": "0.0035",
        "breakdown": [
            {
                "rule": "base: kling-v2 image, with a reference image",
                "factor": "8",
                "source": "kling-official",
                "note": "8 image units per image with a reference image",
            },
            {
                "rule": "n: 3 images",
                "factor": "3",
                "source": "seed",
                "note": "images are billed per image",
            },
        ],
        "warnings": [],
    }


def test_json_of_one_text_only_image() -> None:
    data = estimate(IMG, {"model_name": "kling-v2", "prompt": "p"}).to_dict()
    assert (data["pack"], data["units"], data["credits"], data["reference_image"]) == (
        "image",
        "4",
        "1500",
        False,
    )
    assert data["breakdown"] == [
        {
            "rule": "base: kling-v2 image, text only",
            "factor": "4",
            "source": "kling-official",
            "note": "4 image units per image, text only; 302.AI's table agrees",
        }
    ]


def test_json_of_an_o1_pro_clip_with_a_video_reference_priced_in_cny() -> None:
    body = {"prompt": "p", "mode": "pro", "duration": 5, "video_list": VIDEO_LIST}
    assert estimate(O1, body, provider="kling-cn").to_dict() == {
        "endpoint": O1,
        "model": "kling-video-o1",
        "mode": "pro",
        "duration": 5,
        "sound": False,
        "video_reference": True,
        "reference_image": False,
        "n": 1,
        "voice": False,
        "resolution": None,
        "pack": "video",
        "units": "6",
        "provider": "kling-cn",
        "currency": "cny",
        "cost": "6",
        "credits": None,
        "per_unit": "1",
        "breakdown": [
            {
                "rule": "base: kling-video-o1 std, per second",
                "factor": "0.6",
                "source": "kling-official",
                "note": "0.6 units per second in std mode",
            },
            {
                "rule": "mode: pro",
                "factor": "4/3",
                "source": "seed",
                "note": "mode is pro, the price multiplier is 4/3 (0.8 units/s)",
            },
            {
                "rule": "video reference",
                "factor": "1.5",
                "source": "seed",
                "note": "video_list contains a video reference, the price multiplier is 1.5",
            },
            {
                "rule": "duration: 5 s",
                "factor": "5",
                "source": "seed",
                "note": "priced per second",
            },
        ],
        "warnings": [],
    }


def test_an_o1_std_clip_without_a_reference_is_per_second_only() -> None:
    result = estimate(O1, {"prompt": "p", "mode": "std", "duration": 10}, provider="kling-cn")
    assert [step.rule for step in result.breakdown] == [
        "base: kling-video-o1 std, per second",
        "duration: 10 s",
    ]
    assert result.units == 6


def test_openai_hk_bills_an_o1_std_clip_at_the_pro_price() -> None:
    result = estimate(O1, {"prompt": "p", "mode": "std", "duration": 10})
    assert [step.rule for step in result.breakdown] == [
        "base: kling-video-o1 std, per second",
        "mode std given; openai-hk bills kling-video-o1 at the pro price, whatever the mode",
        "mode: pro",
        "duration: 10 s",
    ]
    assert (result.units, result.credits) == (8, 120_000)


def test_the_cost_names_its_provider_rate_and_source() -> None:
    result = estimate(T2V, {"model_name": "kling-v1", "prompt": "p"}, provider="kling-global")
    assert result.cost == Cost(
        provider="kling-global",
        currency="usd",
        exponent=4,
        per_unit=Fraction(7, 50),
        source="kling-official",
        exact=Fraction(7, 50),
        minor=1400,
    )
    proxy = estimate(IMG, {"model_name": "kling-v1", "prompt": "p"}).cost
    assert (proxy.provider, proxy.currency, proxy.per_unit, proxy.minor) == (
        "openai-hk",
        "credits",
        375,
        375,
    )


def test_a_provider_that_bills_as_asked_keeps_std() -> None:
    body = {"model_name": "kling-v2-6", "prompt": "p", "mode": "std"}
    result = estimate(T2V, body, provider="kling-global")
    assert [step.rule for step in result.breakdown] == [
        "base: kling-v1, 5 s, std",
        "model and mode: kling-v2-6 std",
    ]
    assert result.units == Fraction(3, 2)
    # A model the proxy does not bill as pro keeps its std price there too.
    assert estimate(T2V, {"model_name": "kling-v1-6", "prompt": "p", "mode": "std"}).units == 2


def trimmed_sheet() -> Any:
    data = yaml.safe_load(
        resources.files("klingcost").joinpath("data/pricing.yaml").read_text(encoding="utf-8")
    )
    del data["video"]["models"]["kling-v2-5-turbo"]["pro"]
    del data["images"]["kling-v2"]
    del data["video"]["durations"]["10"]
    del data["video"]["sound"]["kling-v2-6"]
    del data["omni"]["kling-video-o1"]
    del data["video"]["models"]["kling-v1-5"]  # listed in the catalogue: still valid, unpriced
    return parse_sheet(data, origin="trimmed.yaml")


@pytest.mark.parametrize(
    ("endpoint", "body", "model", "missing"),
    [
        (IMG, {"model_name": "kling-v2", "prompt": "p"}, "kling-v2", "images.kling-v2"),
        (
            I2V,
            {"model_name": "kling-v1", "image": IMAGE_URL, "duration": 10},
            "kling-v1",
            "video.durations.10",
        ),
        (
            T2V,
            {"model_name": "kling-v2-6", "prompt": "p", "mode": "pro", "sound": "on"},
            "kling-v2-6",
            "video.sound.kling-v2-6",
        ),
        (O1, {"prompt": "p"}, "kling-video-o1", "omni.kling-video-o1"),
        (
            T2V,
            {"model_name": "kling-v1-5", "prompt": "p", "mode": "std"},
            "kling-v1-5",
            "video.models.kling-v1-5.std",
        ),
    ],
)
def test_an_unpriced_request_names_endpoint_model_and_missing_key(
    endpoint: str, body: dict[str, Any], model: str, missing: str
) -> None:
    with pytest.raises(UnpricedRequestError) as caught:
        estimate(endpoint, body, sheet=trimmed_sheet())
    error = caught.value
    assert (error.endpoint, error.model, error.missing) == (endpoint, model, missing)
    assert str(error) == f"the price sheet has no price for {endpoint} {model}: {missing}"


@pytest.mark.parametrize(
    ("endpoint", "extra", "rule", "units"),
    [
        (T2V, {"model_name": "kling-v3"}, "base: kling-v3 std, silent, per second", "3"),
        (
            T2V,
            {"model_name": "kling-v3", "sound": "on"},
            "base: kling-v3 std, sound on, per second",
            "4.5",
        ),
        (
            T2V,
            {"model_name": "kling-v3", "sound": "on", "voice_list": [{"voice_id": "v-1"}]},
            "base: kling-v3 std, sound on, with voices, per second",
            "5.5",
        ),
        (
            O1,
            {"model_name": "kling-v3-omni", "mode": "std", "video_list": VIDEO_LIST},
            "base: kling-v3-omni std, with a video reference, per second",
            "4.5",
        ),
    ],
)
def test_a_per_second_breakdown_names_the_variant_priced(
    endpoint: str, extra: dict[str, Any], rule: str, units: str
) -> None:
    data = estimate(endpoint, {"prompt": "p", "duration": "5", **extra}).to_dict()
    assert [step["rule"] for step in data["breakdown"]] == [rule, "duration: 5 s"]
    assert data["units"] == units


def test_a_per_second_step_carries_the_sheets_source_and_note() -> None:
    data = estimate(T2V, {"model_name": "kling-v3", "prompt": "p", "duration": "5"}).to_dict()
    assert data["breakdown"][0] == {
        "rule": "base: kling-v3 std, silent, per second",
        "factor": "0.6",
        "source": "kling-official",
        "note": "0.6 units/s (USD 0.084); fal.ai's $0.168/s and Krea's $0.1764/s are the same at "
        "their markups",
    }
    assert data["breakdown"][1] == {
        "rule": "duration: 5 s",
        "factor": "5",
        "source": "kling-official",
        "note": "priced per second",
    }


@pytest.mark.parametrize(
    ("mode", "body", "missing"),
    [
        # Voices are priced in pro, not in std: a valid std request with voices has no price.
        ("std", {"sound": "on", "voice_list": [{"voice_id": "v-1"}]}, "std.voice"),
        # The provider bills kling-v3 as pro, and the overlay removed every pro price.
        ("pro", {}, "pro.silent"),
    ],
)
def test_an_unpriced_per_second_request_names_the_mode_and_variant_missing(
    mode: str, body: dict[str, Any], missing: str
) -> None:
    data = yaml.safe_load(
        resources.files("klingcost").joinpath("data/pricing.yaml").read_text(encoding="utf-8")
    )
    if mode == "std":
        del data["per_second"]["kling-v3"]["std"]["voice"]
    else:
        del data["per_second"]["kling-v3"]["pro"]
        data["providers"]["openai-hk"]["bills_as_pro"]["kling-v3"] = "seed"
    sheet = parse_sheet(data, origin="trimmed.yaml")
    request = {"model_name": "kling-v3", "prompt": "p", "mode": "std", "duration": "5", **body}
    with pytest.raises(UnpricedRequestError) as caught:
        estimate(T2V, request, sheet=sheet)
    error = caught.value
    assert (error.endpoint, error.model, error.missing) == (
        T2V,
        "kling-v3",
        f"per_second.kling-v3.{missing}",
    )


def test_a_video_edit_without_a_duration_is_held_at_its_longest_and_says_so() -> None:
    video = [{"video_url": "https://example.com/clip.mp4", "refer_type": "base"}]
    data = estimate(O1, {"model_name": "kling-video-o1", "prompt": "p", "video_list": video})
    assert data.to_dict()["breakdown"][-1] == {
        "rule": "duration: 10 s (held)",
        "factor": "10",
        "source": "seed",
        "note": "a video edit without a duration follows its input video: held at the longest it "
        "can last",
    }
    assert data.units == 12  # 0.6 x 4/3 x 1.5 x 10 s


def test_a_resolution_the_pricing_sheet_lacks_is_named_missing() -> None:
    # Validated against the bundled sheet, priced with one whose overlay dropped the 2k factor
    # (as a guard does when the sheet changes between a check and a hold).
    from klingcost.pricing import price

    request = estimate(IMG, {"model_name": "kling-v1", "prompt": "p", "resolution": "2k"}).request
    data = yaml.safe_load(
        resources.files("klingcost").joinpath("data/pricing.yaml").read_text(encoding="utf-8")
    )
    data["images"]["kling-v1"]["resolutions"] = {
        "1k": {"factor": 1, "source": "seed", "note": "1k only"}
    }
    with pytest.raises(UnpricedRequestError) as caught:
        price(request, sheet=parse_sheet(data, origin="trimmed.yaml"))
    error = caught.value
    assert (error.endpoint, error.model, error.missing) == (
        IMG,
        "kling-v1",
        "images.kling-v1.resolutions.2k",
    )


def test_a_resolution_that_costs_more_is_a_step_of_its_own() -> None:
    body = {"model_name": "kling-v3-omni", "prompt": "p", "resolution": "4k"}
    data = estimate(IMG, body).to_dict()
    assert data["breakdown"][1] == {
        "rule": "resolution: 4k",
        "factor": "2",
        "source": "kling-official",
        "note": "4K: 16 image units (USD 0.056); inference.sh's $0.056 agrees",
    }
    assert data["units"] == "16"


# --- the catalogue: every job class the sheet takes, as settlement judges a deduction by it ----


def test_each_catalogue_job_is_its_class_as_a_request_without_a_body() -> None:
    from klingcost.listing import catalogue_classes, catalogue_jobs
    from klingcost.sheet import load_sheet

    sheet = load_sheet()
    jobs, classes = list(catalogue_jobs(sheet)), list(catalogue_classes(sheet))
    assert len(jobs) == len(classes) > 450
    for job, job_class in zip(jobs, classes, strict=True):
        assert job.job == job_class  # every field: sound, references, voice, resolution
        assert (job.body, job.warnings) == (None, ())


def test_the_catalogue_offers_each_image_model_with_and_without_a_reference_image() -> None:
    from klingcost.listing import catalogue_classes
    from klingcost.sheet import load_sheet

    sheet = load_sheet()
    images = {
        (job.model, job.reference_image, job.resolution)
        for job in catalogue_classes(sheet)
        if job.endpoint == IMG
    }
    assert images == {
        (model, reference, size)
        for model, caps in sheet.models[IMG].items()
        for reference in (False, True)
        for size in (None, *caps.resolutions)
    }


def _one_price_model_with_sound() -> Any:
    data = yaml.safe_load(
        resources.files("klingcost").joinpath("data/pricing.yaml").read_text(encoding="utf-8")
    )
    data["video"]["sound"]["kling-v2-master"] = {"factor": 4, "source": "seed", "note": "x4"}
    return parse_sheet(data, origin="sound.yaml")


def test_a_one_price_model_with_a_sound_price_is_listed_with_sound_and_no_voices() -> None:
    from klingcost.listing import catalogue_classes, listed_units

    sheet = _one_price_model_with_sound()
    offered = {
        (job.mode, job.duration, job.sound, job.voice)
        for job in catalogue_classes(sheet)
        if (job.endpoint, job.model) == (T2V, "kling-v2-master")
    }
    # No voice price for it: a clip with voices is not one the catalogue offers.
    assert offered == {(None, 5, False, False), (None, 10, False, False)} | {
        (None, 5, True, False),
        (None, 10, True, False),
    }
    # So a deduction for its 40-unit clip with sound lies within what the sheet lists.
    listing = listed_units(sheet)
    assert listing[(T2V, 5)] == (1, 40)
    assert listing[(T2V, 10)] == (2, 80)


def test_a_per_second_model_left_with_no_mode_is_unpriced_naming_its_one_price() -> None:
    # An overlay that empties kling-v3's table: the model is still listed, with no std/pro, so
    # a request of it is valid and has its one ("flat") price missing.
    data = yaml.safe_load(
        resources.files("klingcost").joinpath("data/pricing.yaml").read_text(encoding="utf-8")
    )
    data["per_second"]["kling-v3"] = {}
    sheet = parse_sheet(data, origin="emptied.yaml")
    with pytest.raises(UnpricedRequestError) as caught:
        estimate(T2V, {"model_name": "kling-v3", "prompt": "p", "duration": 5}, sheet=sheet)
    assert caught.value.missing == "per_second.kling-v3.flat.silent"


def test_voices_the_pricing_sheet_lacks_are_named_missing() -> None:
    # Validated against the bundled sheet, priced with one whose overlay dropped the voice
    # factor (as a guard does when the sheet changes between a check and a hold).
    from klingcost.pricing import price

    body = {
        "model_name": "kling-v2-6",
        "prompt": "p",
        "mode": "pro",
        "sound": "on",
        "voice_list": [{"voice_id": "v-1"}],
    }
    request = estimate(T2V, body).request
    data = yaml.safe_load(
        resources.files("klingcost").joinpath("data/pricing.yaml").read_text(encoding="utf-8")
    )
    del data["video"]["voice"]["kling-v2-6"]
    with pytest.raises(UnpricedRequestError) as caught:
        price(request, sheet=parse_sheet(data, origin="trimmed.yaml"))
    error = caught.value
    assert (error.endpoint, error.model, error.missing) == (
        T2V,
        "kling-v2-6",
        "video.voice.kling-v2-6",
    )


def test_a_clip_with_voices_names_its_voice_step_in_the_breakdown() -> None:
    body = {
        "model_name": "kling-v2-6",
        "prompt": "p",
        "mode": "pro",
        "sound": "on",
        "voice_list": [{"voice_id": "v-1"}],
    }
    data = estimate(T2V, body).to_dict()
    assert data["breakdown"][-1] == {
        "rule": "sound: on, with voices",
        "factor": "2.4",
        "source": "kling-official",
        "note": "pro with audio and voice: 6 units per 5 s, 12 per 10 s (2.4x the 2.5 of silent "
        "pro); fal.ai's $0.168/s at $0.14 a unit agrees",
    }
    assert data["units"] == "6"
