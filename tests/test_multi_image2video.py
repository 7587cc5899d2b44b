"""``POST /v1/videos/multi-image2video`` (Vercel's Kling provider sends it): validated, priced as
kling-v1-6 image2video of the same mode and duration, listed by ``klingcost prices``, and added
to the catalogue by an overlay like any endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from klingcost.cli import main
from klingcost.errors import RequestValidationError
from klingcost.pricing import estimate
from klingcost.request import ENDPOINTS, normalize_endpoint, validate_request
from klingcost.sheet import PRICING_ENV, load_sheet

IMAGES = [{"image": "https://example.com/a.png"}, {"image": "https://example.com/b.png"}]
BODY: dict[str, Any] = {"model_name": "kling-v1-6", "prompt": "a fox", "image_list": IMAGES}


@pytest.fixture(autouse=True)
def _no_env_sheet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRICING_ENV, raising=False)


@pytest.mark.parametrize(
    "name", ["videos/multi-image2video", "multi-image2video", "/v1/videos/multi-image2video"]
)
def test_the_endpoint_is_known_by_each_name(name: str) -> None:
    assert normalize_endpoint(name) == "videos/multi-image2video"
    assert "videos/multi-image2video" in ENDPOINTS


@pytest.mark.parametrize(
    ("mode", "duration", "units"),
    [("std", "5", "2"), ("std", "10", "4"), ("pro", "5", "7/2"), ("pro", "10", "7")],
)
def test_priced_exactly_as_kling_v1_6_image2video(mode: str, duration: str, units: str) -> None:
    multi = estimate("multi-image2video", {**BODY, "mode": mode, "duration": duration})
    single = estimate(
        "image2video",
        {
            "model_name": "kling-v1-6",
            "image": IMAGES[0]["image"],
            "mode": mode,
            "duration": duration,
        },
    )
    assert str(multi.units) == units
    assert multi.units == single.units and multi.cost == single.cost
    assert multi.pack == "video" and multi.request.duration == int(duration)


def test_defaults_are_kling_v1_6_std_5_s() -> None:
    priced = estimate("multi-image2video", {"prompt": "a fox", "image_list": IMAGES[:1]})
    assert (priced.model, priced.request.mode, priced.request.duration) == ("kling-v1-6", "std", 5)
    assert priced.units == 2


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({**BODY, "image_list": IMAGES * 2 + IMAGES[:1]}, "image_list", "1 to 4 images"),
        ({**BODY, "image_list": []}, "image_list", "1 to 4 images"),
        ({k: v for k, v in BODY.items() if k != "prompt"}, "prompt", "is required"),
        ({**BODY, "model_name": "kling-v2"}, "model_name", "kling-v1-6"),
        ({**BODY, "duration": "7"}, "duration", '"5" or "10"'),
        ({**BODY, "mode": "4k"}, "mode", "std"),
        ({**BODY, "image_list": [{"url": "https://example.com/a.png"}]}, "image_list.0.image", ""),
        ({**BODY, "aspect_ratio": "4:3"}, "aspect_ratio", "16:9"),
        ({**BODY, "sound": "on"}, "sound", "may change the price"),
    ],
)
def test_bad_bodies_are_refused_naming_the_field(
    body: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(RequestValidationError) as refused:
        validate_request("videos/multi-image2video", body)
    [problem] = refused.value.problems
    assert problem.field == field
    assert words in str(refused.value)


def test_kling_s_documented_fields_are_accepted() -> None:
    body = {
        **BODY,
        "negative_prompt": "blur",
        "mode": "pro",
        "aspect_ratio": "9:16",
        "callback_url": "https://example.com/hook",
        "external_task_id": "mine-1",
        "watermark_info": {"enabled": False},
    }
    request = validate_request("videos/multi-image2video", body, strict=True)
    assert request.warnings == () and request.mode == "pro"


def test_an_overlay_adds_a_model_to_the_endpoint(tmp_path: Path) -> None:
    overlay = tmp_path / "more.yaml"
    overlay.write_text(
        "catalog:\n  videos/multi-image2video:\n"
        "    kling-v2-1: { source: inferred, durations: [5, 10] }\n"
    )
    sheet = load_sheet(str(overlay))
    priced = estimate("multi-image2video", {**BODY, "model_name": "kling-v2-1"}, sheet=sheet)
    assert priced.units == 2
    with pytest.raises(RequestValidationError, match="model_name"):
        estimate("multi-image2video", {**BODY, "model_name": "kling-v2-1"})


def test_klingcost_estimate_prices_the_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_text(json.dumps({**BODY, "mode": "pro", "duration": "10"}))
    result = CliRunner().invoke(main, ["estimate", "-e", "multi-image2video", "--json", str(path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["endpoint"], data["units"], data["cost"]) == (
        "videos/multi-image2video",
        "7",
        "105000",
    )
    lines = json.dumps({"endpoint": "videos/multi-image2video", "body": BODY})
    result = CliRunner().invoke(main, ["estimate", "--json", "-"], input=lines)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["units"] == "2"


def test_klingcost_estimate_refuses_five_images_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_text(json.dumps({**BODY, "image_list": IMAGES * 2 + IMAGES[:1]}))
    result = CliRunner().invoke(main, ["estimate", "-e", "multi-image2video", str(path)])
    assert result.exit_code == 2
    assert "image_list" in result.output and "Traceback" not in result.output


def test_klingcost_prices_lists_each_mode_and_duration() -> None:
    result = CliRunner().invoke(main, ["prices", "--json"])
    assert result.exit_code == 0, result.output
    rows = [
        (r["model"], r["mode"], r["duration"], r["units"])
        for r in json.loads(result.stdout)["rows"]
        if r["endpoint"] == "videos/multi-image2video"
    ]
    assert sorted(rows) == [
        ("kling-v1-6", "pro", 5, "3.5"),
        ("kling-v1-6", "pro", 10, "7"),
        ("kling-v1-6", "std", 5, "2"),
        ("kling-v1-6", "std", 10, "4"),
    ]


def test_calibration_prices_a_multi_image2video_job_class() -> None:
    """klingcost calibrate compares observed charges with the sheet's price of the job class."""
    from klingcost.calibration import sheet_units
    from klingcost.jobclass import JobClass

    job = JobClass("videos/multi-image2video", "kling-v1-6", "pro", 10, False, False, True, 1)
    assert sheet_units(job, load_sheet()) == 7
