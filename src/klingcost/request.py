"""Request models for the four Kling endpoints, and every rule their bodies must keep.

A body passes in two steps. Pydantic checks each field's type, allowed values and ranges (the
models below, ``extra="forbid"``); then :func:`_rules` checks what spans fields or depends on the
model (``sound`` only on kling-v2-6, camera control only at 5 s std, the O1 list limits, inline
images). Both steps report into one :class:`~klingcost.errors.RequestValidationError` that names
every offending field, the value given and what is allowed. No pydantic error escapes.

What real clients send is accepted as the API accepts it: ``null`` means "not set", numbers may be
strings (``"5"``) or numbers (``5``), and ``model`` (the proxy's web client) means ``model_name``.
Kling's defaults fill what is left out (kling-v1, std, 5 s, n 1, sound off); see :data:`DEFAULTS`.

Sources: the seed (the openai-hk Kling page) and kling-facts.md; each rule says which.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from klingcost.errors import _MISSING, Problem, RequestValidationError

Endpoint = Literal[
    "images/generations", "videos/text2video", "videos/image2video", "videos/omni-video"
]
ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    "images/generations",
    "videos/text2video",
    "videos/image2video",
    "videos/omni-video",
)
_ENDPOINT_NAMES: Final[dict[str, Endpoint]] = {
    **{e: e for e in ENDPOINTS},
    **{e.split("/")[1]: e for e in ENDPOINTS},
    "images": "images/generations",
}

#: Models per endpoint. Video: the seed's lists plus every model of Kling's official price list.
VIDEO_MODELS: Final = (
    "kling-v1",
    "kling-v1-5",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
)
IMAGE_MODELS: Final = ("kling-v1", "kling-v1-5", "kling-v2", "kling-v2-1", "kling-image-o1")
OMNI_MODELS: Final = ("kling-video-o1",)
MODELS: Final[dict[Endpoint, tuple[str, ...]]] = {
    "images/generations": IMAGE_MODELS,
    "videos/text2video": VIDEO_MODELS,
    "videos/image2video": VIDEO_MODELS,
    "videos/omni-video": OMNI_MODELS,
}
#: Models with one price and no std/pro split (seed: "mode ... not supported by kling-v2-master").
UNMODED_MODELS: Final = frozenset({"kling-v2-master", "kling-v2-1-master"})
SOUND_MODELS: Final = frozenset({"kling-v2-6"})

IMAGE_ASPECTS: Final = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3")
VIDEO_ASPECTS: Final = ("16:9", "9:16", "1:1")
VIDEO_DURATIONS: Final = (5, 10)
OMNI_DURATIONS: Final = range(3, 11)
#: What a problem with ``duration`` names as allowed.
VIDEO_DURATION_TEXT: Final = '"5" or "10"'
OMNI_DURATION_TEXT: Final = "3 to 10 seconds"

#: Kling's defaults for a field left out. kling-v2-6 is always pro on the proxy (openai-hk
#: docs), and an O1 body without a mode is priced as pro: the sources disagree on O1's default,
#: the seed's one observed O1 charge ("4" units for 5 s) is the pro price, and a budget guard
#: must not under-estimate.
DEFAULTS: Final[dict[str, Any]] = {
    "model_name": "kling-v1",
    "mode": "std",
    "duration": 5,
    "n": 1,
    "sound": "off",
}
DEFAULT_MODE_BY_MODEL: Final = {"kling-v2-6": "pro", "kling-video-o1": "pro"}

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


def normalize_endpoint(name: str) -> Endpoint:
    """``videos/text2video``, ``text2video`` or ``/v1/videos/text2video`` -> the canonical name."""
    found = None
    if isinstance(name, str):  # a JSON Lines batch may name an endpoint with a number or a list
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
    return _parse_whole(value, signed=False)


def _fraction_number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean, not a number")
    return value


Whole = Annotated[int, BeforeValidator(_whole_number)]
Count = Annotated[int, BeforeValidator(_count)]  # duration, n: "-5" is no count of anything
Unit = Annotated[float, BeforeValidator(_fraction_number), Field(ge=0, le=1)]
OnOff = Literal["on", "off"]


class _Body(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=False, defer_build=True
    )

    notify_hook: str | None = None
    callback_url: str | None = None  # Kling's own API's name for notify_hook
    external_task_id: str | None = None


class ImageRequest(_Body):
    """``POST /v1/images/generations``: text-to-image and image-to-image."""

    model_name: str | None = None
    prompt: str
    negative_prompt: str | None = None
    image: str | None = None
    image_reference: Literal["subject", "face"] | None = None
    image_fidelity: Unit | None = None
    human_fidelity: Unit | None = None
    n: Annotated[Count, Field(ge=1, le=9)] | None = None
    aspect_ratio: Literal["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3"] | None = None


class CameraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    horizontal: Annotated[Whole, Field(ge=-10, le=10)] | None = None
    vertical: Annotated[Whole, Field(ge=-10, le=10)] | None = None
    pan: Annotated[Whole, Field(ge=-10, le=10)] | None = None
    tilt: Annotated[Whole, Field(ge=-10, le=10)] | None = None
    roll: Annotated[Whole, Field(ge=-10, le=10)] | None = None
    zoom: Annotated[Whole, Field(ge=-10, le=10)] | None = None


class CameraControl(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    type: Literal["simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward"]
    config: CameraConfig | None = None


class _VideoBody(_Body):
    model_name: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    cfg_scale: Unit | None = None
    mode: Literal["std", "pro"] | None = None
    aspect_ratio: Literal["16:9", "9:16", "1:1"] | None = None
    duration: Count | None = None
    sound: OnOff | None = None
    camera_control: CameraControl | None = None


class TextToVideoRequest(_VideoBody):
    """``POST /v1/videos/text2video``."""

    prompt: str


class ImageToVideoRequest(_VideoBody):
    """``POST /v1/videos/image2video``: a start frame, and optionally an end frame or a brush."""

    image: str
    image_tail: str | None = None
    static_mask: str | None = None
    dynamic_masks: list[dict[str, Any]] | None = None


class OmniImage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    image_url: str
    type: Literal["first_frame", "end_frame"] | None = None


class OmniVideo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    video_url: str
    refer_type: Literal["feature", "base"] | None = None
    keep_original_sound: Literal["yes", "no"] | None = None


class OmniElement(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    element_id: Whole | str


class OmniVideoRequest(_Body):
    """``POST /v1/videos/omni-video``: kling-video-o1 (Omni-Video)."""

    model_name: str | None = None
    prompt: str
    mode: Literal["std", "pro"] | None = None
    aspect_ratio: Literal["16:9", "9:16", "1:1"] | None = None
    duration: Count | None = None
    image_list: list[OmniImage] | None = None
    element_list: list[OmniElement] | None = None
    video_list: list[OmniVideo] | None = None


RequestModel = ImageRequest | TextToVideoRequest | ImageToVideoRequest | OmniVideoRequest
_MODEL_FOR: Final[dict[Endpoint, type[RequestModel]]] = {
    "images/generations": ImageRequest,
    "videos/text2video": TextToVideoRequest,
    "videos/image2video": ImageToVideoRequest,
    "videos/omni-video": OmniVideoRequest,
}


# --- the validated request: what pricing needs --------------------------------------------


@dataclass(frozen=True, slots=True)
class ValidatedRequest:
    """A body that keeps every rule, with Kling's defaults filled in.

    ``job`` is the request's *job class*: everything that decides its price and nothing else.
    """

    endpoint: Endpoint
    model: str
    mode: Literal["std", "pro"] | None  # None: the model has no std/pro split
    duration: int | None  # seconds; None for images
    sound: bool
    video_reference: bool
    reference_image: bool
    n: int
    body: RequestModel

    @property
    def job(self) -> tuple[str, str, str | None, int | None, bool, bool, bool, int]:
        return (
            self.endpoint,
            self.model,
            self.mode,
            self.duration,
            self.sound,
            self.video_reference,
            self.reference_image,
            self.n,
        )


def validate_request(
    endpoint: str, body: Mapping[str, Any], *, limits: tuple[int, int] = PROXY_LIMITS
) -> ValidatedRequest:
    """Check ``body`` against every rule of ``endpoint``; raise one error naming every problem.

    ``limits`` are the maximum lengths of ``prompt`` and ``negative_prompt`` (the proxy's 500
    and 200 by default; Kling's own API allows 2500).
    """
    name = normalize_endpoint(endpoint)
    if not isinstance(body, Mapping):
        raise RequestValidationError(
            endpoint=name,
            problems=[Problem("body", body, "a JSON object", "the body must be a JSON object")],
        )
    _refuse_lone_surrogates(name, body)
    prepared, problems = _prepare(body)
    model = _MODEL_FOR[name]
    try:
        parsed = model.model_validate(prepared)
    except ValidationError as exc:
        problems.extend(_from_pydantic(exc, model))
        # Check the rest of the body too, so that one error lists every problem.
        broken = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        rest = {k: v for k, v in prepared.items() if k not in broken}
        # A missing or broken required field (already reported) must not hide the other rules:
        # stand in a value that keeps every rule (a URL is not inspected).
        for key, info in model.model_fields.items():
            if info.is_required() and key not in rest:
                rest[key] = "https://placeholder.invalid/" if key == "image" else "-"
        try:
            parsed = model.model_validate(rest)
        except ValidationError:
            raise RequestValidationError(endpoint=name, problems=problems) from None
    request = _resolve(name, parsed, problems)
    _rules(request, parsed, limits, problems)
    if problems:
        raise RequestValidationError(endpoint=name, problems=problems)
    return request


def _prepare(body: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """Drop nulls and empty strings (both mean "not set") and fold ``model`` into ``model_name``."""
    problems: list[Problem] = []
    prepared = {key: value for key, value in body.items() if value is not None and value != ""}
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
    return prepared, problems


def _from_pydantic(exc: ValidationError, model: type[BaseModel]) -> list[Problem]:
    problems: dict[str, Problem] = {}
    for error in exc.errors(include_url=False):
        kind = error["type"]
        field, owner = _field_path(model, error["loc"], kind)
        name = field.rsplit(".", 1)[-1]
        ctx = error.get("ctx") or {}
        given = error.get("input", _MISSING)
        if kind == "missing":
            given, allowed, message = _MISSING, "a value", "is required"
        elif kind == "extra_forbidden":
            allowed = "the documented fields: " + ", ".join(owner.model_fields)
            message = "unknown field"
        elif kind == "literal_error":
            allowed = str(ctx.get("expected"))
            message = "not an allowed value"
        elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            allowed = _number_text(model, name) or ", ".join(f"{k} {v}" for k, v in ctx.items())
            message = "out of range"
        elif kind.startswith("int") or kind == "value_error":
            # Value errors come only from our own validators (_parse_whole, _fraction_number),
            # so their text is ours to show.
            allowed = _number_text(model, name) or 'a whole number, as 5 or "5"'
            message = str(ctx["error"]) if kind == "value_error" else "not a whole number"
        else:
            allowed, message = _expected_type(kind)
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
        elif current is not None and (part in current.model_fields or kind == "extra_forbidden"):
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
        return OMNI_DURATION_TEXT if model is OmniVideoRequest else VIDEO_DURATION_TEXT
    if field in CAMERA_AXES:
        return "whole numbers from -10 to 10"
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
    if kind in ("list_type", "too_long", "too_short"):
        return "a list", "not a list"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "a JSON object", "not a JSON object"
    return "see the Kling API documentation", "not an allowed value"


def _resolve(name: Endpoint, parsed: RequestModel, problems: list[Problem]) -> ValidatedRequest:
    """Fill Kling's defaults and derive the job class."""
    model = parsed.model_name or (OMNI_MODELS[0] if name == "videos/omni-video" else "kling-v1")
    if model not in MODELS[name]:
        problems.append(
            Problem("model_name", model, ", ".join(MODELS[name]), f"not a model of {name}")
        )
    mode: Literal["std", "pro"] | None
    if isinstance(parsed, ImageRequest):
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
        )
    if model in UNMODED_MODELS:
        if parsed.mode == "pro":
            problems.append(
                Problem("mode", "pro", "std or nothing", f"{model} has no pro mode (seed)")
            )
        mode = None
    else:
        mode = parsed.mode or DEFAULT_MODE_BY_MODEL.get(model, "std")  # type: ignore[assignment]
    if isinstance(parsed, OmniVideoRequest):
        return ValidatedRequest(
            endpoint=name,
            model=model,
            mode=mode,
            duration=parsed.duration if parsed.duration is not None else 5,
            sound=False,
            video_reference=bool(parsed.video_list),
            reference_image=bool(parsed.image_list),
            n=1,
            body=parsed,
        )
    return ValidatedRequest(
        endpoint=name,
        model=model,
        mode=mode,
        duration=parsed.duration if parsed.duration is not None else 5,
        sound=parsed.sound == "on",
        video_reference=False,
        reference_image=isinstance(parsed, ImageToVideoRequest),
        n=1,
        body=parsed,
    )


# --- rules that span fields ----------------------------------------------------------------


def _rules(
    request: ValidatedRequest,
    body: RequestModel,
    limits: tuple[int, int],
    problems: list[Problem],
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
    if isinstance(body, OmniVideoRequest):
        _omni_rules(request, body, problems)
        return
    _video_rules(request, body, problems)


def _video_rules(request: ValidatedRequest, body: _VideoBody, problems: list[Problem]) -> None:
    if body.duration is not None and body.duration not in VIDEO_DURATIONS:
        problems.append(
            Problem("duration", body.duration, VIDEO_DURATION_TEXT, "not an allowed duration")
        )
    if request.sound and request.model not in SOUND_MODELS:
        problems.append(
            Problem("sound", "on", "off, or a kling-v2-6 model", "sound is kling-v2-6 only (seed)")
        )
    elif request.sound and request.mode != "pro":
        problems.append(
            Problem("sound", "on", "off in std mode", "kling-v2-6 makes sound only in pro mode")
        )
    camera = body.camera_control
    if camera is not None:
        _camera_rules(request, camera, problems)
    if isinstance(body, ImageToVideoRequest):
        _check_image("image", body.image, problems)
        if body.image_tail is not None:
            _check_image("image_tail", body.image_tail, problems)
        # The motion brush's masks are images too, sent as a URL or base64 like image.
        if body.static_mask is not None:
            _check_image("static_mask", body.static_mask, problems)
        for index, brush in enumerate(body.dynamic_masks or []):
            field, mask = f"dynamic_masks.{index}.mask", brush.get("mask")
            if isinstance(mask, str):
                if mask:  # "" means "not set", as at the top level
                    _check_image(field, mask, problems)
            elif mask is not None:
                allowed = "an http(s) URL or base64 image data"
                problems.append(Problem(field, mask, allowed, "not a string"))
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
    request: ValidatedRequest, camera: CameraControl, problems: list[Problem]
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
    if request.endpoint == "videos/text2video" and request.model != "kling-v1":
        problems.append(
            Problem(
                "camera_control",
                request.model,
                "kling-v1",
                "text2video camera control is kling-v1 only (Kling's capability map)",
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
    first_frame_only = (
        not elements and not videos and [i.type for i in images] in ([], ["first_frame"])
    )
    duration = request.duration
    if duration not in OMNI_DURATIONS:
        problems.append(
            Problem("duration", duration, OMNI_DURATION_TEXT, "not an allowed duration")
        )
    elif first_frame_only and duration not in VIDEO_DURATIONS:
        problems.append(
            Problem(
                "duration",
                duration,
                "5 or 10 for a text-only or first-frame task",
                "not an allowed duration",
            )
        )


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
    if _all_encodable(body):  # the common case, without building a path for every field
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


def _all_encodable(body: object) -> bool:
    """Whether every string, value or key in ``body``, at any depth, encodes as UTF-8."""
    stack: list[object] = [body]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if not node.isascii() and _lone_surrogate_at(node) is not None:
                return False
        elif isinstance(node, Mapping | list | tuple) and id(node) not in seen:
            seen.add(id(node))
            if isinstance(node, Mapping):
                for key, value in node.items():
                    if isinstance(key, str) and _lone_surrogate_at(key) is not None:
                        return False
                    stack.append(value)
            else:
                stack.extend(node)
    return True


def _lone_surrogate_at(text: str) -> int | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None
