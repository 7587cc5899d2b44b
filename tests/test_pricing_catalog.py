# mypy: disable-error-code="comparison-overlap"
# (exact amounts are compared with int literals: a Fraction equals an int exactly)
"""Issue 12: the models of today priced from one catalogue in the sheet, what real clients send,
and holds that are never below the charge.

Expected figures are written out here from the sources the sheet names (Kling's price list, read
2026-12-03 through its public transcription; fal.ai's per-second prices at their uniform 2x),
never read from the sheet or the code.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from klingcost.cli import main
from klingcost.errors import RequestValidationError, UnpricedRequestError
from klingcost.guard import GuardedClient
from klingcost.ledger import Ledger
from klingcost.pricing import estimate
from klingcost.sheet import load_sheet, parse_sheet

T2V = "videos/text2video"
I2V = "videos/image2video"
IMG = "images/generations"
OMNI = "videos/omni-video"
URL = "https://example.com/first-frame.png"
VIDEO = [{"video_url": "https://example.com/clip.mp4"}]
EDIT = [{"video_url": "https://example.com/clip.mp4", "refer_type": "base"}]
CREDITS_PER_VIDEO_UNIT = 15_000  # openai-hk, inferred from the seed's 9000 credits/s of std O1
KLING = "kling-global"  # Kling's own list, where no proxy rule applies

# Units per second, from Kling's price list (fal.ai's prices are exactly twice these).
V3 = {
    ("std", "silent"): "0.6",
    ("std", "sound"): "0.9",
    ("std", "voice"): "1.1",  # inferred: fal.ai $0.308/s / 2 / $0.14
    ("pro", "silent"): "0.8",
    ("pro", "sound"): "1.2",
    ("pro", "voice"): "1.4",  # inferred: fal.ai $0.392/s / 2 / $0.14
    ("4k", "silent"): "3",
    ("4k", "sound"): "3",
}
V3_OMNI = {
    ("std", "silent"): "0.6",
    ("std", "sound"): "0.8",
    ("std", "video"): "0.9",
    ("pro", "silent"): "0.8",
    ("pro", "sound"): "1",
    ("pro", "video"): "1.2",
    ("4k", "silent"): "3",
    ("4k", "sound"): "3",
    ("4k", "video"): "4.5",  # inferred: 3 x the 1.5 video multiplier
}


def with_variant(body: dict[str, Any], variant: str) -> dict[str, Any]:
    if variant == "sound":
        return {**body, "sound": "on"}
    if variant == "voice":
        return {**body, "sound": "on", "voice_list": [{"voice_id": "v-1"}]}
    if variant == "video":
        return {**body, "video_list": VIDEO}
    return body


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=True)


# --- every new model, duration, mode and option priced exactly ----------------------------------


@pytest.mark.parametrize("endpoint", [T2V, I2V])
@pytest.mark.parametrize(("mode", "variant"), list(V3))
@pytest.mark.parametrize("seconds", range(3, 16))
def test_kling_v3_per_second(endpoint: str, mode: str, variant: str, seconds: int) -> None:
    body: dict[str, Any] = {"model_name": "kling-v3", "prompt": "p", "mode": mode}
    body["duration"] = str(seconds)  # as the Vercel provider sends it
    if endpoint == I2V:
        body["image"] = URL
    result = estimate(endpoint, with_variant(body, variant), provider=KLING)
    expected = Fraction(V3[mode, variant]) * seconds
    assert result.units == expected and result.pack == "video"
    assert result.cost.amount == expected * Fraction("0.14")
    proxy = estimate(endpoint, with_variant(body, variant))
    assert proxy.credits == expected * CREDITS_PER_VIDEO_UNIT


@pytest.mark.parametrize(("mode", "variant"), list(V3_OMNI))
@pytest.mark.parametrize("seconds", range(3, 16))
def test_kling_v3_omni_per_second(mode: str, variant: str, seconds: int) -> None:
    body = {"model_name": "kling-v3-omni", "prompt": "p", "mode": mode, "duration": seconds}
    result = estimate(OMNI, with_variant(body, variant))
    assert result.units == Fraction(V3_OMNI[mode, variant]) * seconds


@pytest.mark.parametrize("seconds", [2, 16])
@pytest.mark.parametrize(("endpoint", "model"), [(T2V, "kling-v3"), (OMNI, "kling-v3-omni")])
def test_v3_durations_are_3_to_15(endpoint: str, model: str, seconds: int) -> None:
    with pytest.raises(RequestValidationError) as info:
        estimate(endpoint, {"model_name": model, "prompt": "p", "duration": seconds})
    (problem,) = info.value.problems
    assert (problem.field, problem.allowed) == ("duration", "3 to 15 seconds")


@pytest.mark.parametrize(("mode", "per_second"), [("std", "0.6"), ("pro", "0.8")])
@pytest.mark.parametrize("seconds", range(3, 11))
def test_kling_video_o1_text_only_at_3_to_10_seconds(
    mode: str, per_second: str, seconds: int
) -> None:
    body = {"model_name": "kling-video-o1", "prompt": "p", "mode": mode, "duration": seconds}
    assert estimate(OMNI, body, provider=KLING).units == Fraction(per_second) * seconds


def test_v3_defaults() -> None:
    plain = estimate(T2V, {"model_name": "kling-v3", "prompt": "p"})
    assert (plain.request.mode, plain.request.duration, plain.units) == ("std", 5, 3)
    # omni-video's default mode is pro (Kling's reference for O1), held the same for v3-omni.
    omni = estimate(OMNI, {"model_name": "kling-v3-omni", "prompt": "p"})
    assert (omni.request.mode, omni.units) == ("pro", 4)


def test_a_std_kling_v2_6_with_sound_is_priced_as_openai_hk_runs_it() -> None:
    """openai-hk runs kling-v2-6 as pro whatever the mode ("always pro"), sound included: the
    fake playing it charges a std body with sound 5 units; Kling's own API (std silent only)
    refuses it, and so does klingcost for kling-global."""
    from klingcost.testing.prices import load_table
    from klingcost.testing.rules import read_job

    body = {"prompt": "p", "model_name": "kling-v2-6", "mode": "std", "sound": "on"}
    table = load_table()
    charged = read_job(T2V, body, table, table.profile("openai-hk")).units
    assert estimate(T2V, body).units == charged == 5
    with pytest.raises(RequestValidationError) as info:
        estimate(T2V, body, provider="kling-global")
    assert [p.field for p in info.value.problems] == ["sound"]


def test_kling_v2_6_with_voices_is_6_units_per_5_s() -> None:
    body = {"model_name": "kling-v2-6", "prompt": "p", "sound": "on", "mode": "pro"}
    voices = {**body, "voice_list": [{"voice_id": "a"}, {"voice_id": "b"}]}
    assert estimate(T2V, voices, provider=KLING).units == 6
    assert estimate(T2V, {**voices, "duration": "10"}, provider=KLING).units == 12
    assert estimate(T2V, body, provider=KLING).units == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model_name": "kling-v3", "voice_list": [{"voice_id": "a"}]}, "voice_list"),  # no sound
        ({"model_name": "kling-v1", "sound": "on", "voice_list": [{"voice_id": "a"}]}, "sound"),
        (
            {
                "model_name": "kling-v3",
                "sound": "on",
                "voice_list": [{"voice_id": str(i)} for i in range(3)],
            },
            "voice_list",
        ),
        ({"model_name": "kling-v3", "mode": "ultra"}, "mode"),
        ({"model_name": "kling-v1", "mode": "4k"}, "mode"),
        ({"model_name": "kling-v1-6", "element_list": [{"element_id": 1}]}, "element_list"),
        (
            {"model_name": "kling-v1-6", "multi_shot": True, "shot_type": "intelligence"},
            "multi_shot",
        ),
    ],
)
def test_what_a_model_does_not_take_is_refused(body: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        estimate(T2V, {"prompt": "p", **body})
    assert field in {p.field for p in info.value.problems}


def test_an_unpriced_mode_names_the_overlay_key() -> None:
    with pytest.raises(RequestValidationError) as info:
        estimate(T2V, {"prompt": "p", "model_name": "kling-v1", "mode": "4k"})
    (problem,) = info.value.problems
    assert problem.allowed == "'std' or 'pro'"
    assert "video.models.kling-v1.4k" in problem.message


#: key -> (model, an overlay without sound for it, what the key takes, units with sound for 5 s)
OVERLAY_SOUND: dict[str, tuple[str, dict[str, Any], dict[str, Any], int]] = {
    # A clip model's sound is a factor; a per-second model's is a rate of its mode.
    "video.sound.kling-v1": ("kling-v1", {}, {"factor": 2, "source": "me"}, 2),
    "per_second.kling-v3-1.std.sound": (
        "kling-v3-1",
        {
            "catalog": {T2V: {"kling-v3-1": {"source": "me", "durations": "3-15"}}},
            "per_second": {"kling-v3-1": {"std": {"silent": {"units": "0.7", "source": "me"}}}},
        },
        {"units": 1, "source": "me"},
        5,
    ),
}


@pytest.mark.parametrize("key", OVERLAY_SOUND)
def test_sound_on_a_silent_model_names_the_overlay_key_that_prices_it(
    key: str, tmp_path: Path
) -> None:
    model, overlay, price, units = OVERLAY_SOUND[key]
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump({"sources": {"me": "a test"}, **overlay}))
    body = {"prompt": "p", "model_name": model, "mode": "std", "duration": 5, "sound": "on"}
    with pytest.raises(RequestValidationError) as info:
        estimate(T2V, body, sheet=load_sheet(str(path)))
    (problem,) = info.value.problems
    assert problem.field == "sound" and f"add {key} to a --pricing overlay" in problem.message
    # The key it names is the one that prices it.
    *where, last = key.split(".")
    node = overlay
    for part in where:
        node = node.setdefault(part, {})
    node[last] = price
    priced = tmp_path / "priced.yaml"  # another file: load_sheet caches by path
    priced.write_text(yaml.safe_dump({"sources": {"me": "a test"}, **overlay}))
    assert estimate(T2V, body, sheet=load_sheet(str(priced))).units == units


# --- images --------------------------------------------------------------------------------------

IMAGES = [
    # model, per image text-only, with a reference image (Kling's list; 302.AI agrees)
    ("kling-v1", 1, 1),
    ("kling-v1-5", 4, 8),
    ("kling-v2", 4, 8),
    ("kling-v2-new", 8, 8),
    ("kling-v2-1", 4, 8),
    ("kling-v3", 8, 8),
    ("kling-image-o1", 8, 8),
    ("kling-v3-omni", 8, 8),
]


@pytest.mark.parametrize(("model", "text", "reference"), IMAGES)
def test_image_models(model: str, text: int, reference: int) -> None:
    body = {"model_name": model, "prompt": "p", "n": 3}
    assert estimate(IMG, body).units == 3 * text
    assert estimate(IMG, {**body, "image": URL}).units == 3 * reference
    result = estimate(IMG, {**body, "resolution": "2k"}, provider=KLING)
    assert result.units == 3 * text and result.pack == "image"
    assert result.cost.amount == 3 * text * Fraction("0.0035")


def test_kling_v3_omni_image_at_4k_is_16_units() -> None:
    body = {"model_name": "kling-v3-omni", "prompt": "p", "resolution": "4k"}
    assert estimate(IMG, body).units == 16
    assert estimate(IMG, {**body, "n": 2}).units == 32


@pytest.mark.parametrize(("model", "resolution"), [("kling-v3", "4k"), ("kling-v1", "8k")])
def test_an_unknown_resolution_is_refused_naming_the_overlay_key(
    model: str, resolution: str
) -> None:
    with pytest.raises(RequestValidationError) as info:
        estimate(IMG, {"model_name": model, "prompt": "p", "resolution": resolution})
    (problem,) = info.value.problems
    assert problem.field == "resolution" and problem.given == resolution
    assert problem.allowed == "'1k' or '2k'"
    assert f"images.{model}.resolutions.{resolution}" in problem.message
    assert "may change the price" in problem.message


def test_image_aspect_ratio_21_9() -> None:
    assert estimate(IMG, {"prompt": "p", "aspect_ratio": "21:9"}).units == 1


# --- holds never below the charge -------------------------------------------------------------


def test_o1_std_5s_is_held_at_the_4_units_the_seed_recorded() -> None:
    # The seed's O1 body (std, 5 s, duration as a number) and its query's final_unit_deduction "4".
    seed_body = {
        "prompt": "snow",
        "model_name": "kling-video-o1",
        "duration": 5,
        "mode": "std",
        "aspect_ratio": "16:9",
        "notify_hook": "https://pdf2.openai-hk.com/test/2024/mqrunway",
    }
    result = estimate(OMNI, seed_body)
    assert result.units == 4
    assert result.credits == 4 * CREDITS_PER_VIDEO_UNIT
    assert any("bills kling-video-o1 at the pro price" in s.rule for s in result.breakdown)
    # Kling's own list still prices std at 0.6 units/s.
    assert estimate(OMNI, seed_body, provider=KLING).units == 3


@pytest.mark.parametrize(
    ("model", "mode", "provider", "per_second"),
    [
        ("kling-video-o1", "pro", None, "1.2"),
        ("kling-video-o1", "std", KLING, "0.9"),
        ("kling-video-o1", "std", None, "1.2"),  # openai-hk: as pro
        ("kling-v3-omni", "std", None, "0.9"),
        ("kling-v3-omni", "pro", None, "1.2"),
    ],
)
def test_a_video_edit_without_duration_is_held_at_10_s(
    model: str, mode: str, provider: str | None, per_second: str
) -> None:
    body = {"model_name": model, "prompt": "put a hat on her", "mode": mode, "video_list": EDIT}
    result = estimate(OMNI, body, provider=provider)
    assert result.request.duration == 10 and result.request.held_duration
    assert result.units == Fraction(per_second) * 10
    assert "(held)" in result.breakdown[-1].rule
    # A duration the request fixes is priced as given.
    fixed = estimate(OMNI, {**body, "duration": 4}, provider=provider)
    assert fixed.units == Fraction(per_second) * 4 and not fixed.request.held_duration
    # A feature reference (not an edit) without a duration is the default 5 s.
    feature = {**body, "video_list": VIDEO}
    assert estimate(OMNI, feature, provider=provider).request.duration == 5


def test_v3_omni_sound_is_off_with_a_video() -> None:
    body = {"model_name": "kling-v3-omni", "prompt": "p", "sound": "on", "video_list": VIDEO}
    with pytest.raises(RequestValidationError) as info:
        estimate(OMNI, body)
    assert [p.field for p in info.value.problems] == ["sound"]


def test_multi_shot_is_priced_at_the_sum_of_its_shots() -> None:
    shots = [
        {"index": 1, "prompt": "a door opens", "duration": "4"},
        {"index": 2, "prompt": "a cat walks in", "duration": "6"},
    ]
    body = {"model_name": "kling-v3", "multi_shot": True, "shot_type": "customize"}
    result = estimate(T2V, {**body, "multi_prompt": shots, "mode": "pro"})
    assert (result.request.duration, result.units) == (10, 8)
    assert estimate(T2V, {**body, "multi_prompt": shots, "duration": "10"}).units == 6
    with pytest.raises(RequestValidationError) as info:
        estimate(T2V, {**body, "multi_prompt": shots, "duration": "12"})
    assert "add up" in str(info.value)
    with pytest.raises(RequestValidationError) as info:
        estimate(T2V, body)  # customize without shots
    assert {p.field for p in info.value.problems} == {"multi_prompt"}


# --- what the four clients send -----------------------------------------------------------------


def test_vercel_provider_body_with_watermark_info() -> None:
    # @ai-sdk/klingai's T2V body: duration as a string, watermark_info on every request, v3
    # voice control on text2video, and unknown provider options passed through.
    body = {
        "model_name": "kling-v3",
        "prompt": "A chicken flying into the sunset, <<<voice_1>>> narrates",
        "sound": "on",
        "mode": "pro",
        "aspect_ratio": "16:9",
        "duration": "5",
        "voice_list": [{"voice_id": "829826243375259719"}],
        "watermark_info": {"enabled": False},
        "callback_url": "https://example.com/hook",
        "external_task_id": "job-1",
    }
    result = estimate(T2V, body)
    assert result.units == 7  # 1.4 units/s x 5 s
    assert result.warnings == ()
    passthrough = estimate(T2V, {**body, "pollIntervalMs": 5000})
    assert passthrough.units == 7
    assert passthrough.warnings[0].startswith("pollIntervalMs: unknown field, priced as if absent")


def test_vercel_image2video_with_motion_brush() -> None:
    body = {
        "model_name": "kling-v1",
        "image": URL,
        "static_mask": "https://example.com/static.png",
        "dynamic_masks": [
            {
                "mask": "https://example.com/m.png",
                "trajectories": [{"x": 1, "y": 2}, {"x": 3, "y": 4}],
            }
        ],
        "watermark_info": {"enabled": True},
    }
    assert estimate(I2V, body).units == 1
    bad = {
        **body,
        "dynamic_masks": [
            {"mask": "https://example.com/m.png", "trajectories": [{"x": 1, "y": 2}]}
        ],
    }
    with pytest.raises(RequestValidationError) as info:
        estimate(I2V, bad)
    assert [p.field for p in info.value.problems] == ["dynamic_masks.0.trajectories"]


def test_comfyui_image_body_with_resolution_1k() -> None:
    # Kling's own ComfyUI nodes send resolution "1k" (and aspect ratios up to 21:9).
    body = {
        "model_name": "kling-v2",
        "prompt": "a lighthouse",
        "negative_prompt": "",
        "resolution": "1k",
        "n": 1,
        "aspect_ratio": "21:9",
    }
    assert estimate(IMG, body).units == 4


def test_comfyui_camera_control_with_a_decimal_value() -> None:
    body = {
        "model_name": "kling-v1",
        "prompt": "a forest",
        "mode": "std",
        "duration": "5",
        "camera_control": {"type": "simple", "config": {"zoom": 0.5, "pan": 0, "tilt": 0}},
    }
    assert estimate(T2V, body).units == 1


def test_image2video_with_voice_list() -> None:
    body = {
        "model_name": "kling-v2-6",
        "image": URL,
        "prompt": "<<<voice_1>>> says hello",
        "sound": "on",
        "voice_list": [{"voice_id": "v-1"}],
    }
    assert estimate(I2V, body).units == 6  # kling-v2-6 pro, sound and voices, 5 s
    with pytest.raises(RequestValidationError) as info:
        estimate(I2V, {**body, "model_name": "kling-v3", "element_list": [{"element_id": 1}]})
    assert [p.field for p in info.value.problems] == ["element_list"]


def test_watermark_info_is_checked_by_type() -> None:
    with pytest.raises(RequestValidationError) as info:
        estimate(T2V, {"prompt": "p", "watermark_info": {"enabled": "yes"}})
    (problem,) = info.value.problems
    assert (problem.field, problem.allowed) == ("watermark_info.enabled", "true or false")


# --- one catalogue: an overlay alone adds a model --------------------------------------------

OVERLAY = """\
sources:
  my-contract: "our Kling contract, 2026-12"
catalog:
  videos/text2video:
    kling-v3-1: { source: my-contract, durations: "3-15", multi_shot: true }
per_second:
  kling-v3-1:
    std:
      silent: { units: "0.7", source: my-contract }
      sound: { units: 1, source: my-contract }
    pro:
      silent: { units: "0.9", source: my-contract }
"""
NEW_MODEL_BODY = {"model_name": "kling-v3-1", "prompt": "p", "duration": 7, "sound": "on"}


@pytest.fixture
def overlay_path(tmp_path: Path) -> str:
    path = tmp_path / "new-model.yaml"
    path.write_text(OVERLAY, encoding="utf-8")
    return str(path)


def test_the_new_model_is_refused_without_the_overlay() -> None:
    with pytest.raises(RequestValidationError) as info:
        estimate(T2V, NEW_MODEL_BODY)
    assert [p.field for p in info.value.problems] == ["model_name"]


def test_an_overlay_alone_adds_a_model_to_python_estimate(overlay_path: str) -> None:
    sheet = load_sheet(overlay_path)
    assert estimate(T2V, NEW_MODEL_BODY, sheet=sheet).units == 7
    pro = {**NEW_MODEL_BODY, "mode": "pro", "sound": "off"}
    assert estimate(T2V, pro, sheet=sheet).units == Fraction("6.3")
    with pytest.raises(RequestValidationError) as info:  # no sound price in pro
        estimate(T2V, {**pro, "sound": "on"}, sheet=sheet)
    assert [p.field for p in info.value.problems] == ["sound"]


def test_an_overlay_alone_adds_a_model_to_the_cli(overlay_path: str, tmp_path: Path) -> None:
    prices = run("prices", "--json", "--pricing", overlay_path)
    assert prices.exit_code == 0, prices.output
    rows = [r for r in json.loads(prices.stdout)["rows"] if r["model"] == "kling-v3-1"]
    assert {(r["mode"], r["duration"], r["options"], r["units"]) for r in rows} >= {
        ("std", 3, "", "2.1"),
        ("std", 15, "sound on", "15"),
        ("pro", 10, "", "9"),
    }
    body = tmp_path / "body.json"
    body.write_text(json.dumps(NEW_MODEL_BODY), encoding="utf-8")
    result = run("estimate", "-e", "text2video", "--pricing", overlay_path, "--json", str(body))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["units"] == "7"
    # The same through KLINGCOST_PRICING, as the guard and every command read it.
    env = {**os.environ, "KLINGCOST_PRICING": overlay_path}
    assert run("estimate", "-e", "text2video", "--json", str(body), env=env).exit_code == 0
    assert run("estimate", "-e", "text2video", str(body)).exit_code == 2


def test_an_overlay_alone_adds_a_model_to_the_guard(overlay_path: str, tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        ledger.set_budget("studio", limit=1_000_000, period="month")
        with GuardedClient(
            "studio", ledger=ledger, api_key="hk-test", sheet=load_sheet(overlay_path)
        ) as guard:
            priced = guard.estimate(T2V, NEW_MODEL_BODY)
            assert (priced.units, priced.credits) == (7, 7 * CREDITS_PER_VIDEO_UNIT)
        without = GuardedClient("studio", ledger=ledger, api_key="hk-test")
        with without as guard, pytest.raises(RequestValidationError):
            guard.estimate(T2V, NEW_MODEL_BODY)


def test_a_price_only_overlay_adds_a_clip_model(tmp_path: Path) -> None:
    # A model priced per clip needs no catalogue entry: it is taken at the sheet's durations.
    path = tmp_path / "clip.yaml"
    path.write_text(
        "video:\n  models:\n    kling-v2-7:\n      std: { factor: 3, source: inferred }\n",
        encoding="utf-8",
    )
    sheet = load_sheet(str(path))
    body = {"model_name": "kling-v2-7", "prompt": "p", "duration": "10"}
    assert estimate(T2V, body, sheet=sheet).units == 6
    assert estimate(I2V, {**body, "image": URL}, sheet=sheet).units == 6


def test_a_catalogue_model_without_a_price_names_the_missing_key(tmp_path: Path) -> None:
    data = yaml.safe_load(
        resources.files("klingcost").joinpath("data/pricing.yaml").read_text(encoding="utf-8")
    )
    del data["per_second"]["kling-v3"]["4k"]["sound"]
    sheet = parse_sheet(data, origin="trimmed.yaml")
    with pytest.raises(RequestValidationError):  # sound in 4k is no longer offered
        estimate(
            T2V, {"model_name": "kling-v3", "prompt": "p", "mode": "4k", "sound": "on"}, sheet=sheet
        )
    # Voices in 4k: kling-v3 takes voices, but the sheet has no 4k voice price.
    body = {"model_name": "kling-v3", "prompt": "p", "mode": "4k", "sound": "on"}
    with pytest.raises(UnpricedRequestError) as info:
        estimate(T2V, {**body, "voice_list": [{"voice_id": "a"}]})
    assert info.value.missing == "per_second.kling-v3.4k.voice"


# --- the sheet says where every figure comes from ------------------------------------------


def test_every_model_of_the_sheet_has_a_source_a_user_can_open() -> None:
    sheet = load_sheet()
    for endpoint, models in sheet.models.items():
        for model, caps in models.items():
            assert caps.source in sheet.sources, (endpoint, model)  # listed, not implied
    for key, text in sheet.sources.items():
        if key == "inferred":
            continue
        assert "https://" in text, key
        assert "read 2026-12-03" in text, key
        assert "kling-facts" not in text and "shared/" not in text, key


def test_inferred_figures_say_how_and_disagreements_say_which_is_held() -> None:
    sheet = load_sheet()
    v3 = sheet.per_second["kling-v3"]
    for rate in (v3["std"].voice, v3["pro"].voice, sheet.per_second["kling-v3-omni"]["4k"].video):
        assert rate is not None and rate.source == "inferred" and rate.note
    assert "the higher is held" in v3["4k"].silent.note
    assert "the higher is held" in sheet.images["kling-v3"].text.note


# --- warnings and --strict on the command line ------------------------------------------------


def test_warnings_in_json_and_strict_refuses(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_text(json.dumps({"prompt": "p", "seed": 7}), encoding="utf-8")
    result = run("estimate", "-e", "text2video", "--json", str(path))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["units"] == "1"
    assert data["warnings"] == [
        "seed: unknown field, priced as if absent (given 7); --strict refuses it"
    ]
    text = run("estimate", "-e", "text2video", str(path))
    assert "warning: seed: unknown field" in text.stderr
    strict = run("estimate", "-e", "text2video", "--strict", str(path))
    assert strict.exit_code == 2
    assert "seed: unknown field (--strict" in strict.stderr
    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps({"prompt": "p"}), encoding="utf-8")
    assert (
        json.loads(run("estimate", "-e", "text2video", "--json", str(clean)).stdout)["warnings"]
        == []
    )


def test_batch_warnings_per_line(tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    lines = [{"prompt": "p", "seed": 1}, {"prompt": "p"}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    result = run("estimate", "-e", "text2video", "--json", str(path))
    rows = json.loads(result.stdout)["results"]
    assert [len(row["estimate"]["warnings"]) for row in rows] == [1, 0]
    strict = run("estimate", "-e", "text2video", "--strict", "--json", str(path))
    assert strict.exit_code == 2
    rows = json.loads(strict.stdout)["results"]
    assert "error" in rows[0] and "estimate" in rows[1]


# --- every documented field is checked by its type and range --------------------------------


@pytest.mark.parametrize(
    ("endpoint", "extra", "field"),
    [
        (T2V, {"callback_url": 5}, "callback_url"),
        (T2V, {"external_task_id": ["a"]}, "external_task_id"),
        (T2V, {"watermark_info": True}, "watermark_info"),
        (T2V, {"model_name": "kling-v3", "shot_type": "auto"}, "shot_type"),
        (T2V, {"model_name": "kling-v3", "multi_shot": "yes"}, "multi_shot"),
        (
            T2V,
            {"model_name": "kling-v3", "multi_shot": True, "multi_prompt": [{"prompt": "a"}]},
            "multi_prompt.0.duration",
        ),
        (
            T2V,
            {
                "model_name": "kling-v3",
                "multi_shot": True,
                "multi_prompt": [{"prompt": "a", "duration": "16"}],
            },
            "multi_prompt.0.duration",
        ),
        (
            T2V,
            {"model_name": "kling-v3", "sound": "on", "voice_list": [{"id": "a"}]},
            "voice_list.0.voice_id",
        ),
        (
            T2V,
            {"model_name": "kling-v3", "element_list": [{"element_id": 1.5}]},
            "element_list.0.element_id",
        ),
        (T2V, {"sound": "yes"}, "sound"),
        (I2V, {"image": URL, "image_tail": 7}, "image_tail"),
        (I2V, {"image": URL, "static_mask": "data:image/png;base64,AA"}, "static_mask"),
        (I2V, {"image": URL, "dynamic_masks": [{"mask": URL}] * 7}, "dynamic_masks"),
        (
            I2V,
            {
                "image": URL,
                "dynamic_masks": [{"mask": URL, "trajectories": [{"x": "a", "y": 1}] * 2}],
            },
            "dynamic_masks.0.trajectories.0.x",
        ),
        (IMG, {"resolution": 2}, "resolution"),
        (IMG, {"aspect_ratio": "21:10"}, "aspect_ratio"),
        (OMNI, {"image_list": [{"image_url": URL, "type": "middle_frame"}]}, "image_list.0.type"),
        (
            OMNI,
            {"video_list": [{"video_url": URL, "refer_type": "edit"}]},
            "video_list.0.refer_type",
        ),
    ],
)
def test_documented_fields_are_checked(endpoint: str, extra: dict[str, Any], field: str) -> None:
    body = {"prompt": "p", **extra}
    with pytest.raises(RequestValidationError) as info:
        estimate(endpoint, body)
    assert field in {p.field for p in info.value.problems}, info.value.problems
