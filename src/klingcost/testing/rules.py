"""What the fake Kling API accepts, and what it charges for it: a body in, a :class:`Job` out.

These are the API's rules as the fake plays them, read from its own price table (which models an
endpoint takes, their modes, durations and features) and from Kling's request reference: a
field the API documents is checked, one it does not know is ignored (as Kling ignores it). A
body that breaks a rule is refused with :class:`Refused` (Kling's code 1200 or 1201 and a
message naming the field). klingcost's validator is not used: the fake must not share its
mistakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

from klingcost.testing.prices import GROUP_OF, PriceTable, Profile, VideoPrice

__all__ = ["Job", "Refused", "read_job"]

VIDEO_ASPECTS: Final = ("16:9", "9:16", "1:1")
IMAGE_ASPECTS: Final = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9")
DEFAULT_MODEL: Final = {
    "video": "kling-v1",
    "multi_image": "kling-v1-6",
    "omni": "kling-video-o1",
    "images": "kling-v1",
}
#: Multi-image to video takes at most this many reference images (Kling's API reference).
MULTI_IMAGES: Final = 4
#: An omni video edit (``refer_type: base``) without a duration: its output follows the input
#: video, which the fake cannot see; it assumes the longest input Kling takes.
EDIT_SECONDS: Final = 10


class Refused(Exception):
    """The API refuses the body: HTTP 400 with Kling's ``code`` and a message naming the field."""

    def __init__(self, message: str, *, code: int = 1201) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Job:
    """What the fake charges for: the model, and the key and seconds (or images) it is priced by."""

    endpoint: str
    model: str
    key: str  # the rate key it is billed under (after a provider's "bills as pro")
    seconds: int | None
    n: int
    units: Fraction


def _text(body: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise Refused(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise Refused(f"{name} must be a string (given {value!r})")
    return value


def _whole(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if type(value) is int:
        return value
    raise Refused(f'{name} must be a whole number, as 5 or "5" (given {value!r})')


def _choice(body: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = _text(body, name)
    if value is not None and value not in allowed:
        raise Refused(f"{name} {value!r} is not one of {', '.join(allowed)}")
    return value


def _limit(body: Mapping[str, Any], name: str, most: int, required: bool) -> None:
    value = _text(body, name, required=required)
    if value is not None and len(value) > most:
        raise Refused(f"{name} is {len(value)} characters; at most {most}")


def _list(body: Mapping[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Refused(f"{name} must be a list (given {type(value).__name__})")
    return value


def read_job(endpoint: str, body: Any, table: PriceTable, profile: Profile) -> Job:
    """Check ``body`` for ``endpoint`` as the API would and price it; :class:`Refused` if not."""
    if not isinstance(body, Mapping):
        raise Refused("the request body must be a JSON object", code=1200)
    group = GROUP_OF[endpoint]
    model = _text(body, "model_name") or _text(body, "model") or DEFAULT_MODEL[group]
    models = table.models(endpoint)
    if model not in models:
        raise Refused(f"model_name {model!r} is not a model of {endpoint}: {', '.join(models)}")
    needs_prompt = endpoint != "videos/image2video"
    _limit(body, "prompt", profile.prompt_limit, needs_prompt)
    _limit(body, "negative_prompt", profile.negative_prompt_limit, False)
    for name in ("callback_url", "notify_hook", "external_task_id"):
        _text(body, name)
    if group == "images":
        return _image_job(endpoint, model, body, table)
    if endpoint == "videos/image2video":
        _text(body, "image", required=True)
    if group == "multi_image":
        _multi_images(body)
    _choice(body, "aspect_ratio", VIDEO_ASPECTS)
    price = (
        table.omni[model]
        if group == "omni"
        else table.multi_image[model]
        if group == "multi_image"
        else table.video[model]
    )
    return _video_job(endpoint, price, body, profile)


def _multi_images(body: Mapping[str, Any]) -> None:
    """Multi-image to video: 1 to 4 items of ``{"image": URL or base64}``."""
    images = _list(body, "image_list")
    if not 1 <= len(images) <= MULTI_IMAGES:
        raise Refused(f"image_list takes 1 to {MULTI_IMAGES} images (given {len(images)})")
    for index, item in enumerate(images):
        if not isinstance(item, Mapping) or not isinstance(item.get("image"), str):
            raise Refused(f'image_list[{index}] must be {{"image": URL or base64}}')


def _image_job(endpoint: str, model: str, body: Mapping[str, Any], table: PriceTable) -> Job:
    price = table.images[model]
    _choice(body, "aspect_ratio", IMAGE_ASPECTS)
    resolution = _choice(body, "resolution", price.resolutions) or price.resolutions[0]
    n = _whole(body, "n")
    n = 1 if n is None else n
    if not 1 <= n <= 9:
        raise Refused(f"n {n} is not 1 to 9")
    reference = _text(body, "image") is not None
    per_image = (price.reference if reference else price.text)[resolution]
    key = f"{'reference' if reference else 'text'}@{resolution}"
    return Job(endpoint, model, key, None, n, per_image * n)


def _video_job(endpoint: str, price: VideoPrice, body: Mapping[str, Any], profile: Profile) -> Job:
    model = price.model
    mode = _text(body, "mode")
    if mode is None or (mode == "std" and "flat" in price.modes):
        mode = price.default_mode
    if mode not in price.modes:
        raise Refused(f"mode {mode!r} is not available for {model}: {', '.join(price.modes)}")
    if model in profile.bills_as_pro and mode == "std":
        # The provider runs (and bills) this model as pro whatever the body says: a std body
        # is a pro task there, sound and all.
        mode = "pro"
    sound = _choice(body, "sound", ("on", "off")) == "on"
    voices = _list(body, "voice_list")
    if voices and not sound:
        raise Refused('voice_list needs sound "on"')
    videos = _list(body, "video_list")
    if len(videos) > 1:
        raise Refused(f"video_list takes at most 1 video (given {len(videos)})")
    key = mode + ("+video" if videos else "") + ("+voice" if voices else "+sound" if sound else "")
    if key not in price.keys:
        feature = key.partition("+")[2] or mode
        raise Refused(
            f"{feature.replace('+', ' with ')} is not available for {model} in {mode} mode "
            f"(it takes {', '.join(price.keys)})"
        )
    seconds = _whole(body, "duration")
    if seconds is None:
        edit = any(isinstance(v, Mapping) and v.get("refer_type") == "base" for v in videos)
        seconds = EDIT_SECONDS if edit else 5
    allowed = price.seconds_allowed(key)
    if seconds not in allowed:
        shown = (
            f"{allowed[0]} to {allowed[-1]}" if len(allowed) > 2 else " or ".join(map(str, allowed))
        )
        raise Refused(f"duration {seconds} is not allowed for {model}: {shown} seconds")
    return Job(endpoint, model, key, seconds, 1, price.units(key, seconds))
