"""The rules that span fields or depend on the model: prompt lengths, durations and shots,
sound and voices, camera control, image2video's extras, omni-video's references.

What a model allows comes from the sheet's catalogue (:class:`~klingcost.sheet.Capabilities`);
a refusal of what an overlay could price names the key to add. Every problem found is appended
to one list, so that one error names them all.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, cast

from klingcost.errors import _MISSING, Problem
from klingcost.request.camera import camera_rules, models_with
from klingcost.request.catalog import (
    MAX_DYNAMIC_MASKS,
    MAX_ELEMENTS_I2V,
    MAX_SHOT_PROMPT,
    MAX_SHOTS,
    MAX_VOICES,
    MULTI_IMAGES,
    TRAJECTORY_POINTS,
)
from klingcost.request.images import check_image
from klingcost.request.validated import ValidatedRequest

if TYPE_CHECKING:
    from klingcost.request.models import (
        ImageRequest,
        ImageToVideoRequest,
        MultiImageToVideoRequest,
        OmniVideoRequest,
        RequestModel,
        TextToVideoRequest,
    )
    from klingcost.request.plain import PlainBody
    from klingcost.sheet import Capabilities, PriceSheet

    #: The video bodies with duration, sound and shots.
    _Clip = TextToVideoRequest | ImageToVideoRequest | OmniVideoRequest


def apply_rules(
    request: ValidatedRequest,
    body: RequestModel | PlainBody,
    caps: Capabilities | None,
    sheet: PriceSheet,
    limits: tuple[int, int],
    problems: list[Problem],
    as_pro: Collection[str] = (),
) -> None:
    """Append to ``problems`` what ``body`` breaks of the rules that span fields. ``caps`` is
    None for a model the catalogue does not take (already reported): the rules that do not
    depend on the model are still checked, so that one error names every problem.

    The body's kind is told by the request's endpoint, not its class: a plain body (a
    :class:`~klingcost.request.plain.PlainBody`) reads as its endpoint's model does, and is
    typed as that model for the rules of its endpoint (``cast``)."""
    endpoint = request.endpoint
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
    if endpoint == "images/generations":
        image = cast("ImageRequest", body).image
        if image is not None:
            check_image("image", image, problems)
        return
    if endpoint == "videos/multi-image2video":
        _multi_image_rules(request, cast("MultiImageToVideoRequest", body), caps, problems)
        return
    clip = cast("_Clip", body)
    if caps is not None:
        _duration_rules(request, clip, caps, prompt_max, problems)
        # Most bodies are silent, without voices or elements: skip the call then.
        if request.sound or getattr(clip, "voice_list", None) or clip.element_list:
            _sound_rules(request, clip, caps, sheet, problems, as_pro)
    elif clip.prompt is None and endpoint != "videos/image2video" and not clip.multi_shot:
        problems.append(Problem("prompt", _MISSING, "a value", "is required"))
    if endpoint == "videos/omni-video":
        _omni_rules(request, cast("OmniVideoRequest", body), problems)
        return
    video = cast("TextToVideoRequest | ImageToVideoRequest", body)
    _video_rules(request, video, caps, sheet, problems)


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
        check_image(f"image_list.{index}.image", item.image, problems)


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
    elif body.prompt is None and request.endpoint != "videos/image2video":
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
            allowed = "off, or a model with sound: " + models_with(
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
    if elements and request.endpoint != "videos/omni-video":
        if not caps.elements:
            problems.append(
                Problem(
                    "element_list",
                    len(elements),
                    "elements on a model that takes them: "
                    + models_with(sheet, request.endpoint, "elements"),
                    f"{model} takes no elements",
                )
            )
        elif request.endpoint == "videos/image2video":
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
        camera_rules(request, camera, caps, sheet, problems)
    if request.endpoint == "videos/image2video":
        body = cast("ImageToVideoRequest", body)
        check_image("image", body.image, problems)
        if body.image_tail is not None:
            check_image("image_tail", body.image_tail, problems)
        # The motion brush's masks are images too, sent as a URL or base64 like image.
        if body.static_mask is not None:
            check_image("static_mask", body.static_mask, problems)
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
                check_image(f"dynamic_masks.{index}.mask", brush.mask, problems)
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
        check_image(f"image_list.{index}.image_url", image.image_url, problems)


def _sound_key(caps: Capabilities, model: str, mode: str) -> str:
    """The sheet key that would price sound for ``model`` (per second, or a clip's factor)."""
    if caps.price_key.startswith("per_second."):
        return f"{caps.price_key}.{mode}.sound"
    return f"video.sound.{model}"
