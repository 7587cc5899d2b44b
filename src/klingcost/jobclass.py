"""The job class: what fixes the price of one Kling request, and nothing else.

Two requests of one class cost the same under one price sheet: the prompt, the hook or the image
itself do not change a price; the endpoint, model, mode, duration, sound, voices, a video or
image reference, the resolution and the number of images do. This module is the one place that
says so. Validation derives a class (:meth:`JobClass.from_request`), pricing prices one, a hold
records one in its ``meta`` and in the ``holds`` columns (:meth:`to_meta`, :meth:`to_columns`),
reports and calibration read one back (:meth:`from_row`) and calibration re-prices one through
a body of its class (:meth:`to_body`).

What a hold stores is narrower than the class: its eight :data:`COLUMNS`, the same in ``meta``
and in the columns. ``voice``, ``resolution`` and ``held_duration`` are not stored (they were
not when the columns were added), so a class read back from a hold has them at their defaults.

Pure: no I/O, no pydantic; a few hundred classes exist per sheet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from klingcost.request import ValidatedRequest

#: The job class as a hold stores it, in this order: the keys of :meth:`JobClass.to_meta` and
#: the ``holds`` columns of the same names. (Migration 0002 wrote its own frozen copy of this
#: list, as a shipped migration must; a test keeps the two equal.)
COLUMNS: Final[tuple[str, ...]] = (
    "endpoint",
    "model",
    "mode",
    "duration",
    "sound",
    "video_reference",
    "reference_image",
    "n",
)
#: The integer columns; the others hold text (``duration`` too: SQLite's column is TEXT).
INT_COLUMNS: Final = frozenset({"sound", "video_reference", "reference_image", "n"})

#: A stored value of the job class: what ``meta`` and the columns hold.
Stored = str | int | None

IMAGES: Final = "images/generations"
_OMNI: Final = "videos/omni-video"
# to_body's stand-ins: a URL is not fetched, only its shape is checked.
_PROMPT: Final = "calibration"
_IMAGE_URL: Final = "https://example.com/reference.png"
_FRAME_URL: Final = "https://example.com/first-frame.png"
_VIDEO_URL: Final = "https://example.com/ref.mp4"


@dataclass(frozen=True, slots=True)
class JobClass:
    """What fixes a request's price. Immutable and hashable (pricing caches by it).

    ``mode`` is None for a model with one price (no std/pro split), ``duration`` None for images;
    ``voice`` is sound with a voice list; ``resolution`` an image's priced resolution (None: the
    model's default); ``held_duration`` says a video edit gave no duration and is held at the
    longest its output can last (the same price as that duration given; the breakdown says it).
    """

    endpoint: str
    model: str
    mode: str | None
    duration: int | None
    sound: bool = False
    video_reference: bool = False
    reference_image: bool = False
    n: int = 1
    voice: bool = False
    resolution: str | None = None
    held_duration: bool = False

    @classmethod
    def from_request(cls, request: ValidatedRequest) -> JobClass:
        """The class of a validated request (``Estimate.request`` for an estimate)."""
        return cls(
            request.endpoint,
            request.model,
            request.mode,
            request.duration,
            request.sound,
            request.video_reference,
            request.reference_image,
            request.n,
            request.voice,
            request.resolution,
            request.held_duration,
        )

    # --- what a hold stores ------------------------------------------------------------------

    def to_meta(self) -> dict[str, Stored]:
        """The class as a hold's ``meta`` records it (and a refusal's ``job_class``): booleans
        as 0 or 1, the duration as a number."""
        return {
            "endpoint": self.endpoint,
            "model": self.model,
            "mode": self.mode,
            "duration": self.duration,
            "sound": int(self.sound),
            "video_reference": int(self.video_reference),
            "reference_image": int(self.reference_image),
            "n": self.n,
        }

    def to_columns(self) -> dict[str, Stored]:
        """The values of the ``holds`` columns, as the ledger writes them (``duration`` as text)."""
        return dict(zip(COLUMNS, columns_of_meta(self.to_meta()), strict=True))

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> JobClass | None:
        """The class a hold's ``meta`` records; None when it records none (a hold reserved
        without one)."""
        return cls.from_row({name: meta.get(name) for name in COLUMNS}) if meta else None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobClass | None:
        """The class of a stored hold, from its columns by name (a ``sqlite3.Row``, a dict, a
        hold's ``meta``). Takes the columns as stored or coalesced (``''`` and ``0`` for NULL);
        None when the hold has no class (no endpoint or model)."""
        endpoint, model = row["endpoint"], row["model"]
        if not endpoint or not model:
            return None
        duration = row["duration"]
        n = row["n"]
        try:
            return cls(
                str(endpoint),
                str(model),
                str(row["mode"]) if row["mode"] else None,
                int(duration) if duration not in (None, "") else None,
                bool(int(row["sound"] or 0)),
                bool(int(row["video_reference"] or 0)),
                bool(int(row["reference_image"] or 0)),
                int(n) if n not in (None, "") else 1,
            )
        except (TypeError, ValueError):  # a meta a library caller wrote by hand, not a class
            return None

    # --- what people read ----------------------------------------------------------------------

    @property
    def pack(self) -> str:
        """The resource pack its units are drawn on: ``image`` or ``video``."""
        return "image" if self.endpoint == IMAGES else "video"

    @property
    def label(self) -> str:
        """One line for a report: ``videos/text2video kling-v1-5 pro 10s sound``."""
        parts = [self.endpoint, self.model]
        if self.mode:
            parts.append(self.mode)
        if self.duration:
            parts.append(f"{self.duration}s")
        if self.sound:
            parts.append("voice" if self.voice else "sound")
        if self.video_reference:
            parts.append("video-ref")
        if self.reference_image:
            parts.append("ref-image")
        if self.resolution:
            parts.append(self.resolution)
        if self.pack == "image" or self.n > 1:
            parts.append(f"n={self.n}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The class in a report's JSON (reconcile's and calibrate's ``class``): booleans as
        booleans, the duration as text as the columns hold it, ``None`` where one does not
        apply; with the pack."""
        return {
            "endpoint": self.endpoint,
            "model": self.model,
            "mode": self.mode or None,
            "duration": str(self.duration) if self.duration else None,
            "sound": self.sound,
            "video_reference": self.video_reference,
            "reference_image": self.reference_image,
            "n": self.n,
            "pack": self.pack,
        }

    def sort_key(self) -> tuple[str, str, str, str, bool, bool, bool, int, str, bool, str, bool]:
        """The order reports list classes in: by endpoint, model, mode, then the duration as
        text (as the columns hold it), then the rest (``None`` sorts first)."""
        return (
            self.endpoint,
            self.model,
            self.mode or "",
            str(self.duration) if self.duration is not None else "",
            self.sound,
            self.video_reference,
            self.reference_image,
            self.n,
            self.pack,
            self.voice,
            self.resolution or "",
            self.held_duration,
        )

    # --- re-pricing a class --------------------------------------------------------------------

    def to_body(self) -> tuple[str, dict[str, Any]]:
        """``(endpoint, body)``: a request of this class, to price it with any sheet through
        validation (calibration re-prices the classes it observed this way). Its class is this
        one whenever the sheet's catalogue takes it."""
        body: dict[str, Any] = {"model_name": self.model, "prompt": _PROMPT}
        if self.endpoint == IMAGES:
            body["n"] = self.n or 1
            if self.reference_image:
                body["image"] = _IMAGE_URL
            if self.resolution is not None:
                body["resolution"] = self.resolution
            return self.endpoint, body
        if self.mode:
            body["mode"] = self.mode
        if self.endpoint == _OMNI:
            videos: dict[str, str] = {"video_url": _VIDEO_URL}
            if self.held_duration:
                videos["refer_type"] = "base"  # an edit without a duration: held
            else:
                body["duration"] = self.duration or 5
            if self.video_reference or self.held_duration:
                body["video_list"] = [videos]
            if self.reference_image:
                body["image_list"] = [{"image_url": _IMAGE_URL}]
            if self.sound:
                body["sound"] = "on"
            return self.endpoint, body
        body["duration"] = self.duration or 5
        if self.sound:
            body["sound"] = "on"
        if self.voice:
            body["voice_list"] = [{"voice_id": _PROMPT}]
        if self.endpoint == "videos/image2video":
            body["image"] = _FRAME_URL
        if self.endpoint == "videos/multi-image2video":
            body["image_list"] = [{"image": _FRAME_URL}]
        return self.endpoint, body


def columns_of_meta(meta: Mapping[str, Any] | None) -> tuple[Stored, ...]:
    """The :data:`COLUMNS` values the ledger writes for a hold's ``meta`` (any mapping a caller
    gave ``reserve``): a digit string in an integer column becomes the number (as SQLite's
    affinity does, and PostgreSQL's BIGINT needs), a number in a text column its text, a key
    left out NULL."""
    if not meta:
        return (None,) * len(COLUMNS)
    return tuple(_stored(name, meta.get(name)) for name in COLUMNS)


def _stored(name: str, value: Any) -> Any:
    if name in INT_COLUMNS:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif isinstance(value, int):
        return str(value)
    return value
