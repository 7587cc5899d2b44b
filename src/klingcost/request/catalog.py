"""Which endpoints exist, their names, Kling's defaults and the official limits of a body.

Which models an endpoint takes, and their durations, modes, sound and features, are the price
sheet's catalogue (:attr:`klingcost.sheet.PriceSheet.models`), not this module's: a model an
overlay adds is valid at once. Here: what no sheet changes.
"""

from __future__ import annotations

from typing import Final, Literal

from klingcost.errors import Problem, RequestValidationError

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


#: What a broken ``duration`` allows, until the model's own durations replace it.
DURATION_TEXT: Final = "whole seconds the model takes (see klingcost prices)"
