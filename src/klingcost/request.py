"""Request models for the four Kling endpoints, and every rule their bodies must keep.

A body passes in two steps. Pydantic checks each field's type, allowed values and ranges (the
models below); then :func:`_rules` checks what spans fields or depends on the model. Which models
an endpoint takes, their durations, modes, sound, voices, resolutions and features come from the
price sheet's catalogue (:attr:`klingcost.sheet.PriceSheet.models`), so a model an overlay adds
is valid and priced at once. Both steps report into one
:class:`~klingcost.errors.RequestValidationError` that names every offending field, the value
given and what is allowed. No pydantic error escapes.

What real clients send is accepted as the API accepts it: every field of Kling's official request
reference, ``null`` for "not set", numbers as strings (``"5"``) or numbers (``5``), ``model`` (the
proxy's web client) for ``model_name``. A field klingcost does not know is priced as if absent,
with a warning, when it cannot change the price; it is refused when it may (its name speaks of
sound, video, duration, mode, resolution...), and ``strict=True`` refuses every one. A known field
with a value the sheet does not price (``resolution: "8k"``) is refused, naming the overlay key
that would price it. Kling's defaults fill what is left out (kling-v1, std, 5 s, n 1, sound off).

Sources: the seed (the openai-hk Kling page), Kling's API reference, and the sheet's catalogue.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from klingcost.errors import _MISSING, Problem, RequestValidationError
from klingcost.jobclass import JobClass

if TYPE_CHECKING:
    from klingcost.sheet import Capabilities, PriceSheet

Endpoint = Literal[
    "images/generations",
    "videos/text2video",
    "videos/image2video",
    "videos/multi-image2video",
    "videos/omni-video",
]
ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    "images/generations",
    "videos/text2video",
    "videos/image2video",
    "videos/multi-image2video",
    "videos/omni-video",
)
_ENDPOINT_NAMES: Final[dict[str, Endpoint]] = {
    **{e: e for e in ENDPOINTS},
    **{e.split("/")[1]: e for e in ENDPOINTS},
    "images": "images/generations",
}
#: The model of a body that names none (Kling's API reference; omni-video has one family).
DEFAULT_MODEL: Final[dict[Endpoint, str]] = {
    "images/generations": "kling-v1",
    "videos/text2video": "kling-v1",
    "videos/image2video": "kling-v1",
    "videos/multi-image2video": "kling-v1-6",
    "videos/omni-video": "kling-video-o1",
}

IMAGE_ASPECTS: Final = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9")
VIDEO_ASPECTS: Final = ("16:9", "9:16", "1:1")

#: The proxy's prompt limits (seed); Kling's own API allows 2500 characters for both.
PROXY_LIMITS: Final = (500, 200)
KLING_LIMITS: Final = (2500, 2500)

MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024
MIN_IMAGE_SIDE: Final = 300
CAMERA_AXES: Final = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")
CAMERA_TYPES: Final = (
    "simple",
    "down_back",
    "forward_up",
    "right_turn_forward",
    "left_turn_forward",
)
#: Official limits: voices per request, shots per multi-shot video, motion-brush masks and the
#: points of one trajectory.
MAX_VOICES: Final = 2
MAX_SHOTS: Final = 6
MAX_SHOT_PROMPT: Final = 512
MAX_ELEMENTS_I2V: Final = 3
MAX_DYNAMIC_MASKS: Final = 6
#: Multi-image to video: reference images per request (Kling's API reference).
MULTI_IMAGES: Final = (1, 4)
TRAJECTORY_POINTS: Final = (2, 77)

#: What a broken ``duration`` allows, until the model's own durations replace it.
_DURATION_TEXT: Final = "whole seconds the model takes (see klingcost prices)"

#: An unknown field whose name has one of these words may change the price: it is refused, not
#: priced as if absent ("seed", "user", "metadata", "account_id" are priced as if absent, with a
#: warning). Words, not substrings: "model_version" is not a mode, "account_id" not a count.
#: A name is cut into words at "_", "-", digits-to-letters and camelCase; a plural counts.
_PRICED_WORDS: Final = frozenset(
    [
        "audio",
        "sound",
        "voice",
        "music",
        "speech",
        "lipsync",
        "video",
        "vid",
        "clip",
        "image",
        "img",
        "picture",
        "photo",
        "resolution",
        "res",
        "quality",
        "duration",
        "second",
        "sec",
        "minute",
        "length",
        "long",
        "extend",
        "extension",
        "loop",
        "mode",
        "pro",
        "std",
        "turbo",
        "fast",
        "premium",
        "tier",
        "fps",
        "frame",
        "count",
        "num",
        "number",
        "n",
        "batch",
        "variant",
        "sample",
        "multi",
        "multishot",
        "shot",
        "element",
        "camera",
        "motion",
        "mask",
        "effect",
        "upscale",
        "upscaled",
        "upscaling",
        "hd",
        "uhd",
        "fhd",
        "sd",
        "size",
        "width",
        "height",
    ]
)
#: Words that start a price word ("resolutions", "durations", "upscaler", "multi_shot" ...).
_PRICED_STEMS: Final = ("resolut", "durat", "upscal", "multi")
#: A size such as 4k, 8k or 1080p.
_PRICED_SIZE: Final = re.compile(r"\d+[kp]")
_WORDS: Final = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+[a-zA-Z]?")


def _may_change_price(name: str) -> bool:
    """Whether an unknown field's name speaks of what Kling prices (see :data:`_PRICED_WORDS`)."""
    for word in _WORDS.findall(name):
        word = word.lower()
        if (
            word in _PRICED_WORDS
            or (word.endswith("s") and word[:-1] in _PRICED_WORDS)
            or word.startswith(_PRICED_STEMS)
            or _PRICED_SIZE.fullmatch(word)
        ):
            return True
    return False


def normalize_endpoint(name: str) -> Endpoint:
    """``videos/text2video``, ``text2video`` or ``/v1/videos/text2video`` -> the canonical name."""
    found = _ENDPOINT_NAMES.get(name) if type(name) is str else None  # the usual spelling
    if found is None and isinstance(name, str):  # a batch may name one with a number or a list
        key = name.strip().strip("/").removeprefix("kling/").removeprefix("v1/")
        found = _ENDPOINT_NAMES.get(key)
    if found is None:
        problem = Problem("endpoint", name, ", ".join(ENDPOINTS), "unknown endpoint")
        raise RequestValidationError(endpoint=str(name), problems=[problem])
    return found


# --- field types that accept what real clients send --------------------------------------


def _parse_whole(value: Any, *, signed: bool) -> Any:
    """Accept 5 and "5" as the API does; refuse what it refuses: booleans, floats (5.0 too) and
    strings that are not plain ASCII digits ("5.0", " 10 ", full-width "１０")."""
    if type(value) is int:  # the usual case first: pydantic calls this on every estimate
        return value
    if isinstance(value, bool):  # True is an int to Python, not to the API
        raise ValueError("a boolean, not a whole number")
    if isinstance(value, float):  # 5.0, NaN: pydantic would take 5.0 as 5
        raise ValueError("a decimal number, not a whole number")
    if isinstance(value, str):
        digits = value.removeprefix("-") if signed else value
        # isascii(): str.isdigit() also takes "１" and "²", which the API refuses.
        if not (digits.isascii() and digits.isdigit()):
            raise ValueError("not a whole number")
        try:
            return int(value)
        except ValueError:  # over Python's 4300-digit limit; its message must not reach the user
            raise ValueError("too many digits for a whole number") from None
    return value


def _whole_number(value: Any) -> Any:
    return _parse_whole(value, signed=True)


def _count(value: Any) -> Any:
    if type(value) is str and len(value) < 10 and value.isascii() and value.isdigit():
        return int(value)  # "10", as most bodies give it (a long one: _parse_whole's care)
    return _parse_whole(value, signed=False)


def _fraction_number(value: Any) -> Any:
    if type(value) is float:  # the usual case: nothing to refuse
        return value
    if isinstance(value, bool):
        raise ValueError("a boolean, not a number")
    return value


def _flag(value: Any) -> Any:
    """A JSON boolean: "true" or 1 are not what the API documents."""
    if not isinstance(value, bool):
        raise ValueError("not true or false")
    return value


Whole = Annotated[int, BeforeValidator(_whole_number)]
Count = Annotated[int, BeforeValidator(_count)]  # duration, n: "-5" is no count of anything
# Constraints before the validator: pydantic then checks them natively, not in Python.
Unit = Annotated[float, Field(ge=0, le=1), BeforeValidator(_fraction_number)]
#: Camera values: Kling's reference types them as float in [-10, 10] (ComfyUI sends 0.5).
Axis = Annotated[float, Field(ge=-10, le=10), BeforeValidator(_fraction_number)]
Flag = Annotated[bool, BeforeValidator(_flag)]
OnOff = Literal["on", "off"]


class _Part(BaseModel):
    # Unknown keys are kept, to be reported (a warning, or a refusal) rather than dropped.
    # Each model is built when its endpoint is first used, not when the module loads.
    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)


class WatermarkInfo(_Part):
    enabled: Flag | None = None


class _Body(_Part):
    model_config = ConfigDict(
        extra="allow", frozen=True, str_strip_whitespace=False, defer_build=True
    )

    notify_hook: str | None = None
    callback_url: str | None = None  # Kling's own API's name for notify_hook
    external_task_id: str | None = None
    watermark_info: WatermarkInfo | None = None


class ImageRequest(_Body):
    """``POST /v1/images/generations``: text-to-image and image-to-image."""

    model_name: str | None = None
    prompt: str
    negative_prompt: str | None = None
    image: str | None = None
    image_reference: Literal["subject", "face"] | None = None
    image_fidelity: Unit | None = None
    human_fidelity: Unit | None = None
    resolution: str | None = None  # allowed values: the sheet's images.<model>.resolutions
    n: Annotated[Count, Field(ge=1, le=9)] | None = None
    aspect_ratio: Literal["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9"] | None = None


class CameraConfig(_Part):
    horizontal: Axis | None = None
    vertical: Axis | None = None
    pan: Axis | None = None
    tilt: Axis | None = None
    roll: Axis | None = None
    zoom: Axis | None = None


class CameraControl(_Part):
    type: Literal["simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward"]
    config: CameraConfig | None = None


class Voice(_Part):
    voice_id: str


class Shot(_Part):
    """One shot of a multi-shot video (``multi_prompt``)."""

    index: Whole | None = None
    prompt: str
    duration: Annotated[Count, Field(ge=1, le=15)]


class OmniElement(_Part):
    element_id: Whole | str


class Point(_Part):
    x: Whole
    y: Whole


class DynamicMask(_Part):
    mask: str | None = None
    trajectories: list[Point] | None = None


class _VideoBody(_Body):
    model_name: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    cfg_scale: Unit | None = None
    mode: str | None = None  # allowed values: the modes the sheet prices for the model
    aspect_ratio: Literal["16:9", "9:16", "1:1"] | None = None
    duration: Count | None = None
    sound: OnOff | None = None
    voice_list: list[Voice] | None = None
    camera_control: CameraControl | None = None
    multi_shot: Flag | None = None
    shot_type: Literal["customize", "intelligence"] | None = None
    multi_prompt: list[Shot] | None = None
    element_list: list[OmniElement] | None = None


class TextToVideoRequest(_VideoBody):
    """``POST /v1/videos/text2video``. ``prompt`` is required unless the shots carry it."""


class ImageToVideoRequest(_VideoBody):
    """``POST /v1/videos/image2video``: a start frame, and optionally an end frame or a brush."""

    image: str
    image_tail: str | None = None
    static_mask: str | None = None
    dynamic_masks: list[DynamicMask] | None = None


class MultiImage(_Part):
    image: str


class MultiImageToVideoRequest(_Body):
    """``POST /v1/videos/multi-image2video``: one clip from 1 to 4 reference images
    (kling-v1-6 only; Kling's API reference). No sound, camera control or end frame."""

    model_name: str | None = None
    image_list: list[MultiImage]  # 1 to 4: checked by the rules, to name the count given
    prompt: str | None = None  # required: reported by the rules, as on text2video
    negative_prompt: str | None = None
    mode: str | None = None
    aspect_ratio: Literal["16:9", "9:16", "1:1"] | None = None
    duration: Count | None = None


class OmniImage(_Part):
    image_url: str
    type: Literal["first_frame", "end_frame"] | None = None


class OmniVideo(_Part):
    video_url: str
    refer_type: Literal["feature", "base"] | None = None
    keep_original_sound: Literal["yes", "no"] | None = None


class OmniVideoRequest(_Body):
    """``POST /v1/videos/omni-video``: kling-video-o1 and kling-v3-omni (Omni-Video)."""

    model_name: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    mode: str | None = None
    aspect_ratio: Literal["16:9", "9:16", "1:1"] | None = None
    duration: Count | None = None
    sound: OnOff | None = None
    image_list: list[OmniImage] | None = None
    element_list: list[OmniElement] | None = None
    video_list: list[OmniVideo] | None = None
    multi_shot: Flag | None = None
    shot_type: Literal["customize", "intelligence"] | None = None
    multi_prompt: list[Shot] | None = None


RequestModel = (
    ImageRequest
    | TextToVideoRequest
    | ImageToVideoRequest
    | MultiImageToVideoRequest
    | OmniVideoRequest
)
_MODEL_FOR: Final[dict[Endpoint, type[RequestModel]]] = {
    "images/generations": ImageRequest,
    "videos/text2video": TextToVideoRequest,
    "videos/image2video": ImageToVideoRequest,
    "videos/multi-image2video": MultiImageToVideoRequest,
    "videos/omni-video": OmniVideoRequest,
}
#: Fields whose absence is reported by the rules, not by pydantic (prompt: the shots may carry
#: it), so that a missing one is still "is required".
_REQUIRED_BY_RULE: Final = frozenset({"prompt"})


# --- the validated request: what pricing needs --------------------------------------------


class ValidatedRequest(NamedTuple):
    """A body that keeps every rule, with Kling's defaults filled in. Immutable.

    ``job`` is the request's *job class*: everything that decides its price and nothing else.
    Its fields are the first ones here, in :class:`~klingcost.jobclass.JobClass`'s order.
    ``warnings`` name the fields klingcost did not know and priced as if absent.

    A named tuple, not a frozen dataclass: one is built per estimate, and a frozen dataclass
    of these 13 fields costs about 1 us to build against 0.2 us (the estimate's budget is 10 us).
    """

    endpoint: Endpoint
    model: str
    mode: str | None  # None: the model has no std/pro split
    duration: int | None  # seconds; None for images
    sound: bool
    video_reference: bool
    reference_image: bool
    n: int
    body: RequestModel
    voice: bool = False  # sound with a voice_list
    resolution: str | None = None  # images: the resolution priced
    #: The duration was not given and is held at the longest the output can last (a video edit).
    held_duration: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def job(self) -> JobClass:
        """The request's job class (:class:`~klingcost.jobclass.JobClass`): everything that
        decides its price and nothing else."""
        return JobClass.from_request(self)

    @property
    def job_key(self) -> tuple[Any, ...]:
        """The fields of :attr:`job` as a plain tuple, in JobClass's order: every field but
        ``body`` and ``warnings``. Equal keys, equal classes; a cache key for what runs on every
        estimate (hashing it costs a fifth of building the JobClass)."""
        return self[:8] + self[9:12]  # two slices: half the cost of naming the 11 fields


def validate_request(
    endpoint: str,
    body: Mapping[str, Any],
    *,
    limits: tuple[int, int] = PROXY_LIMITS,
    sheet: PriceSheet | None = None,
    strict: bool = False,
    as_pro: Collection[str] = (),
) -> ValidatedRequest:
    """Check ``body`` against every rule of ``endpoint``; raise one error naming every problem.

    ``limits`` are the maximum lengths of ``prompt`` and ``negative_prompt`` (the proxy's 500
    and 200 by default; Kling's own API allows 2500). ``sheet`` is the price sheet whose
    catalogue says which models, modes and durations are allowed (default: the loaded sheet).
    ``strict`` refuses every field klingcost does not know, instead of a warning. ``as_pro``
    names the models the provider bills at pro whatever the mode (its ``bills_as_pro``): it
    accepts their sound in std as it does in pro (openai-hk makes and bills a std kling-v2-6
    clip with sound as pro).
    """
    name = normalize_endpoint(endpoint)
    if type(body) is not dict and not isinstance(body, Mapping):
        raise RequestValidationError(
            endpoint=name,
            problems=[Problem("body", body, "a JSON object", "the body must be a JSON object")],
        )
    prepared, problems, plain = _prepare(body)
    if not plain:  # a key or value that is not ASCII text or a number: look deeper
        _refuse_lone_surrogates(name, body)
    if sheet is None:
        from klingcost.sheet import load_sheet

        sheet = load_sheet()
    model = _MODEL_FOR[name]
    try:
        # The validator itself, not model_validate(): the same call without its Python wrapper
        # (a deferred model is built on first use either way).
        parsed = model.__pydantic_validator__.validate_python(prepared)
    except ValidationError as exc:
        problems.extend(_from_pydantic(exc, model))
        # Check the rest of the body too, so that one error lists every problem.
        broken = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        rest = {k: v for k, v in prepared.items() if k not in broken}
        # A missing or broken required field (already reported) must not hide the other rules:
        # stand in a value that keeps every rule (a URL is not inspected).
        for key, info in model.model_fields.items():
            if info.is_required() and key not in rest:
                rest[key] = (
                    [{"image": "https://placeholder.invalid/"}]
                    if key == "image_list"
                    else "https://placeholder.invalid/"
                    if key == "image"
                    else "-"
                )
            elif key in _REQUIRED_BY_RULE and key in broken:
                rest[key] = "-"
        try:
            parsed = model.model_validate(rest)
        except ValidationError:
            raise RequestValidationError(endpoint=name, problems=problems) from None
    warnings: tuple[str, ...] = ()
    if parsed.__pydantic_extra__ or not _nested_fields(type(parsed)).isdisjoint(
        parsed.__pydantic_fields_set__
    ):
        warnings = _unknown_fields(parsed, "", strict, problems)
    caps = sheet.models[name].get(parsed.model_name or DEFAULT_MODEL[name])
    if problems and caps is not None and caps.durations:
        # A duration of the wrong type names what this model takes.
        problems[:] = [
            Problem(p.field, p.given, caps.duration_text(), p.message)
            if p.field == "duration" and p.allowed == _DURATION_TEXT
            else p
            for p in problems
        ]
    request = _resolve(name, parsed, caps, sheet, problems, warnings)
    # An unknown model (already reported) still has the rules that do not depend on the model
    # checked (prompt lengths, images, lists), so that one error names its other problems.
    _rules(request, parsed, caps, sheet, limits, problems, as_pro)
    if problems:
        raise RequestValidationError(endpoint=name, problems=problems)
    return request


def _unknown_fields(
    model: BaseModel, prefix: str, strict: bool, problems: list[Problem]
) -> tuple[str, ...]:
    """Warnings for the fields of ``model`` (and its parts) that klingcost does not know; a
    refusal instead when ``strict`` or when the field's name says it may change the price."""
    warnings: list[str] = []
    extra = model.__pydantic_extra__
    if extra:
        documented = ", ".join(type(model).model_fields)
        for key, value in extra.items():
            field = prefix + key
            if strict or _may_change_price(key):
                why = (
                    "unknown field (--strict refuses every field klingcost does not know)"
                    if strict
                    else "unknown field that may change the price, so klingcost cannot price it"
                )
                problems.append(Problem(field, value, "the documented fields: " + documented, why))
            else:
                warnings.append(
                    f"{field}: unknown field, priced as if absent (given {_short(value)}); "
                    "--strict refuses it"
                )
    # __pydantic_fields_set__, not the model_fields_set property: this runs on every estimate.
    for key in _nested_fields(type(model)) & model.__pydantic_fields_set__:
        value = model.__dict__.get(key)
        parts = value if isinstance(value, list) else [value]
        for index, item in enumerate(parts):
            # Only a part with keys of its own, or parts inside it, can hide an unknown key.
            if isinstance(item, BaseModel) and (
                item.__pydantic_extra__ or _nested_fields(type(item))
            ):
                where = f"{prefix}{key}.{index}." if value is parts else f"{prefix}{key}."
                warnings += _unknown_fields(item, where, strict, problems)
    return tuple(warnings)


def _sound_key(caps: Capabilities, model: str, mode: str) -> str:
    """The sheet key that would price sound for ``model`` (per second, or a clip's factor)."""
    if caps.price_key.startswith("per_second."):
        return f"{caps.price_key}.{mode}.sound"
    return f"video.sound.{model}"


def _choices(values: frozenset[str]) -> str:
    """'std' or 'pro' (std first, then the rest in order)."""
    ordered = sorted(values, key=lambda v: (v != "std", v != "pro", v))
    return " or ".join(repr(v) for v in ordered)


_NESTED: dict[type[BaseModel], frozenset[str]] = {}


def _nested_fields(cls: type[BaseModel]) -> frozenset[str]:
    """The fields of ``cls`` that hold parts (models, or lists of them): only those can hide an
    unknown key, so only those are walked (this runs on every estimate)."""
    found = _NESTED.get(cls)
    if found is None:
        found = _NESTED[cls] = frozenset(
            name for name, info in cls.model_fields.items() if _model_in(info.annotation)
        )
    return found


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _prepare(body: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem], bool]:
    """Drop nulls and empty strings (both mean "not set") and fold ``model`` into ``model_name``.

    The third value says whether the body is *plain*: every key ASCII text, every value a
    number, a boolean, null or ASCII text. No lone surrogate can hide in a plain body, so the
    walk of :func:`_refuse_lone_surrogates` is skipped for it (most bodies; this runs on every
    estimate, and one pass over the keys here costs less than a second one there).
    """
    problems: list[Problem] = []
    prepared: dict[str, Any] = {}
    plain = True
    for key, value in body.items():
        if plain:
            kind = type(value)
            plain = (
                type(key) is str
                and key.isascii()
                and (kind in _SCALARS or (kind is str and value.isascii()))
            )
        if value is not None and value != "":
            prepared[key] = value
    if "model" in prepared:
        alias = prepared.pop("model")
        if "model_name" in prepared and prepared["model_name"] != alias:
            problems.append(
                Problem(
                    "model",
                    alias,
                    f"the same value as model_name ({prepared['model_name']!r}), or leave one out",
                    "model and model_name disagree",
                )
            )
        prepared.setdefault("model_name", alias)
    return prepared, problems, plain


#: Values that hold no text: a body of these and ASCII strings needs no surrogate walk.
_SCALARS: Final = frozenset({int, float, bool, type(None)})


def _from_pydantic(exc: ValidationError, model: type[BaseModel]) -> list[Problem]:
    problems: dict[str, Problem] = {}
    for error in exc.errors(include_url=False):
        kind = error["type"]
        field, _owner = _field_path(model, error["loc"], kind)
        name = field.rsplit(".", 1)[-1]
        ctx = error.get("ctx") or {}
        given = error.get("input", _MISSING)
        if kind == "missing":
            given, allowed, message = _MISSING, "a value", "is required"
        elif kind == "literal_error":
            allowed = str(ctx.get("expected"))
            message = "not an allowed value"
        elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            allowed = _number_text(model, name) or ", ".join(f"{k} {v}" for k, v in ctx.items())
            message = "out of range"
        elif kind.startswith("int") or kind == "value_error":
            # Value errors come only from our own validators (_parse_whole, _fraction_number,
            # _flag), so their text is ours to show.
            allowed = _number_text(model, name) or (
                "true or false"
                if ctx.get("error") and "true or false" in str(ctx["error"])
                else 'a whole number, as 5 or "5"'
            )
            message = str(ctx["error"]) if kind == "value_error" else "not a whole number"
        else:
            allowed, message = _expected_type(kind)
            if name == "mask" and kind.startswith("string"):
                allowed = "an http(s) URL or base64 image data"
        earlier = problems.get(field)
        if earlier is not None:
            # A union field (element_id: a number or a string) fails once per member.
            allowed, message = f"{earlier.allowed}, or {allowed}", "not an allowed type"
        problems[field] = Problem(field, given, allowed, message)
    return list(problems.values())


def _field_path(
    model: type[BaseModel], loc: tuple[int | str, ...], kind: str
) -> tuple[str, type[BaseModel]]:
    """The dotted name of an error's field, and the model that holds the field.

    The error of a union member carries the member as one more part ("str",
    "function-before[_whole_number(), int]"). It names no field, so it is left out.
    """
    parts: list[str] = []
    current: type[BaseModel] | None = model
    owner = model
    for part in loc:
        if isinstance(part, int):  # a list index
            parts.append(str(part))
        elif current is not None and part in current.model_fields:
            owner = current
            parts.append(part)
            info = current.model_fields.get(part)
            current = _model_in(info.annotation) if info is not None else None
    return ".".join(parts) or "body", owner


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _number_text(model: type[BaseModel], field: str) -> str | None:
    """What a numeric field allows, for both a value out of range and one of the wrong type."""
    if field == "duration":
        return _DURATION_TEXT
    if field in CAMERA_AXES:
        return "a number from -10 to 10"
    return {
        "n": "1 to 9",
        "cfg_scale": "0 to 1",
        "image_fidelity": "0 to 1",
        "human_fidelity": "0 to 1",
    }.get(field)


def _expected_type(kind: str) -> tuple[str, str]:
    """(allowed, message) of a type error in our words: pydantic's messages name its classes."""
    if kind.startswith("string"):
        return "a string", "not a string"
    if kind.startswith("float") or kind.startswith("decimal"):
        return "a number", "not a number"
    if kind.startswith("bool"):
        return "true or false", "not true or false"
    if kind in ("list_type", "too_long", "too_short"):
        return "a list", "not a list"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "a JSON object", "not a JSON object"
    return "see the Kling API documentation", "not an allowed value"


def _resolve(
    name: Endpoint,
    parsed: RequestModel,
    caps: Capabilities | None,
    sheet: PriceSheet,
    problems: list[Problem],
    warnings: tuple[str, ...],
) -> ValidatedRequest:
    """Fill Kling's defaults (the catalogue's) and derive the job class."""
    model = parsed.model_name or DEFAULT_MODEL[name]
    if caps is None:
        known = ", ".join(sheet.models[name])
        problems.append(
            Problem(
                "model_name",
                model,
                f"{known} (to add a model, list it under catalog.{name} with its prices in a "
                "--pricing overlay)",
                f"not a model of {name}",
            )
        )
    if isinstance(parsed, ImageRequest):
        resolution = parsed.resolution
        if resolution is not None and caps is not None and resolution not in caps.resolutions:
            problems.append(
                Problem(
                    "resolution",
                    resolution,
                    _choices(caps.resolutions) if caps.resolutions else "no resolution field",
                    f"not a resolution the sheet prices for {model}, and it may change the price"
                    f" (to price {resolution!r}, add {caps.price_key}.resolutions.{resolution} "
                    "to a --pricing overlay)",
                )
            )
        return ValidatedRequest(
            endpoint=name,
            model=model,
            mode=None,
            duration=None,
            sound=False,
            video_reference=False,
            reference_image=parsed.image is not None,
            n=parsed.n if parsed.n is not None else 1,
            body=parsed,
            resolution=resolution,
            warnings=warnings,
        )
    mode = parsed.mode
    if caps is not None:
        if not caps.modes:
            if mode not in (None, "std"):
                problems.append(
                    Problem("mode", mode, "std or nothing", f"{model} has no {mode} mode (seed)")
                )
            mode = None
        elif mode is None:
            mode = caps.default_mode
        elif mode not in caps.modes:
            problems.append(
                Problem(
                    "mode",
                    mode,
                    _choices(caps.modes),
                    f"not a mode the sheet prices for {model} (to price {mode!r}, add "
                    f"{caps.price_key}.{mode} to a --pricing overlay)",
                )
            )
    if isinstance(parsed, MultiImageToVideoRequest):
        seconds = parsed.duration
        if seconds is None:
            seconds = caps.default_duration if caps is not None else 5
        return ValidatedRequest(
            name, model, mode, seconds, False, False, True, 1, parsed, False, None, False, warnings
        )
    omni = isinstance(parsed, OmniVideoRequest)
    sound = parsed.sound == "on"
    voice = sound and not omni and bool(parsed.voice_list)  # type: ignore[union-attr]
    videos = parsed.video_list if omni else None  # type: ignore[union-attr]
    duration = parsed.duration
    held = False
    if duration is None:
        if parsed.multi_shot and parsed.multi_prompt:
            duration = sum(shot.duration for shot in parsed.multi_prompt)
        elif caps is not None:
            if videos and caps.durations and any(v.refer_type == "base" for v in videos):
                # A video edit's output follows its input video, which may last this long.
                duration, held = caps.edit_hold_seconds or max(caps.durations), True
            else:
                duration = caps.default_duration
    reference_image = (
        bool(parsed.image_list)  # type: ignore[union-attr]
        if omni
        else isinstance(parsed, ImageToVideoRequest)
    )
    # Positional: this runs on every estimate, and keywords cost a little more.
    return ValidatedRequest(
        name,
        model,
        mode,
        duration if duration is not None else 5,
        sound,
        bool(videos),
        reference_image,
        1,
        parsed,
        voice,
        None,
        held,
        warnings,
    )


# --- rules that span fields ----------------------------------------------------------------


def _rules(
    request: ValidatedRequest,
    body: RequestModel,
    caps: Capabilities | None,
    sheet: PriceSheet,
    limits: tuple[int, int],
    problems: list[Problem],
    as_pro: Collection[str] = (),
) -> None:
    prompt_max, negative_max = limits
    prompt = body.prompt
    if prompt is not None and len(prompt) > prompt_max:
        problems.append(
            Problem(
                "prompt", prompt, f"at most {prompt_max} characters", f"{len(prompt)} characters"
            )
        )
    negative = getattr(body, "negative_prompt", None)
    if negative is not None and len(negative) > negative_max:
        problems.append(
            Problem(
                "negative_prompt",
                negative,
                f"at most {negative_max} characters",
                f"{len(negative)} characters",
            )
        )
    if isinstance(body, ImageRequest):
        if body.image is not None:
            _check_image("image", body.image, problems)
        return
    if isinstance(body, MultiImageToVideoRequest):
        _multi_image_rules(request, body, caps, problems)
        return
    if caps is not None:
        _duration_rules(request, body, caps, prompt_max, problems)
        # Most bodies are silent, without voices or elements: skip the call then.
        if request.sound or getattr(body, "voice_list", None) or body.element_list:
            _sound_rules(request, body, caps, sheet, problems, as_pro)
    elif body.prompt is None and not isinstance(body, ImageToVideoRequest) and not body.multi_shot:
        problems.append(Problem("prompt", _MISSING, "a value", "is required"))
    if isinstance(body, OmniVideoRequest):
        _omni_rules(request, body, problems)
        return
    _video_rules(request, body, caps, sheet, problems)


def _multi_image_rules(
    request: ValidatedRequest,
    body: MultiImageToVideoRequest,
    caps: Capabilities | None,
    problems: list[Problem],
) -> None:
    if body.prompt is None:
        problems.append(Problem("prompt", _MISSING, "a value", "is required"))
    if caps is not None and request.duration not in caps.durations:
        problems.append(
            Problem(
                "duration",
                body.duration if body.duration is not None else request.duration,
                caps.duration_text(),
                "not an allowed duration",
            )
        )
    low, high = MULTI_IMAGES
    if not low <= len(body.image_list) <= high:
        problems.append(
            Problem(
                "image_list",
                f"{len(body.image_list)} images",
                f"{low} to {high} images",
                "Multi-Image to Video takes 1 to 4 reference images",
            )
        )
    for index, item in enumerate(body.image_list):
        _check_image(f"image_list.{index}.image", item.image, problems)


def _models_with(sheet: PriceSheet, endpoint: str, feature: str) -> str:
    """The models of ``endpoint`` that have ``feature`` (a truthy Capabilities attribute)."""
    return ", ".join(m for m, c in sheet.models[endpoint].items() if getattr(c, feature)) or "none"


def _duration_rules(
    request: ValidatedRequest,
    body: TextToVideoRequest | ImageToVideoRequest | OmniVideoRequest,
    caps: Capabilities,
    prompt_max: int,
    problems: list[Problem],
) -> None:
    model = request.model
    if request.duration not in caps.durations:
        problems.append(
            Problem(
                "duration",
                body.duration if body.duration is not None else request.duration,
                caps.duration_text(),
                "not an allowed duration",
            )
        )
    shots = body.multi_prompt
    if body.multi_shot:
        if not caps.multi_shot:
            problems.append(
                Problem(
                    "multi_shot",
                    True,
                    "false, or a model with multi-shot",
                    f"{model} makes no multi-shot video",
                )
            )
        if body.shot_type == "customize" and not shots:
            problems.append(
                Problem(
                    "multi_prompt",
                    _MISSING,
                    "a list of shots",
                    "a customized multi-shot video needs its shots",
                )
            )
    elif body.prompt is None and not isinstance(body, ImageToVideoRequest):
        problems.append(Problem("prompt", _MISSING, "a value", "is required"))
    if body.multi_shot and shots:
        if len(shots) > MAX_SHOTS:
            problems.append(
                Problem("multi_prompt", len(shots), f"at most {MAX_SHOTS} shots", "too many shots")
            )
        total = sum(shot.duration for shot in shots)
        if body.duration is not None and total != body.duration:
            problems.append(
                Problem(
                    "multi_prompt",
                    f"shots of {total} s in all",
                    f"shots adding up to duration ({body.duration} s)",
                    "the shots' durations must add up to the video's",
                )
            )
        most = min(prompt_max, MAX_SHOT_PROMPT)
        for index, shot in enumerate(shots):
            if len(shot.prompt) > most:
                problems.append(
                    Problem(
                        f"multi_prompt.{index}.prompt",
                        shot.prompt,
                        f"at most {most} characters",
                        f"{len(shot.prompt)} characters",
                    )
                )


def _sound_rules(
    request: ValidatedRequest,
    body: TextToVideoRequest | ImageToVideoRequest | OmniVideoRequest,
    caps: Capabilities,
    sheet: PriceSheet,
    problems: list[Problem],
    as_pro: Collection[str] = (),
) -> None:
    model = request.model
    mode = request.mode or "flat"
    if mode == "std" and model in as_pro:
        mode = "pro"  # the provider makes and bills it as pro: sound is checked as pro's
    if request.sound and mode not in caps.sound_modes:
        if caps.sound_modes:
            allowed = "off, or on in " + " or ".join(sorted(caps.sound_modes)) + " mode"
            message = f"{model} makes sound only in " + " or ".join(sorted(caps.sound_modes))
        else:
            allowed = "off, or a model with sound: " + _models_with(
                sheet, request.endpoint, "sound_modes"
            )
            message = f"{model} makes no sound (to price it, add {_sound_key(caps, model, mode)}"
            message += " to a --pricing overlay)"
        problems.append(Problem("sound", "on", allowed, message))
    voices = getattr(body, "voice_list", None)
    if voices:
        if len(voices) > MAX_VOICES:
            problems.append(
                Problem(
                    "voice_list", len(voices), f"at most {MAX_VOICES} voices", "too many voices"
                )
            )
        if not request.sound:
            problems.append(
                Problem("voice_list", len(voices), 'voices with sound "on"', "voices need sound on")
            )
        elif not caps.voice:
            problems.append(
                Problem(
                    "voice_list",
                    len(voices),
                    f"no voices on {model} (to price them, add its voice price to a --pricing "
                    "overlay)",
                    f"{model} takes no voices",
                )
            )
    elements = getattr(body, "element_list", None)
    if elements and not isinstance(body, OmniVideoRequest):
        if not caps.elements:
            problems.append(
                Problem(
                    "element_list",
                    len(elements),
                    "elements on a model that takes them: "
                    + _models_with(sheet, request.endpoint, "elements"),
                    f"{model} takes no elements",
                )
            )
        elif isinstance(body, ImageToVideoRequest):
            if len(elements) > MAX_ELEMENTS_I2V:
                problems.append(
                    Problem(
                        "element_list",
                        len(elements),
                        f"at most {MAX_ELEMENTS_I2V} elements",
                        "too many elements",
                    )
                )
            if voices:
                problems.append(
                    Problem(
                        "element_list",
                        "element_list + voice_list",
                        "one of element_list, voice_list",
                        "image2video cannot combine elements and voices",
                    )
                )


def _video_rules(
    request: ValidatedRequest,
    body: TextToVideoRequest | ImageToVideoRequest,
    caps: Capabilities | None,
    sheet: PriceSheet,
    problems: list[Problem],
) -> None:
    camera = body.camera_control
    if camera is not None and caps is not None:
        _camera_rules(request, camera, caps, sheet, problems)
    if isinstance(body, ImageToVideoRequest):
        _check_image("image", body.image, problems)
        if body.image_tail is not None:
            _check_image("image_tail", body.image_tail, problems)
        # The motion brush's masks are images too, sent as a URL or base64 like image.
        if body.static_mask is not None:
            _check_image("static_mask", body.static_mask, problems)
        brushes = body.dynamic_masks or []
        if len(brushes) > MAX_DYNAMIC_MASKS:
            problems.append(
                Problem(
                    "dynamic_masks", len(brushes), f"at most {MAX_DYNAMIC_MASKS}", "too many masks"
                )
            )
        low, high = TRAJECTORY_POINTS
        for index, brush in enumerate(brushes):
            if brush.mask:  # "" means "not set", as at the top level
                _check_image(f"dynamic_masks.{index}.mask", brush.mask, problems)
            points = brush.trajectories
            if points is not None and not low <= len(points) <= high:
                problems.append(
                    Problem(
                        f"dynamic_masks.{index}.trajectories",
                        len(points),
                        f"{low} to {high} points",
                        "a trajectory of too few or too many points",
                    )
                )
        extras = [
            name
            for name, present in (
                ("image_tail", body.image_tail is not None),
                (
                    "static_mask/dynamic_masks",
                    body.static_mask is not None or bool(body.dynamic_masks),
                ),
                ("camera_control", camera is not None),
            )
            if present
        ]
        if len(extras) > 1:
            problems.append(
                Problem(
                    extras[1],
                    " + ".join(extras),
                    "one of image_tail, a motion brush, camera_control",
                    "image2video cannot combine an end frame, a motion brush and camera control",
                )
            )


def _camera_rules(
    request: ValidatedRequest,
    camera: CameraControl,
    caps: Capabilities,
    sheet: PriceSheet,
    problems: list[Problem],
) -> None:
    if request.duration != 5 or request.mode != "std":
        problems.append(
            Problem(
                "camera_control",
                f"{request.duration} s, {request.mode or 'no mode'}",
                "5 s in std mode",
                "camera control works only at 5 s in std mode (seed)",
            )
        )
    if not caps.camera_control:
        problems.append(
            Problem(
                "camera_control",
                request.model,
                _models_with(sheet, request.endpoint, "camera_control"),
                f"{request.model} takes no camera control on {request.endpoint} (Kling's "
                "capability map)",
            )
        )
    if camera.type == "simple":
        config = camera.config
        moved = [axis for axis in CAMERA_AXES if config is not None and getattr(config, axis)]
        if len(moved) != 1:
            given = (
                {a: getattr(config, a) for a in CAMERA_AXES if getattr(config, a) is not None}
                if config
                else None
            )
            problems.append(
                Problem(
                    "camera_control.config",
                    given,
                    "exactly one of " + ", ".join(CAMERA_AXES) + " set, and not to 0",
                    "a simple camera move sets exactly one non-zero axis",
                )
            )
    elif camera.config is not None:
        problems.append(
            Problem(
                "camera_control.config",
                camera.config.model_dump(exclude_none=True),
                "no config",
                f"type {camera.type} takes no config (only simple does)",
            )
        )


def _omni_rules(request: ValidatedRequest, body: OmniVideoRequest, problems: list[Problem]) -> None:
    videos = body.video_list or []
    images = body.image_list or []
    elements = body.element_list or []
    if len(videos) > 1:
        problems.append(Problem("video_list", len(videos), "at most 1 video", "too many videos"))
    if videos and request.sound:
        problems.append(
            Problem(
                "sound", "on", "off with a video in video_list", "sound must be off with a video"
            )
        )
    most = 4 if videos else 7
    if len(images) + len(elements) > most:
        problems.append(
            Problem(
                "image_list",
                len(images) + len(elements),
                f"at most {most} images and elements together"
                + (" with a video" if videos else ""),
                "too many images and elements",
            )
        )
    for index, image in enumerate(images):
        _check_image(f"image_list.{index}.image_url", image.image_url, problems)


# --- inline images -------------------------------------------------------------------------


def _check_image(field: str, value: str, problems: list[Problem]) -> None:
    """A URL passes as it is; inline base64 must decode to a jpg/png of allowed size and shape."""
    if value.startswith(("http://", "https://")):
        return
    if value.startswith("data:"):
        problems.append(
            Problem(
                field, value, "plain base64 without a data: prefix, or a URL", "data: URI prefix"
            )
        )
        return
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        problems.append(
            Problem(field, value, "an http(s) URL or base64 image data", "not a URL or base64")
        )
        return
    if len(raw) > MAX_IMAGE_BYTES:
        problems.append(Problem(field, f"{len(raw)} bytes", "at most 10 MB", "image too large"))
    size = image_size(raw)
    if size is None:
        problems.append(
            Problem(field, raw[:8], "a jpg/jpeg or png image", "not a jpg or png image")
        )
        return
    width, height = size
    if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
        problems.append(
            Problem(field, f"{width}x{height} px", "at least 300x300 px", "image too small")
        )
    if width * 2 > height * 5 or height * 2 > width * 5:
        problems.append(
            Problem(
                field,
                f"{width}x{height} px",
                "an aspect ratio from 1:2.5 to 2.5:1",
                "image too narrow",
            )
        )


def image_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG or JPEG from its header; None for anything else."""
    if raw.startswith(b"\x89PNG\r\n\x1a\n") and len(raw) >= 24 and raw[12:16] == b"IHDR":
        width, height = struct.unpack(">II", raw[16:24])
        return int(width), int(height)
    if raw.startswith(b"\xff\xd8"):
        return _jpeg_size(raw)
    return None


_SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 4 <= len(raw):
        if raw[index] != 0xFF:
            return None
        marker = raw[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            index += 2
            continue
        (length,) = struct.unpack(">H", raw[index + 2 : index + 4])
        if marker in _SOF_MARKERS:
            if index + 9 > len(raw):
                return None
            height, width = struct.unpack(">HH", raw[index + 5 : index + 9])
            return int(width), int(height)
        index += 2 + length
    return None


# --- text that cannot be sent ---------------------------------------------------------------


def _refuse_lone_surrogates(endpoint: Endpoint, body: Mapping[str, Any]) -> None:
    """Refuse a body with a lone surrogate in any string, value or key, at any depth.

    JSON's ``"\ud800"`` escape makes one, and so does a file name decoded with surrogateescape.
    It cannot be encoded as UTF-8: the request would fail only after its hold was placed, and
    leave the hold unknown. Refused alone (other problems are not listed with it), so that no
    message quotes the raw text: every field and value shown here is escaped.
    """
    if not _has_lone_surrogate(body):  # the common case, kept cheap: no paths are built
        return
    problems: list[Problem] = []
    allowed = "valid Unicode text (no lone surrogate such as \\ud800)"
    stack: list[tuple[str, object]] = [("", body)]
    seen: set[int] = set()
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            at = _lone_surrogate_at(node)
            if at is not None:
                problems.append(
                    Problem(path or "body", node, allowed, f"a lone surrogate at character {at}")
                )
        elif isinstance(node, Mapping | list | tuple) and id(node) not in seen:
            seen.add(id(node))
            items = node.items() if isinstance(node, Mapping) else enumerate(node)
            for key, value in items:
                name = str(key).encode("utf-8", "backslashreplace").decode("utf-8")
                field = f"{path}.{name}" if path else name
                if isinstance(key, str) and _lone_surrogate_at(key) is not None:
                    problems.append(
                        Problem(field, key, allowed, "a field name with a lone surrogate")
                    )
                stack.append((field, value))
    if problems:
        problems.sort(key=lambda problem: problem.field)
        raise RequestValidationError(endpoint=endpoint, problems=problems)


_PLAIN: Final = frozenset({int, float, bool, type(None), str})


def _has_lone_surrogate(body: Mapping[str, Any]) -> bool:
    """Whether any string, value or key of ``body`` holds a lone surrogate (the fast pass of
    :func:`_refuse_lone_surrogates`, which an estimate pays on every call)."""
    stack: list[object] = [body]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if type(node) is str:
            if not node.isascii() and _lone_surrogate_at(node) is not None:
                return True
        elif type(node) is dict or isinstance(node, Mapping):
            if id(node) in seen:
                continue
            seen.add(id(node))
            for key, value in node.items():
                if type(key) is str and not key.isascii() and _lone_surrogate_at(key) is not None:
                    return True
                # Numbers, None and ASCII text (most values) cannot hold one: not stacked.
                kind = type(value)
                if kind not in _PLAIN or (kind is str and not value.isascii()):
                    stack.append(value)
        elif type(node) is list or isinstance(node, list | tuple):
            if id(node) not in seen:
                seen.add(id(node))
                stack.extend(node)
        elif isinstance(node, str) and _lone_surrogate_at(node) is not None:
            return True  # a str subclass
    return False


def _lone_surrogate_at(text: str) -> int | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None
