"""The plain reader (no pydantic) agrees with pydantic on every body it reads.

:func:`klingcost.request.plain.read_plain` reads bodies of top-level strings and numbers and
hands anything else to pydantic. Here both paths judge the same bodies: for each, the outcome
with the plain reader (the default) must equal the outcome with pydantic alone: the same
validated request and body, or the same problems, word for word. Bodies are drawn from the
fields each endpoint reads, with values of every kind (good, bad, converted, out of range).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from klingcost.errors import RequestValidationError
from klingcost.request import validate as validate_module
from klingcost.request import validate_request
from klingcost.request.models import MODEL_FOR, model_in
from klingcost.request.plain import NESTED, PLAIN_BODY, READERS, PlainBody, read_plain
from klingcost.sheet import load_sheet

SHEET = load_sheet()
PLAIN_ENDPOINTS = sorted(READERS)


@contextmanager
def pydantic_only() -> Iterator[None]:
    """Validate as if the plain reader did not exist: every body through pydantic."""
    with mock.patch.object(validate_module, "read_plain", lambda endpoint, prepared: None):
        yield


def outcome(endpoint: str, body: dict[str, Any]) -> tuple[Any, ...]:
    """What validation made of ``body``: the request and its body, or the problems."""
    try:
        request = validate_request(endpoint, body, sheet=SHEET)
    except RequestValidationError as exc:
        return ("refused", [(p.field, repr(p.given), p.allowed, p.message) for p in exc.problems])
    return ("valid", request[:8] + request[9:], request.body)  # every field but parsed


def both(endpoint: str, body: dict[str, Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    fast = outcome(endpoint, body)
    with pydantic_only():
        slow = outcome(endpoint, body)
    return fast, slow


# --- the fields agree with the models ------------------------------------------------------


@pytest.mark.parametrize("endpoint", PLAIN_ENDPOINTS)
def test_a_plain_body_has_every_field_of_its_model(endpoint: str) -> None:
    model = MODEL_FOR[endpoint]  # type: ignore[index]
    assert set(READERS[endpoint]) | set(NESTED[endpoint]) == set(model.model_fields)  # type: ignore[index]
    for name in NESTED[endpoint]:  # type: ignore[index]
        # the fields left to pydantic are objects or lists, never plain values
        annotation = str(model.model_fields[name].annotation)
        assert model_in(model.model_fields[name].annotation) or "list" in annotation, name
    body = PLAIN_BODY[endpoint]({})  # type: ignore[index]
    for name in model.model_fields:
        assert getattr(body, name) is None
    with pytest.raises(AttributeError, match="no field 'colour'"):
        body.colour  # noqa: B018


def test_a_plain_body_reads_as_its_model_and_converts_as_pydantic_does() -> None:
    body = {"prompt": "a ship", "duration": "10", "cfg_scale": 1, "mode": "pro", "sound": "off"}
    request = validate_request("text2video", {**body, "model_name": "kling-v2-6"}, sheet=SHEET)
    assert isinstance(request.parsed, PlainBody)
    assert request.parsed.duration == 10 and request.parsed.cfg_scale == 1.0
    assert type(request.parsed.cfg_scale) is float  # as pydantic makes it
    assert request.parsed.negative_prompt is None and request.parsed.camera_control is None
    assert request.body == MODEL_FOR["videos/text2video"].model_validate(
        {**body, "model_name": "kling-v2-6"}
    )
    assert request.duration == 10 and request.mode == "pro"


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("text2video", {"prompt": "x", "camera_control": {"type": "down_back"}}),  # nested
        ("text2video", {"prompt": "x", "seed": 7}),  # unknown: a warning is pydantic's path
        ("text2video", {"prompt": "x", "duration": 5.0}),  # a float duration: refused there
        ("text2video", {"prompt": "x", "cfg_scale": True}),
        ("text2video", {"prompt": "x", "cfg_scale": "0.5"}),  # pydantic reads it; not here
        ("text2video", {"prompt": "x", "multi_shot": "true"}),
        ("text2video", {"prompt": "x", "duration": 10**40}),
        ("image2video", {"prompt": "x"}),  # image is required: pydantic names it
        ("images", {"prompt": "x", "n": 10}),
        ("images", {"n": 2}),
        ("multi-image2video", {"prompt": "x", "image_list": [{"image": "https://a/b.png"}]}),
    ],
)
def test_the_plain_reader_leaves_to_pydantic_what_it_does_not_judge(
    endpoint: str, body: dict[str, Any]
) -> None:
    from klingcost.request.catalog import normalize_endpoint

    assert read_plain(normalize_endpoint(endpoint), body) is None
    fast, slow = both(endpoint, body)
    assert fast == slow


# --- every body, both paths ---------------------------------------------------------------

_models = sorted({m for models in SHEET.models.values() for m in models})
_texts = st.sampled_from(
    [
        "a ship at dawn",
        "x" * 501,  # over the proxy's prompt limit
        "https://example.com/a.png",
        "data:image/png;base64,AAAA",
        "not base64!",
        "std",
        "pro",
        "on",
        "off",
        "16:9",
        "21:9",
        "subject",
        "customize",
        "intelligence",
        "1k",
        "2k",
        "8k",
        "5",
        "10",
        "0",
        "-5",
        "１０",
        "5.0",
        "海上的船",
        " ",
        *_models,
    ]
)
_values = st.one_of(
    _texts,
    st.integers(min_value=-3, max_value=20),
    st.sampled_from([0.0, 0.5, 1.0, 1.5, -0.0, float("nan"), float("inf"), 2**70, 10**20]),
    st.booleans(),
    st.none(),
    st.just(""),
    st.just([]),
    st.just({}),
)


@st.composite
def plain_bodies(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    endpoint = draw(st.sampled_from(PLAIN_ENDPOINTS))
    names = sorted(READERS[endpoint])
    keys = draw(st.lists(st.sampled_from([*names, "model", "seed"]), max_size=7, unique=True))
    body = {key: draw(_values) for key in keys}
    # Most bodies name a model of the endpoint and carry what is required.
    if draw(st.booleans()):
        body["model_name"] = draw(st.sampled_from(sorted(SHEET.models[endpoint])))
    if draw(st.booleans()):
        body.setdefault("prompt", "a ship at dawn")
        if endpoint == "videos/image2video":
            body.setdefault("image", "https://example.com/a.png")
    return endpoint, body


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_bodies())
@example(("videos/text2video", {"prompt": "x", "duration": "05", "mode": "pro"}))
@example(("videos/text2video", {"prompt": "x", "cfg_scale": 0, "aspect_ratio": "1:1"}))
@example(("videos/text2video", {"prompt": "x", "multi_shot": True, "shot_type": "intelligence"}))
@example(("videos/omni-video", {"prompt": "x", "duration": 7, "sound": "on"}))
@example(("images/generations", {"prompt": "x", "n": "9", "image_fidelity": 1}))
@example(("videos/image2video", {"image": "https://a/b.png", "image_tail": "https://a/c.png"}))
def test_the_plain_reader_and_pydantic_agree(case: tuple[str, dict[str, Any]]) -> None:
    endpoint, body = case
    fast, slow = both(endpoint, body)
    assert fast == slow
