"""The request bodies of the Kling endpoints as pydantic models, and the validated request.

Pydantic checks each field's type, allowed values and ranges here; what spans fields or depends
on the model is :mod:`klingcost.request.rules`'s. Field types accept what real clients send:
numbers as strings (``"5"``) or numbers, ``null`` for "not set". Unknown keys are kept, to be
warned about or refused (:mod:`klingcost.request.unknown`).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from klingcost.jobclass import JobClass
from klingcost.request.catalog import Endpoint

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
MODEL_FOR: Final[dict[Endpoint, type[RequestModel]]] = {
    "images/generations": ImageRequest,
    "videos/text2video": TextToVideoRequest,
    "videos/image2video": ImageToVideoRequest,
    "videos/multi-image2video": MultiImageToVideoRequest,
    "videos/omni-video": OmniVideoRequest,
}
#: Fields whose absence is reported by the rules, not by pydantic (prompt: the shots may carry
#: it), so that a missing one is still "is required".
REQUIRED_BY_RULE: Final = frozenset({"prompt"})


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field's annotation holds (``Shot``, ``list[Shot] | None``), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = model_in(arg)
        if found is not None:
            return found
    return None


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
