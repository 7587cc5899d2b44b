"""Fields klingcost does not know: priced as if absent with a warning, or refused.

A field whose name speaks of what Kling prices (sound, video, duration, mode, resolution...) is
refused, since it may change the price; any other is priced as if absent and named in a warning;
``strict`` refuses every one.
"""

from __future__ import annotations

import re
from typing import Any, Final

from pydantic import BaseModel

from klingcost.errors import Problem
from klingcost.request.models import model_in

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


def unknown_fields(
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
    for key in nested_fields(type(model)) & model.__pydantic_fields_set__:
        value = model.__dict__.get(key)
        parts = value if isinstance(value, list) else [value]
        for index, item in enumerate(parts):
            # Only a part with keys of its own, or parts inside it, can hide an unknown key.
            if isinstance(item, BaseModel) and (
                item.__pydantic_extra__ or nested_fields(type(item))
            ):
                where = f"{prefix}{key}.{index}." if value is parts else f"{prefix}{key}."
                warnings += unknown_fields(item, where, strict, problems)
    return tuple(warnings)


_NESTED: dict[type[BaseModel], frozenset[str]] = {}


def nested_fields(cls: type[BaseModel]) -> frozenset[str]:
    """The fields of ``cls`` that hold parts (models, or lists of them): only those can hide an
    unknown key, so only those are walked (this runs on every estimate)."""
    found = _NESTED.get(cls)
    if found is None:
        found = _NESTED[cls] = frozenset(
            name for name, info in cls.model_fields.items() if model_in(info.annotation)
        )
    return found


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
