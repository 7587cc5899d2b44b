"""The price sheet: loading, overlaying and strictly validating ``pricing.yaml``.

The bundled sheet ships inside the package (``klingcost/data/pricing.yaml``). A user may overlay
their own file on it (merged key by key) or replace it (``replace: true`` at the top of their
file), with ``--pricing FILE`` or ``KLINGCOST_PRICING``. Whatever is loaded is validated before
use: amounts are integers or quoted exact decimals or fractions (a YAML float is refused, since
``1.10`` has already become ``1.1``), every price is positive and names a known source, unknown
keys are refused, and an error names the file, the key path and the problem.

A missing or unreadable sheet fails loudly; nothing falls back in silence.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from fractions import Fraction
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, PrivateAttr, ValidationError

from klingcost.errors import PricingSheetError, UnknownProviderError
from klingcost.money import CURRENCY_EXPONENTS, exact

PRICING_ENV = "KLINGCOST_PRICING"
BUNDLED = "klingcost/data/pricing.yaml"


def _amount(value: Any) -> Fraction:
    if isinstance(value, float):
        raise ValueError(f'{value!r} is a YAML float; quote it ("{value}") or use an integer')
    if not isinstance(value, int | str) or isinstance(value, bool):
        raise ValueError(f"{value!r} is not an amount; write an integer or a quoted decimal")
    try:
        amount = exact(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    if amount <= 0:
        raise ValueError(f"{value!r} is not positive; every price and factor must be above 0")
    return amount


Amount = Annotated[Fraction, BeforeValidator(_amount)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Factor(_Strict):
    factor: Amount
    source: str
    note: str = ""


class Price(_Strict):
    units: Amount
    source: str
    note: str = ""


class PerUnit(_Strict):
    amount: Amount
    source: str
    note: str = ""


class VideoPrices(_Strict):
    base: Price
    durations: dict[str, Factor]
    models: dict[str, dict[Literal["std", "pro", "flat"], Factor]]
    sound: dict[str, Factor] = {}


class OmniPrices(_Strict):
    per_second: Price
    pro: Factor
    video_reference: Factor


class ImagePrices(_Strict):
    text: Price
    reference: Price


class PromptLimits(_Strict):
    prompt: int
    negative_prompt: int


class Provider(_Strict):
    currency: str
    exponent: int
    per_unit: dict[Literal["video", "image"], PerUnit]
    prompt_limits: PromptLimits = PromptLimits(prompt=500, negative_prompt=200)
    #: Models this provider bills at the pro price whatever ``mode`` the body gives, each with
    #: the source that says so.
    bills_as_pro: dict[str, str] = {}


class PriceSheet(_Strict):
    """A validated price sheet. ``origin`` says which files it was built from."""

    version: Literal[1]
    sources: dict[str, str]
    video: VideoPrices
    omni: dict[str, OmniPrices]
    images: dict[str, ImagePrices]
    default_provider: str
    providers: dict[str, Provider]
    origin: str = BUNDLED
    # Priced job classes, filled by klingcost.pricing: a sheet is immutable, so its prices are too.
    _priced: dict[Any, Any] = PrivateAttr(default_factory=dict)

    @property
    def priced(self) -> dict[Any, Any]:
        # The private slot itself: pydantic's __getattr__ for `self._priced` costs ~1.3 us a call.
        private = self.__pydantic_private__
        assert private is not None
        cache: dict[Any, Any] = private["_priced"]
        return cache

    def provider(self, name: str | None = None) -> tuple[str, Provider]:
        chosen = name or self.default_provider
        try:
            return chosen, self.providers[chosen]
        except KeyError:
            raise UnknownProviderError(
                provider=chosen, known=sorted(self.providers), source=self.origin
            ) from None


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


def parse_sheet(data: Mapping[str, Any], *, origin: str) -> PriceSheet:
    """Validate a sheet already read from YAML; ``origin`` names it in errors."""
    try:
        sheet = PriceSheet.model_validate({**data, "origin": origin})
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {_reason(error)}"
            for error in exc.errors(include_url=False)  # pragma: no mutate (the url is never read)
        ]
        raise PricingSheetError(source=origin, problems=problems) from None
    _check_references(sheet)
    return sheet


def _reason(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "missing"
    return str(error["msg"]).removeprefix("Value error, ")


def _check_references(sheet: PriceSheet) -> None:
    problems = []
    for path, source in _sources_used(sheet):
        if source not in sheet.sources:
            problems.append(f"{path}.source: unknown source {source!r}; add it under sources")
    if sheet.default_provider not in sheet.providers:
        problems.append(f"default_provider: no provider {sheet.default_provider!r}")
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
    for model, omni in sheet.omni.items():
        used += [
            (f"omni.{model}.per_second", omni.per_second.source),
            (f"omni.{model}.pro", omni.pro.source),
            (f"omni.{model}.video_reference", omni.video_reference.source),
        ]
    for model, image in sheet.images.items():
        used += [(f"images.{model}.text", image.text.source)]
        used += [(f"images.{model}.reference", image.reference.source)]
    for name, provider in sheet.providers.items():
        used += [(f"providers.{name}.per_unit.{p}", u.source) for p, u in provider.per_unit.items()]
    return used


def _bundled_data() -> dict[str, Any]:
    resource = resources.files("klingcost").joinpath("data/pricing.yaml")
    # pragma: no mutate start (valid ASCII YAML: any codec reads it; its origin is never shown)
    return _parse_yaml(resource.read_text(encoding="utf-8"), BUNDLED)
    # pragma: no mutate end


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PricingSheetError(
            source=str(path), problems=["file not found"], unreadable=True
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PricingSheetError(
            source=str(path), problems=[f"cannot read: {exc}"], unreadable=True
        ) from None
    return _parse_yaml(text, str(path))


def _parse_yaml(text: str, origin: str) -> dict[str, Any]:
    import yaml  # loaded only when a sheet is read, to keep `import klingcost` light

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PricingSheetError(source=origin, problems=[f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise PricingSheetError(source=origin, problems=["(top): the sheet must be a mapping"])
    return data


def _merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
