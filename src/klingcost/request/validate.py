"""The entry point: a body in, a :class:`~klingcost.request.models.ValidatedRequest` or one
:class:`~klingcost.errors.RequestValidationError` naming every problem out.

A body passes in two steps: pydantic checks each field (:mod:`~klingcost.request.models`), then
:func:`~klingcost.request.rules.apply_rules` checks what spans fields or depends on the model.
Kling's defaults fill what is left out (kling-v1, std, 5 s, n 1, sound off), from the sheet's
catalogue, and the request's job class is derived. No pydantic error escapes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

from klingcost.errors import Problem, RequestValidationError
from klingcost.request.catalog import DEFAULT_MODEL, PROXY_LIMITS, Endpoint, normalize_endpoint
from klingcost.request.models import (
    MODEL_FOR,
    REQUIRED_BY_RULE,
    ImageRequest,
    ImageToVideoRequest,
    MultiImageToVideoRequest,
    OmniVideoRequest,
    RequestModel,
    ValidatedRequest,
)
from klingcost.request.problems import DURATION_TEXT, from_pydantic
from klingcost.request.rules import apply_rules
from klingcost.request.surrogates import refuse_lone_surrogates
from klingcost.request.unknown import nested_fields, unknown_fields

if TYPE_CHECKING:
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
    prepared, problems, plain = _prepare(body)
    if not plain:  # a key or value that is not ASCII text or a number: look deeper
        refuse_lone_surrogates(name, body)
    if sheet is None:
        from klingcost.sheet import load_sheet

        sheet = load_sheet()
    model = MODEL_FOR[name]
    try:
        # The validator itself, not model_validate(): the same call without its Python wrapper
        # (a deferred model is built on first use either way).
        parsed = model.__pydantic_validator__.validate_python(prepared)
    except ValidationError as exc:
        problems.extend(from_pydantic(exc, model))
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
            elif key in REQUIRED_BY_RULE and key in broken:
                rest[key] = "-"
        try:
            parsed = model.model_validate(rest)
        except ValidationError:
            raise RequestValidationError(endpoint=name, problems=problems) from None
    warnings: tuple[str, ...] = ()
    if parsed.__pydantic_extra__ or not nested_fields(type(parsed)).isdisjoint(
        parsed.__pydantic_fields_set__
    ):
        warnings = unknown_fields(parsed, "", strict, problems)
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

    The third value says whether the body is *plain*: every key ASCII text, every value a
    number, a boolean, null or ASCII text. No lone surrogate can hide in a plain body, so the
    walk of :func:`refuse_lone_surrogates` is skipped for it (most bodies; this runs on every
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
