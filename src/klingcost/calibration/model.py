"""Calibration's types: what a job class was observed to cost, the multipliers fitted to
those observations, and the whole result; and how a job class is priced by a sheet."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

from klingcost.errors import KlingcostError
from klingcost.ledger.queries import StoredClass, Unclassified
from klingcost.money import format_amount
from klingcost.sheet import PriceSheet

VIDEO_ENDPOINTS: Final = frozenset({"videos/text2video", "videos/image2video"})
OMNI_ENDPOINT: Final = "videos/omni-video"
IMAGE_ENDPOINT: Final = "images/generations"


@dataclass(frozen=True, slots=True)
class Observed:
    """What one job class was really charged: the most common charge, exactly."""

    job: StoredClass
    units: Fraction
    support: int
    tasks: int
    sheet_units: Fraction | None = None

    @property
    def agrees_with_sheet(self) -> bool | None:
        return None if self.sheet_units is None else self.sheet_units == self.units

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.job.to_dict(),
            "label": self.job.label,
            "units": format_amount(self.units),
            "support": self.support,
            "tasks": self.tasks,
            "sheet_units": None if self.sheet_units is None else format_amount(self.sheet_units),
        }


@dataclass(frozen=True, slots=True)
class Multiplier:
    """One fitted multiplier of the seed's price rules, and the evidence for it."""

    name: str  # duration, pro_mode, model_tier, sound, video_reference
    scope: str  # "10 s vs 5 s", a model name
    fitted: Fraction
    sheet: Fraction | None
    support: int  # tasks in the pairs that agree with ``fitted``
    pairs: int
    consistent: bool
    basis: str = "pairs"  # or "sheet base" (no kling-v1 observation to compare with)

    @property
    def changed(self) -> bool:
        return self.sheet is not None and self.sheet != self.fitted

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scope": self.scope,
            "fitted": format_amount(self.fitted),
            "sheet": None if self.sheet is None else format_amount(self.sheet),
            "support": self.support,
            "pairs": self.pairs,
            "consistent": self.consistent,
            "basis": self.basis,
            "changed": self.changed,
        }


@dataclass(frozen=True, slots=True)
class Calibration:
    """Observed prices, fitted multipliers, and the overlay that makes the sheet match them."""

    observed: tuple[Observed, ...]
    multipliers: tuple[Multiplier, ...]
    overlay: dict[str, Any]
    reproduced: tuple[str, ...] = ()
    not_reproduced: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # classes below min_samples
    notes: tuple[str, ...] = ()
    trusted: int = 0  # trusted charges in every class, below min_samples or not

    @property
    def changes(self) -> int:
        return _count_entries(self.overlay)

    def to_dict(self) -> dict[str, Any]:
        return {
            "observed": [o.to_dict() for o in self.observed],
            "multipliers": [m.to_dict() for m in self.multipliers],
            "overlay": self.overlay,
            "reproduced": list(self.reproduced),
            "not_reproduced": list(self.not_reproduced),
            "skipped": list(self.skipped),
            "notes": list(self.notes),
            "trusted": self.trusted,
        }


def _count_entries(data: Any) -> int:
    if isinstance(data, Mapping):
        if "source" in data:
            return 1
        return sum(_count_entries(v) for k, v in data.items() if k != "sources")
    return 0


def sheet_units(job: StoredClass, sheet: PriceSheet) -> Fraction | None:
    """What ``sheet`` prices ``job``'s class at (a request of that class, priced through
    validation: :meth:`~klingcost.jobclass.JobClass.to_body`), or None when it cannot
    (unknown to it, or no class)."""
    from klingcost.pricing import estimate

    if isinstance(job, Unclassified):
        return None
    endpoint, body = job.to_body()
    try:
        return estimate(endpoint, body, sheet=sheet).units
    except KlingcostError:
        return None


__all__ = [
    "IMAGE_ENDPOINT",
    "OMNI_ENDPOINT",
    "VIDEO_ENDPOINTS",
    "Calibration",
    "Multiplier",
    "Observed",
    "sheet_units",
]
