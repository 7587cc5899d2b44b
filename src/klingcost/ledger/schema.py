"""The ledger's current schema, described once (spec to come in this module)."""

from __future__ import annotations

from typing import Final

#: The job class columns of ``holds``, each read from the hold's ``meta`` by ``reserve``.
CLASS_COLUMNS: Final[tuple[str, ...]] = (
    "endpoint",
    "model",
    "mode",
    "duration",
    "sound",
    "video_reference",
    "reference_image",
    "n",
)
