"""The request bodies of the Kling endpoints as pydantic models, and the validated request.

Pydantic checks each field's type, allowed values and ranges here; what spans fields or depends
on the model is :mod:`klingcost.request.rules`'s. Field types accept what real clients send:
numbers as strings (``"5"``) or numbers, ``null`` for "not set". Unknown keys are kept, to be
warned about or refused (:mod:`klingcost.request.unknown`).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from klingcost.request import fields
from klingcost.request.catalog import Endpoint

# --- field types that accept what real clients send --------------------------------------

Whole = Annotated[int, BeforeValidator(fields.whole_number)]
Count = Annotated[int, BeforeValidator(fields.count)]  # duration, n: "-5" is no count of anything
# Constraints before the validator: pydantic then checks them natively, not in Python.
Unit = Annotated[float, Field(ge=0, le=1), BeforeValidator(fields.fraction_number)]
#: Camera values: Kling's reference types them as float in [-10, 10] (ComfyUI sends 0.5).
Axis = Annotated[float, Field(ge=-10, le=10), BeforeValidator(fields.fraction_number)]
Flag = Annotated[bool, BeforeValidator(fields.flag)]
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
