"""The fake's own price table against klingcost's sheet: the same requests, priced both ways.

The requests are generated from the fake's table (klingcost/testing/prices.yaml): every model,
every rate key (mode, video reference, sound, voice), a spread of durations, every image
resolution, under both profiles. A row the table gains joins this test by itself.

The fake charges from its table alone (it never calls klingcost); klingcost prices the body with
``estimate`` and the provider each profile stands for. Their units must agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from klingcost.pricing import estimate
from klingcost.testing.prices import TableError, load_table, parse_table
from klingcost.testing.rules import Job, Refused, read_job

#: klingcost's provider for each of the fake's profiles.
PROVIDER = {"openai-hk": "openai-hk", "kling": "kling-global"}

IMAGE_URL = "https://example.com/first-frame.png"
VIDEO_URL = "https://example.com/input.mp4"
TABLE = load_table()


#: Each video endpoint and the part of the fake's table that prices it.
GROUPS = {
    "videos/text2video": TABLE.video,
    "videos/image2video": TABLE.video,
    "videos/multi-image2video": TABLE.multi_image,
    "videos/omni-video": TABLE.omni,
}


def _video_body(endpoint: str, model: str, key: str, seconds: int) -> dict[str, Any]:
    mode, *features = key.split("+")
    body: dict[str, Any] = {"model_name": model, "prompt": "a fox in the snow"}
    if mode != "flat":
        body["mode"] = mode
    if endpoint == "videos/image2video":
        body["image"] = IMAGE_URL
    if endpoint == "videos/multi-image2video":
        body["image_list"] = [{"image": IMAGE_URL}, {"image": IMAGE_URL}]
    if "video" in features:
        body["video_list"] = [{"video_url": VIDEO_URL, "refer_type": "feature"}]
    if "sound" in features or "voice" in features:
        body["sound"] = "on"
    if "voice" in features:
        body["voice_list"] = [{"voice_id": "fake-voice-1"}]
    body["duration"] = str(seconds) if endpoint != "videos/omni-video" else seconds
    return body


def _spread(allowed: tuple[int, ...]) -> list[int]:
    """Every duration of a clip model; the ends, 5, 10 and one odd second of a per-second one."""
    if len(allowed) <= 2:
        return list(allowed)
    picks = {allowed[0], allowed[-1], 5, 7, 10}
    return sorted(s for s in picks if s in allowed)


def _rows() -> Iterator[Any]:
    for profile in PROVIDER:
        for endpoint in GROUPS:
            prices = GROUPS[endpoint]
            for model, price in prices.items():
                for key in price.keys:
                    allowed = price.seconds_allowed(key)
                    # image2video prices as text2video does: one duration of each key is enough.
                    spread = allowed[:1] if endpoint == "videos/image2video" else _spread(allowed)
                    for seconds in spread:
                        body = _video_body(endpoint, model, key, seconds)
                        name = f"{profile}-{endpoint.split('/')[1]}-{model}-{key}-{seconds}s"
                        yield pytest.param(profile, endpoint, body, id=name)
        for model, image in TABLE.images.items():
            for reference in (False, True):
                for resolution in image.resolutions:
                    body = {"model_name": model, "prompt": "a fox", "n": 3}
                    if reference:
                        body["image"] = IMAGE_URL
                    if resolution != image.resolutions[0]:  # the default goes unsaid
                        body["resolution"] = resolution
                    kind = "reference" if reference else "text"
                    name = f"{profile}-images-{model}-{kind}-{resolution}"
                    yield pytest.param(profile, "images/generations", body, id=name)


@pytest.mark.parametrize(("profile", "endpoint", "body"), list(_rows()))
def test_the_fake_and_klingcost_charge_the_same_units(
    profile: str, endpoint: str, body: dict[str, Any]
) -> None:
    job = read_job(endpoint, body, TABLE, TABLE.profile(profile))
    priced = estimate(endpoint, body, provider=PROVIDER[profile])
    assert priced.units == job.units, (job, priced.breakdown)


def test_the_rows_cover_the_whole_table() -> None:
    """Every model of every group appears in the rows above, under both profiles."""
    seen = {(p.values[0], p.values[2]["model_name"]) for p in _rows()}
    for profile in PROVIDER:
        for model in [*TABLE.video, *TABLE.omni, *TABLE.images]:
            assert (profile, model) in seen


def test_the_rows_cover_multi_image2video() -> None:
    """Each key and duration of the fake's multi-image2video prices is one row per profile."""
    rows = {
        (p.values[0], p.values[2].get("mode"), p.values[2]["duration"])
        for p in _rows()
        if p.values[1] == "videos/multi-image2video"
    }
    assert rows == {
        (profile, mode, seconds)
        for profile in PROVIDER
        for mode in ("std", "pro")
        for seconds in ("5", "10")
    }


# --- the table's figures, read from the price list by hand ---------------------------------


def job(endpoint: str, body: dict[str, Any], profile: str = "kling") -> Job:
    return read_job(endpoint, body, TABLE, TABLE.profile(profile))


@pytest.mark.parametrize(
    ("endpoint", "body", "profile", "units"),
    [
        # the seed's worked example: kling-v1-5 at 10 s in pro = 7 units
        ("videos/text2video", {"prompt": "x", "model_name": "kling-v1-5", "mode": "pro",
                               "duration": "10"}, "kling", "7"),
        ("videos/text2video", {"prompt": "x"}, "kling", "1"),  # kling-v1 std 5 s: the base
        ("videos/text2video", {"prompt": "x", "model_name": "kling-v2-master"}, "kling", "10"),
        # kling-v2-6: std 1.5 on Kling; openai-hk bills it as pro (2.5)
        ("videos/text2video", {"prompt": "x", "model_name": "kling-v2-6", "mode": "std"},
         "kling", "1.5"),
        ("videos/text2video", {"prompt": "x", "model_name": "kling-v2-6", "mode": "std"},
         "openai-hk", "2.5"),
        # openai-hk runs kling-v2-6 as pro: a std body with sound is a pro task with sound
        ("videos/text2video", {"prompt": "x", "model_name": "kling-v2-6", "mode": "std",
                               "sound": "on"}, "openai-hk", "5"),
        ("videos/image2video", {"image": IMAGE_URL, "model_name": "kling-v2-6", "mode": "pro",
                                "sound": "on", "voice_list": [{"voice_id": "v"}]}, "kling", "6"),
        # the seed's O1 answer: std 5 s charged "4" on openai-hk; 0.6 x 5 on Kling
        ("videos/omni-video", {"prompt": "x", "mode": "std", "duration": 5}, "openai-hk", "4"),
        ("videos/omni-video", {"prompt": "x", "mode": "std", "duration": 5}, "kling", "3"),
        # the seed's O1 example: pro, 5 s, a video reference = 1.2 x 5 units
        ("videos/omni-video", {"prompt": "x", "mode": "pro", "duration": 5,
                               "video_list": [{"video_url": VIDEO_URL}]}, "kling", "6"),
        # an O1 edit without a duration: the longest input (10 s), std with a video: 0.9/s
        ("videos/omni-video", {"prompt": "x", "mode": "std", "video_list": [
            {"video_url": VIDEO_URL, "refer_type": "base"}]}, "kling", "9"),
        ("videos/text2video", {"prompt": "x", "model_name": "kling-v3", "mode": "pro",
                               "duration": "15", "sound": "on"}, "kling", "18"),
        ("images/generations", {"prompt": "x", "n": 2, "model_name": "kling-v1-5",
                                "image": IMAGE_URL}, "kling", "16"),
        ("images/generations", {"prompt": "x", "model_name": "kling-v3-omni",
                                "resolution": "4k"}, "kling", "16"),
        # multi-image2video: kling-v1-6 only, at kling-v1-6's price
        ("videos/multi-image2video", {"prompt": "x", "image_list": [{"image": IMAGE_URL}]},
         "kling", "2"),
        ("videos/multi-image2video", {"prompt": "x", "mode": "pro", "duration": "10",
                                      "image_list": [{"image": IMAGE_URL}] * 4}, "kling", "7"),
    ],
)  # fmt: skip
def test_listed_figures(endpoint: str, body: dict[str, Any], profile: str, units: str) -> None:
    assert job(endpoint, body, profile).units == Fraction(units)


@pytest.mark.parametrize(
    ("endpoint", "body", "profile", "field"),
    [
        ("videos/text2video", {"prompt": "x", "duration": "7"}, "kling", "duration"),
        ("videos/text2video", {"prompt": "x", "sound": "on"}, "kling", "sound"),  # kling-v1
        ("videos/text2video", {"prompt": "x", "model_name": "kling-v2-6", "sound": "on"},
         "kling", "sound"),  # std is silent only
        ("videos/text2video", {"prompt": "x", "model_name": "kling-v2-master", "mode": "pro"},
         "kling", "mode"),
        ("videos/text2video", {"prompt": "x", "model_name": "kling-v9"}, "kling", "model_name"),
        ("videos/text2video", {"prompt": "x" * 501}, "openai-hk", "prompt"),
        ("videos/text2video", {}, "kling", "prompt"),
        ("videos/image2video", {"prompt": "x"}, "kling", "image"),
        ("videos/image2video", {"image": IMAGE_URL, "model_name": "kling-v2-6", "mode": "pro",
                                "voice_list": [{"voice_id": "v"}]}, "kling", "voice_list"),
        ("videos/omni-video", {"prompt": "x", "duration": 11}, "kling", "duration"),
        ("videos/omni-video", {"prompt": "x", "video_list": [{}, {}]}, "kling", "video_list"),
        ("videos/omni-video", {"prompt": "x", "model_name": "kling-v3-omni", "sound": "on",
                               "video_list": [{"video_url": VIDEO_URL}]}, "kling", "video"),
        ("videos/multi-image2video", {"prompt": "x", "image_list": [{"image": IMAGE_URL}] * 5},
         "kling", "image_list"),
        ("videos/multi-image2video", {"image_list": [{"image": IMAGE_URL}]}, "kling", "prompt"),
        ("videos/multi-image2video", {"prompt": "x", "model_name": "kling-v2-1",
                                      "image_list": [{"image": IMAGE_URL}]}, "kling", "model_name"),
        ("videos/multi-image2video", {"prompt": "x", "image_list": [{"url": IMAGE_URL}]},
         "kling", "image_list"),
        ("images/generations", {"prompt": "x", "n": 10}, "kling", "^n 10"),
        ("images/generations", {"prompt": "x", "resolution": "4k"}, "kling", "resolution"),
        ("images/generations", {"prompt": "x", "aspect_ratio": "5:4"}, "kling", "aspect_ratio"),
    ],
)  # fmt: skip
def test_refusals_name_the_field(
    endpoint: str, body: dict[str, Any], profile: str, field: str
) -> None:
    with pytest.raises(Refused, match=field) as refused:
        job(endpoint, body, profile)
    assert refused.value.code == 1201


def test_a_prompt_over_the_proxy_limit_passes_on_kling() -> None:
    assert job("videos/text2video", {"prompt": "x" * 2500}, "kling").units == 1


def test_a_body_that_is_not_an_object_is_1200() -> None:
    with pytest.raises(Refused) as refused:
        job("videos/text2video", [1, 2])  # type: ignore[arg-type]
    assert refused.value.code == 1200


# --- the table's own rules ------------------------------------------------------------------


def _raw(**changes: Any) -> dict[str, Any]:
    import yaml

    text = (Path(__file__).parents[1] / "src/klingcost/testing/prices.yaml").read_text()
    raw: dict[str, Any] = yaml.safe_load(text)
    raw.update(changes)
    return raw


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"images": {"kling-v1": {"source": "kling-price-list", "text": 1.5, "reference": 1}}},
         "floats are not exact"),
        ({"images": {"kling-v1": {"source": "nobody", "text": 1, "reference": 1}}}, "source"),
        ({"video": {"m": {"source": "seed", "per_clip": {"std": {5: 1}}, "per_second": {}}}},
         "one of them"),
        ({"omni": {"m": {"source": "seed", "durations": "9-3", "per_second": {"std": 1}}}},
         "durations"),
        ({"version": 2}, "version"),
    ],
)  # fmt: skip
def test_a_broken_table_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(TableError, match=message):
        parse_table(_raw(**changes))


def test_every_model_names_a_listed_source() -> None:
    for prices in (TABLE.video, TABLE.omni, TABLE.images):
        for price in prices.values():
            assert price.source in TABLE.sources


def test_the_fake_imports_nothing_of_klingcost_pricing() -> None:
    """The oracle is independent: no module of klingcost.testing imports the code it checks."""
    import ast

    # api.redact: the one helper that keeps keys out of /_fake/requests; it prices nothing.
    allowed = {"klingcost.money", "klingcost._listen", "klingcost.api.redact"}
    package = Path(__file__).parents[1] / "src/klingcost/testing"
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.startswith("klingcost") and not name.startswith("klingcost.testing"):
                    assert name in allowed, f"{module.name} imports {name}"
