"""Validating a sheet: pydantic's strict check of its types, then the checks across its parts.

pydantic is imported only when :func:`parse_sheet` runs: the bundled sheet alone never comes
here (it is read from its frozen form), so ``klingcost estimate`` loads no pydantic.
"""

from collections.abc import Mapping
from typing import Any

from klingcost.errors import PricingSheetError
from klingcost.money import CURRENCY_EXPONENTS
from klingcost.sheet.catalog import resolve_catalog
from klingcost.sheet.types import PriceSheet, _adapter


def parse_sheet(data: Mapping[str, Any], *, origin: str) -> PriceSheet:
    """Validate a sheet already read from YAML; ``origin`` names it in errors."""
    from pydantic import ValidationError

    try:
        sheet: PriceSheet = _adapter().validate_python({**data, "origin": origin})
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {_reason(error)}"
            for error in exc.errors(include_url=False)  # pragma: no mutate (the url is never read)
        ]
        raise PricingSheetError(source=origin, problems=problems) from None
    _check_references(sheet)
    resolved = resolve_catalog(sheet)
    problems = [
        f"catalog.{endpoint}.{model}.{key}: {value!r} is not a mode the sheet prices for it"
        f" ({', '.join(sorted(caps.modes))})"
        for endpoint, models in resolved.items()
        for model, caps in models.items()
        if caps.modes
        for key, values in (
            ("default_mode", [caps.default_mode]),
            ("sound_modes", sorted(caps.sound_modes)),
        )
        for value in values
        if value not in caps.modes
    ]
    if problems:
        raise PricingSheetError(source=origin, problems=problems)
    sheet.models.update(resolved)
    return sheet


def _reason(error: Mapping[str, Any]) -> str:
    # A sheet's types are dataclasses: pydantic names their errors otherwise than a model's,
    # so the model's words are kept (an unknown key, a mapping expected).
    if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return "unknown key"
    if error["type"] == "missing":
        return "missing"
    if error["type"] == "dataclass_type":
        name = (error.get("ctx") or {}).get("class_name", "")
        return f"Input should be a valid dictionary or instance of {name}"
    return str(error["msg"]).removeprefix("Value error, ")


def _check_references(sheet: PriceSheet) -> None:
    problems = []
    for path, source in _sources_used(sheet):
        if source not in sheet.sources:
            problems.append(f"{path}.source: unknown source {source!r}; add it under sources")
    if sheet.default_provider not in sheet.providers:
        problems.append(f"default_provider: no provider {sheet.default_provider!r}")
    for endpoint, models in sheet.catalog.items():
        for model, entry in models.items():
            where = f"catalog.{endpoint}.{model}"
            if endpoint != "images/generations" and not entry.durations:
                problems.append(f"{where}.durations: missing; list the seconds it takes")
            if entry.durations and entry.default_duration not in entry.durations:
                problems.append(
                    f"{where}.default_duration: {entry.default_duration} is not one of its "
                    "durations"
                )
            if entry.durations and min(entry.durations) < 1:
                problems.append(f"{where}.durations: seconds must be 1 or more")
            if entry.edit_hold_seconds is not None and entry.edit_hold_seconds < 1:
                problems.append(f"{where}.edit_hold_seconds: must be 1 or more")
    for name, provider in sheet.providers.items():
        if not 0 <= provider.exponent <= 9:
            problems.append(f"providers.{name}.exponent: {provider.exponent} is not 0 to 9")
        known = CURRENCY_EXPONENTS.get(provider.currency)
        if known is not None and provider.exponent != known:
            # Budgets count this currency in its ledger exponent and add costs as they are.
            problems.append(
                f"providers.{name}.exponent: {provider.currency} is kept to 10^-{known} in the "
                f"ledger; {provider.exponent} would count every cost 10^{known - provider.exponent}"
                " times off"
            )
        for model, source in provider.bills_as_pro.items():
            if source not in sheet.sources:
                problems.append(
                    f"providers.{name}.bills_as_pro.{model}: unknown source {source!r}; "
                    "add it under sources"
                )
        for pack in ("video", "image"):
            if pack not in provider.per_unit:
                problems.append(f"providers.{name}.per_unit.{pack}: missing")
    if problems:
        raise PricingSheetError(source=sheet.origin, problems=problems)


def _sources_used(sheet: PriceSheet) -> list[tuple[str, str]]:
    used = [("video.base", sheet.video.base.source)]
    used += [(f"video.durations.{k}", v.source) for k, v in sheet.video.durations.items()]
    for model, modes in sheet.video.models.items():
        used += [(f"video.models.{model}.{mode}", f.source) for mode, f in modes.items()]
    used += [(f"video.sound.{k}", v.source) for k, v in sheet.video.sound.items()]
    used += [(f"video.voice.{k}", v.source) for k, v in sheet.video.voice.items()]
    for endpoint, models in sheet.catalog.items():
        used += [(f"catalog.{endpoint}.{m}", entry.source) for m, entry in models.items()]
    for model, per_mode in sheet.per_second.items():
        for mode, rates in per_mode.items():
            for variant in ("silent", "sound", "voice", "video"):
                rate = getattr(rates, variant)
                if rate is not None:
                    used.append((f"per_second.{model}.{mode}.{variant}", rate.source))
    for model, omni in sheet.omni.items():
        used += [
            (f"omni.{model}.per_second", omni.per_second.source),
            (f"omni.{model}.pro", omni.pro.source),
            (f"omni.{model}.video_reference", omni.video_reference.source),
        ]
    for model, image in sheet.images.items():
        used += [(f"images.{model}.text", image.text.source)]
        used += [(f"images.{model}.reference", image.reference.source)]
        used += [
            (f"images.{model}.resolutions.{k}", v.source) for k, v in image.resolutions.items()
        ]
    for name, provider in sheet.providers.items():
        used += [(f"providers.{name}.per_unit.{p}", u.source) for p, u in provider.per_unit.items()]
    return used
