"""klingcost.request: every rule of the seed and kling-facts.md, Kling's defaults, and what real
clients send. Expected values are written out here from the sources, never read from the code."""

from __future__ import annotations

import base64
import math
import struct
import zlib
from typing import Any

import pytest
from pydantic import ValidationError

from klingcost.errors import KlingcostError, RequestValidationError
from klingcost.jobclass import JobClass
from klingcost.request import ValidatedRequest, normalize_endpoint, validate_request

T2V = "videos/text2video"
I2V = "videos/image2video"
IMG = "images/generations"
O1 = "videos/omni-video"
URL = "https://pics2.baidu.com/feed/fc1f4134970a304e8662f052c91a3188c8175c32.jpeg"
VIDEO_URL = "https://example.com/clip.mp4"

# From kling-facts.md (the seed's lists plus Kling's official price list), and the models of
# today (issue 12): kling-v3 beside them, kling-v3-omni on omni-video and images.
VIDEO_MODELS = [
    "kling-v1",
    "kling-v1-5",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
    "kling-v3",
]
CLIP_MODELS = VIDEO_MODELS[:-1]  # priced per 5 s clip, 5 or 10 s
IMAGE_MODELS = [
    "kling-v1",
    "kling-v1-5",
    "kling-v2",
    "kling-v2-new",
    "kling-v2-1",
    "kling-v3",
    "kling-image-o1",
    "kling-v3-omni",
]
OMNI_MODELS = ["kling-video-o1", "kling-v3-omni"]


# --- helpers --------------------------------------------------------------------------------


def png(width: int, height: int, *, trailing: int = 0) -> str:
    """A real grayscale PNG of the given size, base64 without a data: prefix."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes(width) for _ in range(height))
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
        + bytes(trailing)
    )
    return base64.b64encode(data).decode()


def jpeg(width: int, height: int) -> str:
    """The head of a baseline JPEG (SOI, APP0/JFIF, DQT-less SOF0) of the given size."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return base64.b64encode(b"\xff\xd8" + app0 + sof0 + b"\xff\xd9").decode()


def base(endpoint: str) -> dict[str, Any]:
    """The smallest valid body of an endpoint."""
    return {"image": URL} if endpoint == I2V else {"prompt": "p"}


def problems_of(endpoint: str, body: Any, **kwargs: Any) -> dict[str, Any]:
    """Validate a body that must fail; return {field: problem} (one problem per field)."""
    with pytest.raises(RequestValidationError) as info:
        validate_request(endpoint, body, **kwargs)
    error = info.value
    assert error.problems, "an error must list its problems"
    return {problem.field: problem for problem in error.problems}


def assert_invalid(endpoint: str, body: Any, field: str) -> RequestValidationError:
    with pytest.raises(RequestValidationError) as info:
        validate_request(endpoint, body)
    fields = [problem.field for problem in info.value.problems]
    assert field in fields, f"expected a problem on {field}, got {fields}"
    return info.value


# --- the seed's own example bodies ------------------------------------------------------------


def test_seed_image_example_body_is_valid() -> None:
    # The seed's curl example (its '' are empty strings: "not set").
    body = {
        "prompt": "a comic rabbit",
        "negative_prompt": "",
        "image": "",
        "image_fidelity": 0.5,
        "n": 1,
        "aspect_ratio": "4:3",
        "notify_hook": "",
    }
    request = validate_request(IMG, body)
    assert (request.model, request.n, request.reference_image) == ("kling-v1", 1, False)


def test_seed_text2video_full_format_is_valid() -> None:
    body = {
        "model_name": "kling-v1",
        "prompt": "a spaceship",
        "negative_prompt": "",
        "cfg_scale": 0,
        "mode": "std",
        "aspect_ratio": "1:1",
        "duration": "5",
        "camera_control": {"type": "simple", "config": {"horizontal": 1}},
        "notify_hook": "",
    }
    request = validate_request(T2V, body)
    assert (request.model, request.mode, request.duration, request.sound) == (
        "kling-v1",
        "std",
        5,
        False,
    )


def test_seed_text2video_minimal_body_is_valid() -> None:
    request = validate_request(T2V, {"prompt": "a spaceship"})
    assert request.endpoint == T2V


def test_seed_image2video_bodies_are_valid() -> None:
    assert validate_request(I2V, {"image": URL}).reference_image is True
    full = {
        "image": URL,
        "image_tail": "",
        "prompt": "",
        "negative_prompt": "",
        "cfg_scale": 0,
        "mode": "std",
        "aspect_ratio": "1:1",
        "duration": "5",
        "notify_hook": "",
    }
    request = validate_request(I2V, full)
    assert (request.model, request.mode, request.duration) == ("kling-v1", "std", 5)


def test_seed_omni_example_body_is_valid() -> None:
    body = {
        "prompt": "heavy snow",
        "model_name": "kling-video-o1",
        "duration": 5,
        "mode": "std",
        "aspect_ratio": "16:9",
        "notify_hook": "https://pdf2.openai-hk.com/test/2024/mqrunway",
    }
    request = validate_request(O1, body)
    assert (request.model, request.mode, request.duration) == ("kling-video-o1", "std", 5)


# --- Kling's defaults when a field is left out --------------------------------------------------


def test_video_defaults_are_kling_v1_std_5s_silent() -> None:
    request = validate_request(T2V, {"prompt": "p"})
    assert (request.model, request.mode, request.duration, request.sound, request.n) == (
        "kling-v1",
        "std",
        5,
        False,
        1,
    )


def test_image2video_defaults() -> None:
    request = validate_request(I2V, {"image": URL})
    assert (request.model, request.mode, request.duration, request.sound) == (
        "kling-v1",
        "std",
        5,
        False,
    )


def test_image_defaults_are_kling_v1_one_image() -> None:
    request = validate_request(IMG, {"prompt": "p"})
    assert (request.model, request.n, request.mode, request.duration) == ("kling-v1", 1, None, None)


def test_omni_defaults_are_o1_pro_5s() -> None:
    # Design decision (request.py DEFAULTS): O1 without a mode is priced as pro.
    request = validate_request(O1, {"prompt": "p"})
    assert (request.model, request.mode, request.duration, request.video_reference) == (
        "kling-video-o1",
        "pro",
        5,
        False,
    )


def test_kling_v2_6_defaults_to_pro() -> None:
    assert validate_request(T2V, {"prompt": "p", "model_name": "kling-v2-6"}).mode == "pro"


@pytest.mark.parametrize("model", ["kling-v1-5", "kling-v1-6", "kling-v2-1", "kling-v2-5-turbo"])
def test_other_moded_models_default_to_std(model: str) -> None:
    assert validate_request(T2V, {"prompt": "p", "model_name": model}).mode == "std"


# --- what real clients send ---------------------------------------------------------------------


def test_nulls_and_empty_strings_mean_unset() -> None:
    body = {
        "prompt": "p",
        "model_name": None,
        "mode": None,
        "duration": None,
        "negative_prompt": "",
        "cfg_scale": None,
        "aspect_ratio": "",
        "sound": None,
        "camera_control": None,
        "notify_hook": None,
    }
    request = validate_request(T2V, body)
    assert (request.model, request.mode, request.duration, request.sound) == (
        "kling-v1",
        "std",
        5,
        False,
    )
    image = validate_request(IMG, {"prompt": "p", "n": None, "image": None, "model_name": ""})
    assert (image.model, image.n, image.reference_image) == ("kling-v1", 1, False)


@pytest.mark.parametrize("duration", ["10", 10])
def test_duration_as_string_or_number(duration: Any) -> None:
    assert validate_request(T2V, {"prompt": "p", "duration": duration}).duration == 10


@pytest.mark.parametrize("n", ["3", 3])
def test_n_as_string_or_number(n: Any) -> None:
    assert validate_request(IMG, {"prompt": "p", "n": n}).n == 3


# The API takes 5 or "5" and nothing else that reads as a number: no spaces, no decimals,
# no full-width digits (str.isdigit() takes "１０"), no floats (pydantic takes 5.0 as 5).
NOT_WHOLE = ["5.0", " 10 ", "１０", "10\n", "+5", "-5", "0x5", 5.0, 10.0, float("inf")]


@pytest.mark.parametrize("endpoint", [T2V, I2V])
@pytest.mark.parametrize("duration", NOT_WHOLE)
def test_duration_refuses_what_the_api_refuses(endpoint: str, duration: Any) -> None:
    found = problems_of(endpoint, {**base(endpoint), "duration": duration})
    assert found["duration"].given == duration
    assert found["duration"].allowed == '"5" or "10"'


@pytest.mark.parametrize("duration", NOT_WHOLE)
def test_omni_duration_refuses_what_the_api_refuses(duration: Any) -> None:
    found = problems_of(O1, {"prompt": "p", "duration": duration})
    assert found["duration"].given == duration
    assert found["duration"].allowed == "3 to 10 seconds"


@pytest.mark.parametrize("n", ["２", "3.0", " 3 ", "3 ", "-3", 3.0, True])
def test_n_refuses_what_the_api_refuses(n: Any) -> None:
    found = problems_of(IMG, {"prompt": "p", "n": n})
    assert found["n"].given == n
    assert found["n"].allowed == "1 to 9"


@pytest.mark.parametrize(("endpoint", "allowed"), [(T2V, '"5" or "10"'), (O1, "3 to 10 seconds")])
def test_duration_nan_lists_the_allowed_values(endpoint: str, allowed: str) -> None:
    found = problems_of(endpoint, {"prompt": "p", "duration": float("nan")})
    assert math.isnan(found["duration"].given)
    assert found["duration"].allowed == allowed
    assert "documentation" not in str(found["duration"])


@pytest.mark.parametrize(("endpoint", "field"), [(T2V, "cfg_scale"), (IMG, "image_fidelity")])
def test_boolean_fraction_lists_the_allowed_range(endpoint: str, field: str) -> None:
    found = problems_of(endpoint, {"prompt": "p", field: True})
    assert found[field].allowed == "0 to 1"


def test_omni_duration_as_number_and_string() -> None:
    assert validate_request(O1, {"prompt": "p", "duration": 10}).duration == 10
    assert validate_request(O1, {"prompt": "p", "duration": "10"}).duration == 10


def test_model_is_accepted_for_model_name() -> None:
    request = validate_request(T2V, {"prompt": "p", "model": "kling-v1-6"})
    assert request.model == "kling-v1-6"
    both = validate_request(T2V, {"prompt": "p", "model": "kling-v1-6", "model_name": "kling-v1-6"})
    assert both.model == "kling-v1-6"


def test_model_and_model_name_that_disagree_are_refused() -> None:
    found = problems_of(T2V, {"prompt": "p", "model": "kling-v1-6", "model_name": "kling-v1"})
    assert found["model"].given == "kling-v1-6"
    assert "kling-v1" in found["model"].allowed


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("videos/text2video", T2V),
        ("text2video", T2V),
        ("/v1/videos/text2video", T2V),
        ("kling/v1/videos/image2video", I2V),
        ("images", IMG),
        ("generations", IMG),
        ("omni-video", O1),
        (" videos/omni-video/ ", O1),
    ],
)
def test_endpoint_names(name: str, expected: str) -> None:
    assert normalize_endpoint(name) == expected


@pytest.mark.parametrize("name", ["videos/lipsync", "", "video", 5, None, ["text2video"]])
def test_unknown_endpoint_is_a_validation_error(name: Any) -> None:
    with pytest.raises(RequestValidationError) as info:
        validate_request(name, {"prompt": "p"})
    (problem,) = info.value.problems
    assert problem.field == "endpoint"
    assert problem.given == name
    assert "videos/text2video" in problem.allowed


@pytest.mark.parametrize("body", [[{"prompt": "p"}], "prompt", 5, None])
def test_body_must_be_an_object(body: Any) -> None:
    found = problems_of(T2V, body)
    assert found["body"].allowed == "a JSON object"


# --- models per endpoint ------------------------------------------------------------------------


@pytest.mark.parametrize("model", VIDEO_MODELS)
@pytest.mark.parametrize("endpoint", [T2V, I2V])
def test_every_video_model_is_accepted(endpoint: str, model: str) -> None:
    body = {"prompt": "p", "model_name": model, "image": URL}
    if endpoint == T2V:
        del body["image"]
    assert validate_request(endpoint, body).model == model


@pytest.mark.parametrize("model", IMAGE_MODELS)
def test_every_image_model_is_accepted(model: str) -> None:
    assert validate_request(IMG, {"prompt": "p", "model_name": model}).model == model


@pytest.mark.parametrize(
    ("endpoint", "model"),
    [
        (T2V, "kling-v2"),  # an image model
        (T2V, "kling-video-o1"),
        (T2V, "kling-image-o1"),
        (I2V, "kling-video-o1"),
        (IMG, "kling-v2-master"),
        (IMG, "kling-v2-6"),
        (IMG, "kling-video-o1"),
        (O1, "kling-v1"),
        (O1, "kling-image-o1"),
        (T2V, "kling-v3-omni"),
        (T2V, "kling-v4"),
        (T2V, "KLING-V1"),
    ],
)
def test_unknown_model_names_the_field_value_and_allowed(endpoint: str, model: str) -> None:
    body: dict[str, Any] = {"prompt": "p", "model_name": model}
    if endpoint == I2V:
        body["image"] = URL
    found = problems_of(endpoint, body)
    problem = found["model_name"]
    assert problem.given == model
    expected_allowed = {
        T2V: VIDEO_MODELS,
        I2V: VIDEO_MODELS,
        IMG: IMAGE_MODELS,
        O1: OMNI_MODELS,
    }[endpoint]
    for allowed in expected_allowed:
        assert allowed in problem.allowed
    # What to do: the overlay key that would add a model.
    assert f"catalog.{endpoint}" in problem.allowed


# --- unknown fields, types ----------------------------------------------------------------------


CAMERA_WITH_DOLLY = {"type": "simple", "config": {"zoom": 1, "dolly": 1}}
UNKNOWN_HARMLESS = [
    # endpoint, body, the unknown field, the body without it
    (T2V, {"prompt": "p", "seed": 42}, "seed", {"prompt": "p"}),
    (T2V, {"prompt": "p", "user": {"id": 7}}, "user", {"prompt": "p"}),
    # Price words are whole words: "account" holds no count, "model" no mode.
    (T2V, {"prompt": "p", "account_id": "a-1"}, "account_id", {"prompt": "p"}),
    (T2V, {"prompt": "p", "model_version": "2"}, "model_version", {"prompt": "p"}),
    (
        O1,
        {"prompt": "p", "video_list": [{"video_url": VIDEO_URL, "x": 1}]},
        "video_list.0.x",
        {"prompt": "p", "video_list": [{"video_url": VIDEO_URL}]},
    ),
    (
        T2V,
        {"prompt": "p", "camera_control": CAMERA_WITH_DOLLY},
        "camera_control.config.dolly",
        {"prompt": "p", "camera_control": {"type": "simple", "config": {"zoom": 1}}},
    ),
    (
        T2V,
        {"prompt": "p", "watermark_info": {"enabled": True, "position": "tl"}},
        "watermark_info.position",
        {"prompt": "p"},
    ),
]


@pytest.mark.parametrize(("endpoint", "body", "field", "without"), UNKNOWN_HARMLESS)
def test_unknown_field_that_cannot_change_the_price_is_a_warning(
    endpoint: str, body: dict[str, Any], field: str, without: dict[str, Any]
) -> None:
    request = validate_request(endpoint, body)
    (warning,) = request.warnings
    assert warning.startswith(f"{field}: unknown field, priced as if absent")
    assert "--strict" in warning
    # Priced as if absent: the same job class as the body without the field.
    assert request.job == validate_request(endpoint, without).job
    assert validate_request(endpoint, without).warnings == ()


@pytest.mark.parametrize(("endpoint", "body", "field", "without"), UNKNOWN_HARMLESS)
def test_strict_refuses_every_unknown_field(
    endpoint: str, body: dict[str, Any], field: str, without: dict[str, Any]
) -> None:
    validate_request(endpoint, without, strict=True)
    found = problems_of(endpoint, body, strict=True)
    assert "--strict" in found[field].message
    assert "documented fields" in found[field].allowed


@pytest.mark.parametrize(
    ("endpoint", "body", "field"),
    [
        (T2V, {"prompt": "p", "n": 2}, "n"),  # n is an image field
        (T2V, {"prompt": "p", "generate_audio": True}, "generate_audio"),  # another API's sound
        (IMG, {"prompt": "p", "duration": "5"}, "duration"),
        (IMG, {"prompt": "p", "mode": "pro"}, "mode"),
        (I2V, {"image": URL, "video_list": []}, "video_list"),
        (T2V, {"prompt": "p", "quality": "1080p"}, "quality"),
        (T2V, {"prompt": "p", "numVideos": 2}, "numVideos"),  # camelCase words
        (IMG, {"prompt": "p", "imageSize": "2048x2048"}, "imageSize"),
        (T2V, {"prompt": "p", "is8K": True}, "is8K"),  # a size
        (T2V, {"prompt": "p", "durations": [5]}, "durations"),  # a plural
    ],
)
def test_unknown_field_that_may_change_the_price_is_refused(
    endpoint: str, body: dict[str, Any], field: str
) -> None:
    found = problems_of(endpoint, body)
    problem = found[field]
    assert (
        problem.message == "unknown field that may change the price, so klingcost cannot price it"
    )
    assert "documented fields" in problem.allowed


def test_unknown_field_lists_the_documented_fields() -> None:
    found = problems_of(T2V, {"prompt": "p", "seed": 42}, strict=True)
    assert found["seed"].given == 42
    for documented in ("model_name", "prompt", "mode", "duration", "camera_control", "sound"):
        assert documented in found["seed"].allowed


def test_o1_makes_no_sound() -> None:
    found = problems_of(O1, {"prompt": "p", "sound": "on"})
    assert found["sound"].given == "on"
    assert "kling-v3-omni" in found["sound"].allowed
    assert validate_request(O1, {"prompt": "p", "sound": "off"}).sound is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": 5}, "prompt"),
        ({"prompt": ["p"]}, "prompt"),
        ({"prompt": "p", "duration": "five"}, "duration"),
        ({"prompt": "p", "duration": 5.5}, "duration"),
        ({"prompt": "p", "duration": True}, "duration"),
        ({"prompt": "p", "duration": "²"}, "duration"),
        ({"prompt": "p", "duration": "1" * 5000}, "duration"),
        ({"prompt": "p", "cfg_scale": "high"}, "cfg_scale"),
        ({"prompt": "p", "cfg_scale": True}, "cfg_scale"),
        ({"prompt": "p", "camera_control": "simple"}, "camera_control"),
        ({"prompt": "p", "model_name": 1}, "model_name"),
    ],
)
def test_wrong_types_are_named(body: dict[str, Any], field: str) -> None:
    error = assert_invalid(T2V, body, field)
    text = str(error)
    assert "pydantic" not in text
    assert "Traceback" not in text
    assert "sys.set_int_max_str_digits" not in text


@pytest.mark.parametrize("endpoint", [T2V, IMG, O1])
def test_prompt_is_required(endpoint: str) -> None:
    found = problems_of(endpoint, {"model_name": None})
    assert found["prompt"].message == "is required"


def test_image_is_required_on_image2video_and_prompt_is_not() -> None:
    found = problems_of(I2V, {"prompt": "p"})
    assert set(found) == {"image"}


# --- lengths ------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", [T2V, IMG, O1, I2V])
def test_prompt_at_most_500_characters(endpoint: str) -> None:
    body: dict[str, Any] = {"prompt": "x" * 500}
    if endpoint == I2V:
        body["image"] = URL
    validate_request(endpoint, body)
    body["prompt"] = "x" * 501
    found = problems_of(endpoint, body)
    assert found["prompt"].allowed == "at most 500 characters"


@pytest.mark.parametrize("endpoint", [T2V, IMG, I2V])
def test_negative_prompt_at_most_200_characters(endpoint: str) -> None:
    body: dict[str, Any] = {"prompt": "p", "negative_prompt": "x" * 200, "image": URL}
    if endpoint == T2V:
        del body["image"]
    validate_request(endpoint, body)
    body["negative_prompt"] = "x" * 201
    found = problems_of(endpoint, body)
    assert found["negative_prompt"].allowed == "at most 200 characters"


def test_kling_own_limits_allow_2500_characters() -> None:
    body = {"prompt": "x" * 2500, "negative_prompt": "y" * 2500}
    validate_request(T2V, body, limits=(2500, 2500))
    found = problems_of(T2V, {"prompt": "x" * 2501}, limits=(2500, 2500))
    assert found["prompt"].allowed == "at most 2500 characters"


def test_prompt_length_counts_characters_not_bytes() -> None:
    validate_request(T2V, {"prompt": "雪" * 500})


# --- ranges and allowed values ------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 9])
def test_n_in_range(n: int) -> None:
    assert validate_request(IMG, {"prompt": "p", "n": n}).n == n


@pytest.mark.parametrize("n", [0, 10, -1, "0", "10"])
def test_n_out_of_range(n: Any) -> None:
    found = problems_of(IMG, {"prompt": "p", "n": n})
    assert found["n"].allowed == "1 to 9"


@pytest.mark.parametrize("ratio", ["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9"])
def test_image_aspect_ratios(ratio: str) -> None:
    validate_request(IMG, {"prompt": "p", "aspect_ratio": ratio})


@pytest.mark.parametrize("ratio", ["1:2", "16x9", "9:21"])
def test_image_aspect_ratio_refused(ratio: str) -> None:
    found = problems_of(IMG, {"prompt": "p", "aspect_ratio": ratio})
    assert "4:3" in found["aspect_ratio"].allowed


@pytest.mark.parametrize("endpoint", [T2V, O1])
@pytest.mark.parametrize("ratio", ["16:9", "9:16", "1:1"])
def test_video_aspect_ratios(endpoint: str, ratio: str) -> None:
    validate_request(endpoint, {"prompt": "p", "aspect_ratio": ratio})


@pytest.mark.parametrize("endpoint", [T2V, O1])
@pytest.mark.parametrize("ratio", ["4:3", "3:4", "3:2", "2:3"])
def test_image_only_aspect_ratios_refused_on_video(endpoint: str, ratio: str) -> None:
    found = problems_of(endpoint, {"prompt": "p", "aspect_ratio": ratio})
    assert found["aspect_ratio"].given == ratio
    assert "16:9" in found["aspect_ratio"].allowed


@pytest.mark.parametrize(
    ("endpoint", "field"),
    [(T2V, "cfg_scale"), (I2V, "cfg_scale"), (IMG, "image_fidelity"), (IMG, "human_fidelity")],
)
@pytest.mark.parametrize("value", [0, 0.5, 1, "0.5"])
def test_unit_interval_fields_accept_0_to_1(endpoint: str, field: str, value: Any) -> None:
    validate_request(endpoint, {**base(endpoint), field: value})


@pytest.mark.parametrize(
    ("endpoint", "field"),
    [(T2V, "cfg_scale"), (I2V, "cfg_scale"), (IMG, "image_fidelity"), (IMG, "human_fidelity")],
)
@pytest.mark.parametrize("value", [-0.1, 1.01, 2, -1])
def test_unit_interval_fields_refuse_outside(endpoint: str, field: str, value: Any) -> None:
    found = problems_of(endpoint, {**base(endpoint), field: value})
    assert found[field].given == value
    assert found[field].allowed == "0 to 1"


@pytest.mark.parametrize("endpoint", [T2V, I2V])
@pytest.mark.parametrize("duration", [0, 3, 7, 15, -5, "8"])
def test_video_duration_is_5_or_10(endpoint: str, duration: Any) -> None:
    found = problems_of(endpoint, {**base(endpoint), "duration": duration})
    assert '"5" or "10"' in found["duration"].allowed


@pytest.mark.parametrize("mode", ["turbo", "PRO", "high"])
def test_mode_is_std_or_pro(mode: str) -> None:
    found = problems_of(T2V, {"prompt": "p", "mode": mode})
    assert "std" in found["mode"].allowed and "pro" in found["mode"].allowed


# --- sound: kling-v2-6 only ---------------------------------------------------------------------


def test_sound_on_kling_v2_6() -> None:
    request = validate_request(T2V, {"prompt": "p", "model_name": "kling-v2-6", "sound": "on"})
    assert request.sound is True
    assert request.mode == "pro"


def test_sound_off_is_the_default_and_allowed() -> None:
    off = validate_request(T2V, {"prompt": "p", "model_name": "kling-v2-6", "sound": "off"})
    assert off.sound is False
    assert validate_request(T2V, {"prompt": "p", "model_name": "kling-v2-6"}).sound is False


@pytest.mark.parametrize("model", [m for m in CLIP_MODELS if m != "kling-v2-6"])
def test_sound_on_is_kling_v2_6_and_v3_only(model: str) -> None:
    found = problems_of(T2V, {"prompt": "p", "model_name": model, "sound": "on"})
    assert found["sound"].given == "on"
    assert "kling-v2-6" in found["sound"].allowed
    assert "kling-v3" in found["sound"].allowed


def test_sound_on_needs_pro_on_kling_v2_6() -> None:
    body = {"prompt": "p", "model_name": "kling-v2-6", "sound": "on", "mode": "std"}
    found = problems_of(T2V, body)
    assert "sound" in found


@pytest.mark.parametrize("sound", ["yes", "ON", True, 1])
def test_sound_is_on_or_off(sound: Any) -> None:
    found = problems_of(T2V, {"prompt": "p", "model_name": "kling-v2-6", "sound": sound})
    assert "on" in found["sound"].allowed and "off" in found["sound"].allowed


# --- kling-v2-master: no mode split ------------------------------------------------------------


@pytest.mark.parametrize("model", ["kling-v2-master", "kling-v2-1-master"])
def test_master_models_have_no_mode(model: str) -> None:
    assert validate_request(T2V, {"prompt": "p", "model_name": model}).mode is None
    # Design decision: "std" is accepted and ignored; "pro" is refused.
    assert validate_request(T2V, {"prompt": "p", "model_name": model, "mode": "std"}).mode is None
    found = problems_of(T2V, {"prompt": "p", "model_name": model, "mode": "pro"})
    assert found["mode"].given == "pro"


# --- camera control -----------------------------------------------------------------------------


def camera(kind: str = "simple", **config: int) -> dict[str, Any]:
    return {"type": kind, "config": config} if config else {"type": kind}


@pytest.mark.parametrize("axis", ["horizontal", "vertical", "pan", "tilt", "roll", "zoom"])
@pytest.mark.parametrize("value", [-10, 1, "10"])
def test_camera_simple_with_one_axis(axis: str, value: Any) -> None:
    validate_request(T2V, {"prompt": "p", "camera_control": camera(**{axis: value})})


@pytest.mark.parametrize(
    "kind", ["down_back", "forward_up", "right_turn_forward", "left_turn_forward"]
)
def test_camera_preset_types_without_config(kind: str) -> None:
    validate_request(T2V, {"prompt": "p", "camera_control": camera(kind)})


@pytest.mark.parametrize(
    "config",
    [{"horizontal": 1, "zoom": -1}, {"horizontal": 0}, {}, {"pan": 0, "tilt": 0}],
)
def test_camera_simple_needs_exactly_one_nonzero_axis(config: dict[str, int]) -> None:
    body = {"prompt": "p", "camera_control": {"type": "simple", "config": config}}
    found = problems_of(T2V, body)
    assert "exactly one" in found["camera_control.config"].allowed


def test_camera_simple_without_config() -> None:
    found = problems_of(T2V, {"prompt": "p", "camera_control": {"type": "simple"}})
    assert "camera_control.config" in found


@pytest.mark.parametrize("value", [11, -11, 100, 10.5, -10.01])
def test_camera_axis_range(value: float) -> None:
    found = problems_of(T2V, {"prompt": "p", "camera_control": camera(zoom=value)})  # type: ignore[arg-type]
    assert found["camera_control.config.zoom"].allowed == "a number from -10 to 10"


@pytest.mark.parametrize("value", [0.5, -9.75, "2.5", 10.0])
def test_camera_axis_may_be_a_decimal(value: Any) -> None:
    # The official reference types the axes as float in [-10, 10]; ComfyUI's nodes send 0.5.
    body = {"prompt": "p", "camera_control": camera(zoom=value)}
    assert validate_request(T2V, body).body.camera_control.config.zoom == float(value)  # type: ignore[union-attr]


@pytest.mark.parametrize("value", [True, "half", [1]])
def test_camera_axis_must_be_a_number(value: Any) -> None:
    assert_invalid(
        T2V, {"prompt": "p", "camera_control": camera(zoom=value)}, "camera_control.config.zoom"
    )


def test_camera_preset_takes_no_config() -> None:
    found = problems_of(T2V, {"prompt": "p", "camera_control": camera("down_back", zoom=1)})
    assert found["camera_control.config"].allowed == "no config"


def test_camera_type_allowed_values() -> None:
    found = problems_of(T2V, {"prompt": "p", "camera_control": camera("orbit")})
    assert "left_turn_forward" in found["camera_control.type"].allowed


@pytest.mark.parametrize(
    "extra", [{"duration": "10"}, {"mode": "pro"}, {"duration": 10, "mode": "pro"}]
)
def test_camera_only_at_5s_std(extra: dict[str, Any]) -> None:
    body = {"prompt": "p", "camera_control": camera(pan=3), **extra}
    found = problems_of(T2V, body)
    assert found["camera_control"].allowed == "5 s in std mode"


@pytest.mark.parametrize("model", ["kling-v1-5", "kling-v1-6", "kling-v2-master"])
def test_text2video_camera_is_kling_v1_only(model: str) -> None:
    body = {"prompt": "p", "model_name": model, "camera_control": camera(pan=3)}
    with pytest.raises(RequestValidationError) as info:
        validate_request(T2V, body)
    assert any(p.field == "camera_control" and p.allowed == "kling-v1" for p in info.value.problems)


def test_image2video_camera_at_5s_std() -> None:
    body = {"image": URL, "model_name": "kling-v1-5", "camera_control": camera(zoom=2)}
    assert validate_request(I2V, body).model == "kling-v1-5"


# --- image2video: end frame, brush, camera cannot be combined ----------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"image_tail": URL, "camera_control": {"type": "down_back"}},
        {"image_tail": URL, "static_mask": URL},
        {"image_tail": URL, "dynamic_masks": [{"mask": URL, "trajectories": []}]},
        {"static_mask": URL, "camera_control": {"type": "forward_up"}},
    ],
)
def test_image2video_exclusive_features(extra: dict[str, Any]) -> None:
    with pytest.raises(RequestValidationError) as info:
        validate_request(I2V, {"image": URL, **extra})
    messages = " ".join(p.message for p in info.value.problems)
    assert "cannot combine" in messages


@pytest.mark.parametrize(
    "extra",
    [
        {"image_tail": URL},
        {"static_mask": URL},
        {"dynamic_masks": [{"mask": URL}]},
        {"camera_control": {"type": "forward_up"}},
    ],
)
def test_image2video_each_feature_alone(extra: dict[str, Any]) -> None:
    validate_request(I2V, {"image": URL, **extra})


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        ("notbase64!!", "not a URL or base64"),
        (png(299, 300), "image too small"),
        ("data:image/png;base64," + png(300, 300), "data: URI prefix"),
        (base64.b64encode(b"GIF89a" + bytes(100)).decode(), "not a jpg or png image"),
    ],
    ids=["junk", "small", "data-uri", "gif"],
)
@pytest.mark.parametrize("where", ["static_mask", "dynamic_masks"])
def test_image2video_masks_are_checked_like_image(mask: str, message: str, where: str) -> None:
    body: dict[str, object]
    if where == "static_mask":
        body, field = {"image": URL, "static_mask": mask}, "static_mask"
    else:
        brush = [{"mask": URL}, {"mask": mask, "trajectories": []}]
        body, field = {"image": URL, "dynamic_masks": brush}, "dynamic_masks.1.mask"
    found = problems_of(I2V, body)
    assert found[field].message == message


def test_image2video_inline_masks_that_keep_the_rules() -> None:
    validate_request(I2V, {"image": URL, "static_mask": png(300, 300)})
    validate_request(I2V, {"image": URL, "dynamic_masks": [{"mask": jpeg(1280, 720)}]})


def test_image2video_dynamic_mask_must_be_a_string() -> None:
    found = problems_of(I2V, {"image": URL, "dynamic_masks": [{"mask": 5}]})
    assert found["dynamic_masks.0.mask"].given == 5
    assert "URL" in found["dynamic_masks.0.mask"].allowed


# --- inline images ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [png(300, 300), png(750, 300), png(300, 750), jpeg(1280, 720), jpeg(300, 300)],
    ids=["png-300", "png-2.5:1", "png-1:2.5", "jpeg-720p", "jpeg-300"],
)
def test_inline_images_that_keep_the_rules(image: str) -> None:
    validate_request(IMG, {"prompt": "p", "image": image})
    validate_request(I2V, {"image": image, "image_tail": image})


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (png(299, 300), "image too small"),
        (png(300, 299), "image too small"),
        (jpeg(200, 400), "image too small"),
        (png(751, 300), "image too narrow"),
        (png(300, 760), "image too narrow"),
        (base64.b64encode(b"GIF89a" + bytes(100)).decode(), "not a jpg or png image"),
        ("data:image/png;base64," + png(300, 300), "data: URI prefix"),
        ("not base64 at all!", "not a URL or base64"),
        ("ftp://example.com/a.png", "not a URL or base64"),
    ],
    ids=["narrow-w", "narrow-h", "jpeg-small", "wide", "tall", "gif", "data-uri", "junk", "ftp"],
)
@pytest.mark.parametrize("where", ["image", "image_tail", "generations", "omni"])
def test_inline_images_that_break_a_rule(image: str, message: str, where: str) -> None:
    body: dict[str, object]
    if where == "generations":
        endpoint, body, field = IMG, {"prompt": "p", "image": image}, "image"
    elif where == "omni":
        body = {"prompt": "p", "image_list": [{"image_url": image, "type": "first_frame"}]}
        endpoint, field = O1, "image_list.0.image_url"
    else:
        endpoint, field = I2V, where
        body = {"image": URL, where: image} if where == "image_tail" else {"image": image}
    found = problems_of(endpoint, body)
    assert found[field].message == message


def test_inline_image_over_10_mb() -> None:
    big = png(300, 300, trailing=10 * 1024 * 1024)
    found = problems_of(IMG, {"prompt": "p", "image": big})
    assert found["image"].message == "image too large"
    assert found["image"].allowed == "at most 10 MB"


def test_inline_image_exactly_within_10_mb() -> None:
    small = base64.b64decode(png(300, 300))
    ok = png(300, 300, trailing=10 * 1024 * 1024 - len(small))
    validate_request(IMG, {"prompt": "p", "image": ok})


def test_image_urls_are_not_fetched_or_checked() -> None:
    validate_request(I2V, {"image": "https://example.com/tiny.gif"})


# --- O1 lists -----------------------------------------------------------------------------------


def frames(count: int, kind: str = "end_frame") -> list[dict[str, str]]:
    return [{"image_url": f"https://example.com/{i}.png", "type": kind} for i in range(count)]


def videos(count: int) -> list[dict[str, str]]:
    return [{"video_url": VIDEO_URL, "refer_type": "feature"} for _ in range(count)]


def test_omni_video_reference() -> None:
    request = validate_request(O1, {"prompt": "p", "video_list": videos(1)})
    assert request.video_reference is True
    assert validate_request(O1, {"prompt": "p", "video_list": []}).video_reference is False


def test_omni_at_most_one_video() -> None:
    found = problems_of(O1, {"prompt": "p", "video_list": videos(2)})
    assert found["video_list"].given == 2
    assert found["video_list"].allowed == "at most 1 video"


def test_omni_seven_images_and_elements_without_video() -> None:
    validate_request(O1, {"prompt": "p", "image_list": frames(7)})
    validate_request(
        O1,
        {
            "prompt": "p",
            "image_list": frames(4),
            "element_list": [{"element_id": i} for i in range(3)],
        },
    )
    found = problems_of(O1, {"prompt": "p", "image_list": frames(8)})
    assert found["image_list"].given == 8
    assert "at most 7" in found["image_list"].allowed
    found = problems_of(
        O1,
        {"prompt": "p", "image_list": frames(5), "element_list": [{"element_id": "a"}] * 3},
    )
    assert found["image_list"].given == 8


def test_omni_four_images_and_elements_with_a_video() -> None:
    validate_request(O1, {"prompt": "p", "video_list": videos(1), "image_list": frames(4)})
    found = problems_of(O1, {"prompt": "p", "video_list": videos(1), "image_list": frames(5)})
    assert "at most 4" in found["image_list"].allowed


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"video_url": VIDEO_URL, "refer_type": "style"}, "video_list.0.refer_type"),
        (
            {"video_url": VIDEO_URL, "keep_original_sound": "maybe"},
            "video_list.0.keep_original_sound",
        ),
        ({"refer_type": "base"}, "video_list.0.video_url"),
    ],
)
def test_omni_video_item_rules(item: dict[str, Any], field: str) -> None:
    assert_invalid(O1, {"prompt": "p", "video_list": [item]}, field)


def test_omni_video_item_allowed_values() -> None:
    for refer in ("feature", "base"):
        for keep in ("yes", "no"):
            item = {"video_url": VIDEO_URL, "refer_type": refer, "keep_original_sound": keep}
            validate_request(O1, {"prompt": "p", "video_list": [item]})


def test_omni_image_type_allowed_values() -> None:
    validate_request(O1, {"prompt": "p", "image_list": frames(1, "first_frame")})
    assert_invalid(O1, {"prompt": "p", "image_list": frames(1, "middle")}, "image_list.0.type")


@pytest.mark.parametrize("duration", range(3, 11))
def test_omni_durations_3_to_10_with_a_video_or_end_frame(duration: int) -> None:
    validate_request(O1, {"prompt": "p", "duration": duration, "video_list": videos(1)})
    validate_request(O1, {"prompt": "p", "duration": str(duration), "image_list": frames(1)})


@pytest.mark.parametrize("duration", [0, 1, 2, 11, 15])
def test_omni_duration_outside_3_to_10(duration: int) -> None:
    found = problems_of(O1, {"prompt": "p", "duration": duration, "video_list": videos(1)})
    assert found["duration"].allowed == "3 to 10 seconds"


@pytest.mark.parametrize("duration", [3, 4, 6, 7, 8, 9])
def test_omni_text_only_and_first_frame_tasks_take_3_to_10(duration: int) -> None:
    # kling-video-o1 takes 3 to 10 s (issue 12); klingcost used to allow only 5 or 10 here.
    assert validate_request(O1, {"prompt": "p", "duration": duration}).duration == duration
    body = {"prompt": "p", "duration": duration, "image_list": frames(1, "first_frame")}
    assert validate_request(O1, body).duration == duration


# --- one error names every problem, and never leaks pydantic ---------------------------------


def test_one_error_names_every_offending_field() -> None:
    body = {
        "model_name": "kling-v2-master",
        "prompt": "x" * 501,
        "mode": "pro",
        "duration": "7",
        "cfg_scale": 2,
        "aspect_ratio": "4:3",
        "generate_audio": True,
    }
    found = problems_of(T2V, body)
    expected = {"prompt", "mode", "duration", "cfg_scale", "aspect_ratio", "generate_audio"}
    assert set(found) == expected
    assert found["duration"].given == 7
    assert found["cfg_scale"].given == 2
    assert found["aspect_ratio"].given == "4:3"
    assert found["generate_audio"].given is True


@pytest.mark.parametrize(
    ("endpoint", "body", "fields"),
    [
        # An unknown model's durations are unknown: only its model-free rules are checked.
        (T2V, {"model_name": "kling-v9", "duration": 7}, {"prompt", "model_name"}),
        (T2V, {"prompt": 5, "model_name": "kling-v1", "sound": "on"}, {"prompt", "sound"}),
        (I2V, {"image": 5, "duration": 7, "sound": "on"}, {"image", "duration", "sound"}),
        (
            I2V,
            {"mode": "pro", "camera_control": {"type": "down_back"}},
            {"image", "camera_control"},
        ),
        (IMG, {"n": 0, "image": "data:x"}, {"prompt", "n", "image"}),
        (
            O1,
            {"duration": 12, "video_list": [{"video_url": "x"}] * 2},
            {"prompt", "duration", "video_list"},
        ),
    ],
)
def test_a_missing_or_broken_required_field_hides_no_other_problem(
    endpoint: str, body: dict[str, Any], fields: set[str]
) -> None:
    assert set(problems_of(endpoint, body)) == fields


def test_error_message_names_field_value_and_allowed() -> None:
    with pytest.raises(RequestValidationError) as info:
        validate_request(T2V, {"prompt": "p", "duration": "7", "mode": "ultra"})
    text = str(info.value)
    assert "invalid videos/text2video request (2 problems)" in text
    assert "duration" in text and "7" in text and '"5" or "10"' in text
    assert "mode" in text and "'ultra'" in text and "'std'" in text


def test_validation_error_is_klingcost_own_not_pydantic() -> None:
    with pytest.raises(RequestValidationError) as info:
        validate_request(T2V, {"prompt": 5, "camera_control": {"type": 1}})
    error = info.value
    assert isinstance(error, KlingcostError)
    assert isinstance(error, ValueError)
    assert not isinstance(error, ValidationError)
    assert error.__cause__ is None
    # A traceback of it would not show pydantic's error either.
    assert error.__context__ is None or error.__suppress_context__
    assert error.endpoint == T2V
    assert "errors.pydantic.dev" not in str(error)


@pytest.mark.parametrize("element_id", [True, [1], 5.0, {"id": 1}])
def test_union_field_is_one_problem_under_its_own_name(element_id: Any) -> None:
    with pytest.raises(RequestValidationError) as info:
        validate_request(O1, {"prompt": "p", "element_list": [{"element_id": element_id}]})
    (problem,) = info.value.problems
    assert problem.field == "element_list.0.element_id"
    assert problem.given == element_id
    assert "whole number" in problem.allowed and "string" in problem.allowed
    assert "function-before" not in str(info.value)


@pytest.mark.parametrize("element_id", [5, "5", "el-abc"])
def test_element_id_is_a_number_or_a_string(element_id: Any) -> None:
    validate_request(O1, {"prompt": "p", "element_list": [{"element_id": element_id}]})


@pytest.mark.parametrize(
    ("endpoint", "body", "field"),
    [
        (T2V, {"prompt": "p", "camera_control": "simple"}, "camera_control"),
        (
            T2V,
            {"prompt": "p", "camera_control": {"type": "simple", "config": 3}},
            "camera_control.config",
        ),
        (O1, {"prompt": "p", "video_list": [3]}, "video_list.0"),
        (O1, {"prompt": "p", "image_list": ["x"]}, "image_list.0"),
        (O1, {"prompt": "p", "element_list": [7]}, "element_list.0"),
    ],
)
def test_messages_name_no_pydantic_class(endpoint: str, body: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        validate_request(endpoint, body)
    found = {problem.field: problem for problem in info.value.problems}
    assert found[field].allowed == "a JSON object"
    assert found[field].message == "not a JSON object"
    text = str(info.value)
    for pydantic_text in ("Input should", "instance of", "Camera", "Omni", "dictionary"):
        assert pydantic_text not in text


@pytest.mark.parametrize(
    ("body", "field"),
    [({"prompt": 5}, "prompt"), ({"prompt": "p", "cfg_scale": "high"}, "cfg_scale")],
)
def test_type_messages_are_our_own(body: dict[str, Any], field: str) -> None:
    found = problems_of(T2V, body)
    assert not found[field].message.startswith("Input should")


def test_missing_value_shows_as_nothing() -> None:
    with pytest.raises(RequestValidationError) as info:
        validate_request(T2V, {})
    assert "prompt: is required (given nothing; allowed: a value)" in str(info.value)


# --- the validated request ----------------------------------------------------------------------


def test_validated_request_job_holds_only_what_decides_the_price() -> None:
    a = validate_request(T2V, {"prompt": "a ship", "mode": "pro", "duration": 10})
    b = validate_request(
        T2V, {"prompt": "a cat", "mode": "pro", "duration": "10", "aspect_ratio": "9:16"}
    )
    assert isinstance(a, ValidatedRequest)
    assert a.job == b.job
    assert a.job == JobClass(T2V, "kling-v1", "pro", 10)
    assert a.job_key == (T2V, "kling-v1", "pro", 10, False, False, False, 1, False, None, False)
    c = validate_request(T2V, {"prompt": "a ship", "mode": "std", "duration": 10})
    assert a.job != c.job and a.job_key != c.job_key


def test_validation_does_not_change_the_body() -> None:
    body = {"prompt": "p", "model": "kling-v1-5", "duration": "10", "mode": None}
    copy = dict(body)
    validate_request(T2V, body)
    assert body == copy


def test_image_reference_flag() -> None:
    assert validate_request(IMG, {"prompt": "p", "image": URL}).reference_image is True
    assert validate_request(IMG, {"prompt": "p"}).reference_image is False
    assert validate_request(IMG, {"prompt": "p", "image": URL, "image_reference": "face"})
    assert_invalid(IMG, {"prompt": "p", "image": URL, "image_reference": "body"}, "image_reference")


class _Text(str):
    """A str subclass, as a client's own string type may be."""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "ok", "multi_prompt": [{"prompt": "a\ud800"}]}, "multi_prompt.0.prompt"),
        ({"prompt": "ok", "multi_prompt": ({"\udc80": "x"},)}, "multi_prompt.0.\\udc80"),
        ({"prompt": _Text("snow \udfff")}, "prompt"),
        ({"prompt": "ok", "watermark_info": {"enabled": False, "n\ud800": 1}}, "watermark_info"),
    ],
)
def test_a_lone_surrogate_is_found_at_any_depth_and_in_any_container(
    body: dict[str, Any], field: str
) -> None:
    """The fast pass that lets an ordinary body through cheaply misses none of these."""
    with pytest.raises(RequestValidationError) as caught:
        validate_request("videos/text2video", {"model_name": "kling-v3", **body})
    [problem] = caught.value.problems
    assert problem.field.startswith(field) and "lone surrogate" in problem.message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # The top level, which the one pass over the keys judges "plain" or not:
        ({"prompt": "a\ud800"}, "prompt"),
        ({"prompt": "é\ud800"}, "prompt"),  # not ASCII, and a surrogate after the é
        ({"\ud800": None, "prompt": "ok"}, "\\ud800"),  # a key whose value is dropped as unset
        ({"\udc80": "", "prompt": "ok"}, "\\udc80"),
        ({"prompt": "ok", "negative_prompt": "fine", "é\udfff": 1}, "é\\udfff"),
        ({"prompt": "ok", "notify_hook": _Text("https://x.invalid/\ud800")}, "notify_hook"),
    ],
)
def test_a_lone_surrogate_at_the_top_level_is_refused_whatever_else_the_body_holds(
    body: dict[str, Any], field: str
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        validate_request("videos/text2video", {"model_name": "kling-v3", **body})
    [problem] = caught.value.problems
    assert problem.field == field and "lone surrogate" in problem.message


def test_an_ordinary_non_ascii_body_is_not_taken_for_a_lone_surrogate() -> None:
    body = {"model_name": "kling-v3", "prompt": "雪の中の船 🚢", "negative_prompt": "ñ"}
    assert validate_request("videos/text2video", body).duration == 5
