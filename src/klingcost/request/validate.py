"""The entry point: a body in, a :class:`~klingcost.request.validated.ValidatedRequest` or one
:class:`~klingcost.errors.RequestValidationError` naming every problem out.

A body passes in two steps: each field is checked, by the plain reader for a body of plain
fields (:mod:`~klingcost.request.plain`, no pydantic) and by pydantic for any other
(:mod:`~klingcost.request.parse`); then :func:`~klingcost.request.rules.apply_rules` checks what
spans fields or depends on the model.
Kling's defaults fill what is left out (kling-v1, std, 5 s, n 1, sound off), from the sheet's
catalogue, and the request's job class is derived. No pydantic error escapes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

from klingcost.errors import Problem, RequestValidationError
from klingcost.request.catalog import (
    DEFAULT_MODEL,
    DURATION_TEXT,
    PROXY_LIMITS,
    Endpoint,
    normalize_endpoint,
)
from klingcost.request.plain import PlainBody, read_plain
from klingcost.request.rules import apply_rules
from klingcost.request.surrogates import refuse_lone_surrogates
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
    from klingcost.sheet import Capabilities, PriceSheet


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
    prepared, problems, ascii_only = _prepare(body)
    if not ascii_only:  # a key or value that is not ASCII text or a number: look deeper
        refuse_lone_surrogates(name, body)
    if sheet is None:
        from klingcost.sheet import load_sheet

        sheet = load_sheet()
    parsed: RequestModel | PlainBody | None = read_plain(name, prepared)
    warnings: tuple[str, ...] = ()
    if parsed is None:  # anything but plain fields: pydantic reads it (imported only then)
        from klingcost.request.parse import parse_fields

        parsed, warnings = parse_fields(name, prepared, strict, problems)
    caps = sheet.models[name].get(parsed.model_name or DEFAULT_MODEL[name])
    if problems and caps is not None and caps.durations:
        # A duration of the wrong type names what this model takes.
        problems[:] = [
            Problem(p.field, p.given, caps.duration_text(), p.message)
            if p.field == "duration" and p.allowed == DURATION_TEXT
            else p
            for p in problems
        ]
    request = _resolve(name, parsed, caps, sheet, problems, warnings)
    # An unknown model (already reported) still has the rules that do not depend on the model
    # checked (prompt lengths, images, lists), so that one error names its other problems.
    apply_rules(request, parsed, caps, sheet, limits, problems, as_pro)
    if problems:
        raise RequestValidationError(endpoint=name, problems=problems)
    return request


def _choices(values: frozenset[str]) -> str:
    """'std' or 'pro' (std first, then the rest in order)."""
    ordered = sorted(values, key=lambda v: (v != "std", v != "pro", v))
    return " or ".join(repr(v) for v in ordered)


def _prepare(body: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem], bool]:
    """Drop nulls and empty strings (both mean "not set") and fold ``model`` into ``model_name``.

    The third value says whether the body is ASCII-only: every key ASCII text, every value a
    number, a boolean, null or ASCII text. No lone surrogate can hide in such a body, so the
    walk of :func:`refuse_lone_surrogates` is skipped for it (most bodies; this runs on every
    estimate, and one pass over the keys here costs less than a second one there).
    """
    problems: list[Problem] = []
    prepared: dict[str, Any] = {}
    ascii_only = True
    for key, value in body.items():
        if ascii_only:
            kind = type(value)
            ascii_only = (
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
    return prepared, problems, ascii_only


#: Values that hold no text: a body of these and ASCII strings needs no surrogate walk.
_SCALARS: Final = frozenset({int, float, bool, type(None)})


def _resolve(
    name: Endpoint,
    parsed: RequestModel | PlainBody,
    caps: Capabilities | None,
    sheet: PriceSheet,
    problems: list[Problem],
    warnings: tuple[str, ...],
) -> ValidatedRequest:
    """Fill Kling's defaults (the catalogue's) and derive the job class.

    The body's kind is told by its endpoint, not its class: a plain body (a
    :class:`~klingcost.request.plain.PlainBody`) reads as its endpoint's model does, and is
    typed as that model where one endpoint's fields are read (``cast``)."""
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
    if name == "images/generations":
        image = cast("ImageRequest", parsed)
        resolution = image.resolution
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
            reference_image=image.image is not None,
            n=image.n if image.n is not None else 1,
            parsed=parsed,
            resolution=resolution,
            warnings=warnings,
        )
    mode = cast("TextToVideoRequest | MultiImageToVideoRequest", parsed).mode
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
    if name == "videos/multi-image2video":
        seconds = cast("MultiImageToVideoRequest", parsed).duration
        if seconds is None:
            seconds = caps.default_duration if caps is not None else 5
        return ValidatedRequest(
            name, model, mode, seconds, False, False, True, 1, parsed, False, None, False, warnings
        )
    video = cast("TextToVideoRequest | ImageToVideoRequest | OmniVideoRequest", parsed)
    omni = name == "videos/omni-video"
    sound = video.sound == "on"
    voice = sound and not omni and bool(cast("TextToVideoRequest", video).voice_list)
    videos = cast("OmniVideoRequest", video).video_list if omni else None
    duration = video.duration
    held = False
    if duration is None:
        if video.multi_shot and video.multi_prompt:
            duration = sum(shot.duration for shot in video.multi_prompt)
        elif caps is not None:
            if videos and caps.durations and any(v.refer_type == "base" for v in videos):
                # A video edit's output follows its input video, which may last this long.
                duration, held = caps.edit_hold_seconds or max(caps.durations), True
            else:
                duration = caps.default_duration
    reference_image = (
        bool(cast("OmniVideoRequest", video).image_list) if omni else name == "videos/image2video"
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
