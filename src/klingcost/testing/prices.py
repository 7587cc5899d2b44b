"""The fake Kling API's own price table (``prices.yaml`` beside this file) and how it charges a job.

The fake is an *oracle*: it must charge what Kling (or openai-hk) would, without asking the code it
tests. So it reads the published unit prices from its own table, in the shape the price list
prints them (units per clip, per second, per image), and never imports klingcost's sheet or
pricing. ``tests/test_fake_prices.py`` prices the same requests both ways; they must agree.

A job (see :mod:`klingcost.testing.rules`) is charged ``rate x seconds`` (per-second models),
the clip's listed price (per-clip models) or ``per image x n`` (images). Its rate is found under
a key: the mode (``std``, ``pro``, ``4k``, or ``flat``), then ``+video`` with a video reference,
then ``+voice`` (a ``voice_list``) or ``+sound`` (``sound: on``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from klingcost.money import exact

__all__ = [
    "PROFILES",
    "ImagePrice",
    "PriceTable",
    "Profile",
    "TableError",
    "VideoPrice",
    "load_table",
    "load_table_over",
]

Group = Literal["video", "multi_image", "omni", "images"]
#: Which part of the table each create endpoint reads.
GROUP_OF: Final[dict[str, Group]] = {
    "videos/text2video": "video",
    "videos/image2video": "video",
    "videos/multi-image2video": "multi_image",
    "videos/omni-video": "omni",
    "images/generations": "images",
}
PROFILES: Final = ("openai-hk", "kling")
#: What an image's ``resolution`` may be when the table does not price them apart.
DEFAULT_RESOLUTIONS: Final = ("1k", "2k")


class TableError(ValueError):
    """The price table breaks one of its rules (a bare float, a missing source, ...)."""


@dataclass(frozen=True, slots=True)
class VideoPrice:
    """One video or omni model: a rate per second, or a price per clip, under each key."""

    model: str
    source: str
    per_second: dict[str, Fraction] = field(default_factory=dict)
    per_clip: dict[str, dict[int, Fraction]] = field(default_factory=dict)
    durations: tuple[int, ...] = (5, 10)
    default_mode: str = "std"

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.per_second or self.per_clip)

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(key.split("+")[0] for key in self.keys))

    def seconds_allowed(self, key: str) -> tuple[int, ...]:
        return tuple(self.per_clip[key]) if self.per_clip else self.durations

    def units(self, key: str, seconds: int) -> Fraction:
        if self.per_clip:
            return self.per_clip[key][seconds]
        return self.per_second[key] * seconds


@dataclass(frozen=True, slots=True)
class ImagePrice:
    """One image model: units per image by resolution, text only and with a reference image."""

    model: str
    source: str
    text: dict[str, Fraction]
    reference: dict[str, Fraction]

    @property
    def resolutions(self) -> tuple[str, ...]:
        return tuple(self.text)


@dataclass(frozen=True, slots=True)
class Profile:
    """How one provider behaves: its prompt limits and the models it always bills as pro."""

    name: str
    prompt_limit: int
    negative_prompt_limit: int
    bills_as_pro: frozenset[str]


@dataclass(frozen=True, slots=True)
class PriceTable:
    sources: dict[str, str]
    video: dict[str, VideoPrice]
    omni: dict[str, VideoPrice]
    #: videos/multi-image2video: priced apart from image2video, as Kling lists it (one model).
    multi_image: dict[str, VideoPrice]
    images: dict[str, ImagePrice]
    profiles: dict[str, Profile]

    def models(self, endpoint: str) -> tuple[str, ...]:
        """The models ``endpoint`` takes: those the table prices for it."""
        group = GROUP_OF[endpoint]
        return tuple(self.images if group == "images" else getattr(self, group))

    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise ValueError(f"profile {name!r} is not one of {', '.join(self.profiles)}") from None


# --- loading ------------------------------------------------------------------------------


def _amount(value: Any, where: str) -> Fraction:
    try:
        return exact(value)
    except (TypeError, ValueError) as exc:
        raise TableError(f"{where}: {exc}") from None


def _seconds(text: Any, where: str) -> tuple[int, ...]:
    if isinstance(text, str) and "-" in text:
        low, _, high = text.partition("-")
        if low.isdigit() and high.isdigit() and int(low) <= int(high):
            return tuple(range(int(low), int(high) + 1))
    if isinstance(text, list) and all(type(s) is int for s in text):
        return tuple(text)
    raise TableError(f"{where}: durations {text!r}: write a range as '3-15' or a list [5, 10]")


def _source(spec: Mapping[str, Any], sources: Mapping[str, str], where: str) -> str:
    source = spec.get("source")
    if source not in sources:
        raise TableError(f"{where}: source {source!r} is not one of {', '.join(sources)}")
    return str(source)


def _video(
    model: str, spec: Mapping[str, Any], sources: Mapping[str, str], where: str
) -> VideoPrice:
    where = f"{where}.{model}"
    known = {"source", "note", "per_second", "per_clip", "durations", "default_mode"}
    if unknown := set(spec) - known:
        raise TableError(f"{where}: unknown keys {sorted(unknown)}")
    source = _source(spec, sources, where)
    if ("per_second" in spec) == ("per_clip" in spec):
        raise TableError(f"{where}: give per_second or per_clip, one of them")
    per_second = {
        str(k): _amount(v, f"{where}.per_second.{k}") for k, v in spec.get("per_second", {}).items()
    }
    per_clip = {
        str(k): {int(s): _amount(v, f"{where}.per_clip.{k}.{s}") for s, v in row.items()}
        for k, row in spec.get("per_clip", {}).items()
    }
    durations = _seconds(spec["durations"], where) if "durations" in spec else (5, 10)
    default_mode = str(
        spec.get("default_mode", "flat" if "flat" in (per_clip or per_second) else "std")
    )
    price = VideoPrice(model, source, per_second, per_clip, durations, default_mode)
    if default_mode not in price.modes:
        raise TableError(f"{where}: default_mode {default_mode!r} has no price")
    return price


def _per_image(value: Any, where: str) -> dict[str, Fraction]:
    if isinstance(value, Mapping):
        return {str(res): _amount(v, f"{where}.{res}") for res, v in value.items()}
    units = _amount(value, where)
    return dict.fromkeys(DEFAULT_RESOLUTIONS, units)


def _image(model: str, spec: Mapping[str, Any], sources: Mapping[str, str]) -> ImagePrice:
    where = f"images.{model}"
    if unknown := set(spec) - {"source", "note", "text", "reference"}:
        raise TableError(f"{where}: unknown keys {sorted(unknown)}")
    text = _per_image(spec["text"], f"{where}.text")
    reference = _per_image(spec["reference"], f"{where}.reference")
    if list(text) != list(reference):
        raise TableError(f"{where}: text and reference must list the same resolutions")
    return ImagePrice(model, _source(spec, sources, where), text, reference)


def parse_table(raw: Mapping[str, Any]) -> PriceTable:
    """Check and build a table from its YAML mapping; :class:`TableError` names what is wrong."""
    if raw.get("version") != 1:
        raise TableError(f"version {raw.get('version')!r}: this reader knows version 1")
    sources = {str(k): str(v) for k, v in raw["sources"].items()}
    profiles = {
        name: Profile(
            name=name,
            prompt_limit=int(spec["prompt_limit"]),
            negative_prompt_limit=int(spec["negative_prompt_limit"]),
            bills_as_pro=frozenset(spec.get("bills_as_pro", [])),
        )
        for name, spec in raw["profiles"].items()
    }
    for name, spec in raw["profiles"].items():
        _source(spec, sources, f"profiles.{name}")
    return PriceTable(
        sources=sources,
        video={m: _video(m, s, sources, "video") for m, s in raw["video"].items()},
        omni={m: _video(m, s, sources, "omni") for m, s in raw["omni"].items()},
        multi_image={
            m: _video(m, s, sources, "multi_image") for m, s in raw.get("multi_image", {}).items()
        },
        images={m: _image(m, s, sources) for m, s in raw["images"].items()},
        profiles=profiles,
    )


@lru_cache(maxsize=4)
def load_table(path: Path | None = None) -> PriceTable:
    """The table: ``prices.yaml`` beside this module, or the file at ``path``."""
    if path is None:
        text = resources.files("klingcost.testing").joinpath("prices.yaml").read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    raw = yaml.safe_load(text)
    if not isinstance(raw, Mapping):
        raise TableError("the price table must be a YAML mapping")
    return parse_table(raw)


#: The parts of the table an overlay may add to, each merged entry by entry.
_SECTIONS: Final = ("sources", "video", "multi_image", "omni", "images", "profiles")


def load_table_over(paths: tuple[Path, ...]) -> PriceTable:
    """The bundled table with each file at ``paths`` merged over it, in order.

    So that the fake can play an API that has launched a model klingcost's sheet learns from an
    overlay (``klingcost fake-server --prices``): an entry of a file (a source, a model, a
    profile) adds to the table or replaces the entry of that name whole.
    """
    text = resources.files("klingcost.testing").joinpath("prices.yaml").read_text("utf-8")
    raw: dict[str, Any] = dict(yaml.safe_load(text))
    for path in paths:
        try:
            extra = yaml.safe_load(path.read_text("utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise TableError(f"{path}: cannot read it: {exc}") from None
        if extra is None:
            continue
        if not isinstance(extra, Mapping):
            raise TableError(f"{path}: a price table overlay must be a YAML mapping")
        if unknown := set(extra) - {*_SECTIONS, "version"}:
            raise TableError(
                f"{path}: unknown keys {sorted(unknown)}; allowed: {', '.join(_SECTIONS)}"
            )
        for section in _SECTIONS:
            entries = extra.get(section) or {}
            if not isinstance(entries, Mapping):
                raise TableError(f"{path}: {section} must be a mapping of names to entries")
            raw[section] = {**raw[section], **entries}
    try:
        return parse_table(raw)
    except (KeyError, TypeError, AttributeError) as exc:
        raise TableError(
            f"{', '.join(map(str, paths))}: an entry lacks a key or has the wrong shape: {exc}"
        ) from None
