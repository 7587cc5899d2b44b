"""Loading the sheet: the bundled one, with overlays merged over it or replacing it.

A user may overlay their own file on the bundled sheet (merged key by key) or replace it
(``replace: true`` at the top of their file), with ``--pricing FILE`` or ``KLINGCOST_PRICING``.
A missing or unreadable sheet fails loudly; nothing falls back in silence.
"""

import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from klingcost.errors import PricingSheetError
from klingcost.sheet.frozen import _bundled_data, _frozen_bundled_sheet
from klingcost.sheet.read import _read_yaml
from klingcost.sheet.types import BUNDLED, PriceSheet
from klingcost.sheet.validate import parse_sheet

PRICING_ENV = "KLINGCOST_PRICING"


def load_sheet(path: str | os.PathLike[str] | None = None) -> PriceSheet:
    """The bundled sheet, with ``path`` (or ``$KLINGCOST_PRICING``) overlaid or replacing it.

    ``path`` may list several files joined by ``os.pathsep`` (``observed.yaml:credits.yaml``),
    applied in order: each merges over the result so far (or replaces it, with ``replace``).
    """
    chosen = os.fspath(path) if path is not None else os.environ.get(PRICING_ENV) or None
    return _load_cached(chosen)


@cache
def _load_cached(overlays: str | None) -> PriceSheet:
    # Cached by path: the CLI and the guard load a sheet once per process, not per request.
    if not overlays:
        frozen = _frozen_bundled_sheet()
        if frozen is not None:
            return frozen
    data = _bundled_data()
    origin = BUNDLED
    names = [name for name in (overlays or "").split(os.pathsep) if name]
    for overlay in names:
        extra = _read_yaml(Path(overlay))
        replace = extra.pop("replace", False)
        if not isinstance(replace, bool):
            raise PricingSheetError(
                source=overlay, problems=[f"replace: {replace!r} is not true or false"]
            )
        data = extra if replace else _merge(data, extra)
    if names:
        origin = " + ".join(names)
    return parse_sheet(data, origin=origin)


def bundled_sheet() -> PriceSheet:
    """The bundled sheet alone (Kling's own price list), whatever ``KLINGCOST_PRICING`` says."""
    return _load_cached(None)


def _merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
