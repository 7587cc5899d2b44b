"""The price sheet: loading, overlaying and strictly validating ``pricing.yaml``.

The bundled sheet ships inside the package (``klingcost/data/pricing.yaml``). A user may overlay
their own file on it (merged key by key) or replace it (``replace: true`` at the top of their
file), with ``--pricing FILE`` or ``KLINGCOST_PRICING``. Whatever is loaded is validated before
use: amounts are integers or quoted exact decimals or fractions (a YAML float is refused, since
``1.10`` has already become ``1.1``), every price is positive and names a known source, unknown
keys are refused, and an error names the file, the key path and the problem.

The sheet is also the **catalogue**: which models each endpoint takes, their durations, default
mode and features (``catalog``), read by request validation and pricing alike, so an overlay that
adds a model and its prices makes it valid and priced at once. A mode, a resolution or a sound
option is allowed exactly when the sheet prices it.

A missing or unreadable sheet fails loudly; nothing falls back in silence.

The bundled sheet alone (no overlay) is loaded from its frozen, already validated form in
``data/pricing.json`` without importing pydantic (issue 14); any other sheet is validated.

One module per concept:

- :mod:`~klingcost.sheet.types`: the sheet's types (frozen dataclasses) and :class:`Capabilities`;
- :mod:`~klingcost.sheet.catalog`: the catalogue resolved into each model's capabilities;
- :mod:`~klingcost.sheet.validate`: :func:`parse_sheet`, pydantic's check and the cross checks;
- :mod:`~klingcost.sheet.read`: a sheet file's YAML, read strictly;
- :mod:`~klingcost.sheet.frozen`: ``data/pricing.json`` and the sheet built from it;
- :mod:`~klingcost.sheet.load`: :func:`load_sheet`, overlays and ``KLINGCOST_PRICING``;
- :mod:`~klingcost.sheet.canonical`: the canonical text and :func:`sheet_hash`.
"""

from klingcost.sheet.canonical import canonical_text, sheet_from_canonical, sheet_hash
from klingcost.sheet.catalog import resolve_catalog
from klingcost.sheet.frozen import FROZEN, freeze_bundled_sheet
from klingcost.sheet.load import PRICING_ENV, bundled_sheet, load_sheet
from klingcost.sheet.types import (
    BUNDLED,
    Amount,
    Capabilities,
    CatalogEntry,
    Durations,
    Endpoint,
    Factor,
    ImagePrices,
    OmniPrices,
    PerSecond,
    PerUnit,
    Price,
    PriceSheet,
    PromptLimits,
    Provider,
    VideoPrices,
)
from klingcost.sheet.validate import parse_sheet

__all__ = [
    "BUNDLED",
    "FROZEN",
    "PRICING_ENV",
    "Amount",
    "Capabilities",
    "CatalogEntry",
    "Durations",
    "Endpoint",
    "Factor",
    "ImagePrices",
    "OmniPrices",
    "PerSecond",
    "PerUnit",
    "Price",
    "PriceSheet",
    "PromptLimits",
    "Provider",
    "VideoPrices",
    "bundled_sheet",
    "canonical_text",
    "freeze_bundled_sheet",
    "load_sheet",
    "parse_sheet",
    "resolve_catalog",
    "sheet_from_canonical",
    "sheet_hash",
]
