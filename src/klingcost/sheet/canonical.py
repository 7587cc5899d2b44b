"""The canonical form of a sheet: what a ledger publishes, and what a hold's hash names."""

from klingcost.errors import PricingSheetError
from klingcost.sheet.types import PriceSheet
from klingcost.sheet.validate import parse_sheet


def canonical_text(sheet: PriceSheet) -> str:
    """``sheet`` as canonical JSON (keys sorted, amounts as exact fractions, no origin): two
    sheets that price alike and say the same have the same text, whatever files built them."""
    import json

    data = sheet.model_dump(
        mode="json",  # pragma: no mutate (pydantic dumps a Fraction as text in python mode too)
        exclude={"origin"},
    )
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sheet_hash(sheet: PriceSheet) -> str:
    """The sha256 of :func:`canonical_text`, in hex: the name a ledger and its holds use."""
    private = sheet.__dict__
    found: str | None = private["_sha256"]  # pragma: no mutate (a cache: hashed afresh, the same)
    if found is None:
        import hashlib

        canonical = canonical_text(sheet).encode("utf-8")  # pragma: no mutate (the default)
        found = hashlib.sha256(canonical).hexdigest()
        private["_sha256"] = found  # pragma: no mutate (a cache: hashed afresh, the same)
    return found


def sheet_from_canonical(text: str, *, origin: str) -> PriceSheet:
    """A sheet from :func:`canonical_text` (as a ledger stores it), validated again."""
    import json

    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PricingSheetError(source=origin, problems=[f"not canonical JSON: {exc}"]) from None
    if not isinstance(data, dict):
        raise PricingSheetError(source=origin, problems=["(top): the sheet must be a mapping"])
    return parse_sheet(data, origin=origin)
