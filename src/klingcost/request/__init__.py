"""Request validation for the Kling endpoints: every rule their bodies must keep.

A body passes in two steps. Each field's type, allowed values and ranges are checked: by the plain
reader for a body of top-level strings and numbers (:mod:`~klingcost.request.plain`, without
pydantic), by pydantic for any other (:mod:`~klingcost.request.models`); then
:mod:`~klingcost.request.rules` checks what spans fields or depends on the model. Which models an
endpoint takes, their durations, modes, sound, voices, resolutions and features come from the price
sheet's catalogue (:attr:`klingcost.sheet.PriceSheet.models`), so a model an overlay adds is valid
and priced at once. Both steps report into one :class:`~klingcost.errors.RequestValidationError`
that names every offending field, the value given and what is allowed. No pydantic error escapes.

What real clients send is accepted as the API accepts it: every field of Kling's official request
reference, ``null`` for "not set", numbers as strings (``"5"``) or numbers (``5``), ``model`` (the
proxy's web client) for ``model_name``. A field klingcost does not know is priced as if absent, with
a warning, when it cannot change the price; it is refused when it may (its name speaks of sound,
video, duration, mode, resolution...), and ``strict=True`` refuses every one
(:mod:`~klingcost.request.unknown`). A known field with a value the sheet does not price
(``resolution: "8k"``) is refused, naming the overlay key that would price it. Kling's defaults fill
what is left out (kling-v1, std, 5 s, n 1, sound off).

The rooms: ``catalog`` (endpoints, defaults, official limits), ``fields`` (how a value is read as
the API reads it), ``models`` (the pydantic bodies), ``plain`` (plain bodies without pydantic),
``parse`` (a body read by pydantic), ``validated`` (the validated request), ``validate`` (the entry
point), ``problems`` (pydantic's errors in our words), ``unknown`` (fields klingcost does not know),
``rules`` (what spans fields), ``camera`` (camera control's rules), ``images`` (inline base64
images), ``surrogates`` (text that cannot be sent).

Sources: the seed (the openai-hk Kling page), Kling's API reference, and the sheet's catalogue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from klingcost.request.catalog import (
    CAMERA_AXES,
    CAMERA_TYPES,
    DEFAULT_MODEL,
    ENDPOINTS,
    IMAGE_ASPECTS,
    KLING_LIMITS,
    MAX_DYNAMIC_MASKS,
    MAX_ELEMENTS_I2V,
    MAX_IMAGE_BYTES,
    MAX_SHOT_PROMPT,
    MAX_SHOTS,
    MAX_VOICES,
    MIN_IMAGE_SIDE,
    MULTI_IMAGES,
    PROXY_LIMITS,
    TRAJECTORY_POINTS,
    VIDEO_ASPECTS,
    Endpoint,
    normalize_endpoint,
)
from klingcost.request.images import image_size
from klingcost.request.validate import validate_request
from klingcost.request.validated import ValidatedRequest

if TYPE_CHECKING:
    from klingcost.request.models import (
        Axis,
        CameraConfig,
        CameraControl,
        Count,
        DynamicMask,
        Flag,
        ImageRequest,
        ImageToVideoRequest,
        MultiImage,
        MultiImageToVideoRequest,
        OmniElement,
        OmniImage,
        OmniVideo,
        OmniVideoRequest,
        OnOff,
        Point,
        RequestModel,
        Shot,
        TextToVideoRequest,
        Unit,
        Voice,
        WatermarkInfo,
        Whole,
    )


def __getattr__(name: str) -> Any:
    """The pydantic models (every public name not imported above), imported on first use
    (PEP 562): a process whose bodies are all plain never imports pydantic
    (:mod:`~klingcost.request.plain`)."""
    if name in __all__:
        from klingcost.request import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CAMERA_AXES",
    "CAMERA_TYPES",
    "DEFAULT_MODEL",
    "ENDPOINTS",
    "IMAGE_ASPECTS",
    "KLING_LIMITS",
    "MAX_DYNAMIC_MASKS",
    "MAX_ELEMENTS_I2V",
    "MAX_IMAGE_BYTES",
    "MAX_SHOTS",
    "MAX_SHOT_PROMPT",
    "MAX_VOICES",
    "MIN_IMAGE_SIDE",
    "MULTI_IMAGES",
    "PROXY_LIMITS",
    "TRAJECTORY_POINTS",
    "VIDEO_ASPECTS",
    "Axis",
    "CameraConfig",
    "CameraControl",
    "Count",
    "DynamicMask",
    "Endpoint",
    "Flag",
    "ImageRequest",
    "ImageToVideoRequest",
    "MultiImage",
    "MultiImageToVideoRequest",
    "OmniElement",
    "OmniImage",
    "OmniVideo",
    "OmniVideoRequest",
    "OnOff",
    "Point",
    "RequestModel",
    "Shot",
    "TextToVideoRequest",
    "Unit",
    "ValidatedRequest",
    "Voice",
    "WatermarkInfo",
    "Whole",
    "image_size",
    "normalize_endpoint",
    "validate_request",
]
