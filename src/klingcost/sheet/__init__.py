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
``data/pricing.json`` without running pydantic's validators (issue 14: they were a fifth of
``klingcost estimate``'s start): see :func:`_frozen_sheet` for when that form is trusted.
"""

# No `from __future__ import annotations`: the sheet types' fields keep their types as objects,
# which the frozen sheet's builder reads without evaluating annotation strings (each one a
# compile() that cost more than building the whole sheet).
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache, partial
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Final, Literal, Union, get_args, get_origin

from klingcost.errors import PricingSheetError, UnknownProviderError
from klingcost.money import CURRENCY_EXPONENTS, exact

PRICING_ENV = "KLINGCOST_PRICING"
BUNDLED = "klingcost/data/pricing.yaml"
_DATA = Path(__file__).with_name("data")
# The bundled sheet as JSON, with the SHA-256 of the YAML text it was made from: reading it
# skips importing and running a YAML parser (the largest part of `klingcost estimate`'s start).
# It is used only while that hash matches the YAML beside it, so an edited sheet is never
# hidden; `python scripts/freeze_pricing.py` rewrites it, and a test keeps it current.
FROZEN = _DATA / "pricing.json"


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


@dataclass(frozen=True, slots=True, repr=False)
class _Before:
    """``BeforeValidator(func)`` without importing pydantic: pydantic asks an ``Annotated``
    marker for its schema only when it validates, so reading the frozen sheet loads no pydantic."""

    func: Callable[[Any], Any]

    def __repr__(self) -> str:  # no address: it is part of the sheet types' fingerprint
        return f"_Before({self.func.__name__})"

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable[[Any], Any]) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(self.func, handler(source))


Amount = Annotated[Fraction, _Before(_amount)]

# The sheet's types are frozen dataclasses: the bundled sheet is built from its frozen form
# without pydantic (issue 14), and any other sheet is validated into them by pydantic (see
# parse_sheet), strictly: an unknown key is refused, an amount must be exact.
_STRICT: Final = {"extra": "forbid", "arbitrary_types_allowed": True}


@dataclass(frozen=True, kw_only=True)
class Factor:
    __pydantic_config__: ClassVar = _STRICT
    factor: Amount
    source: str
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class Price:
    __pydantic_config__: ClassVar = _STRICT
    units: Amount
    source: str
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class PerUnit:
    __pydantic_config__: ClassVar = _STRICT
    amount: Amount
    source: str
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class VideoPrices:
    __pydantic_config__: ClassVar = _STRICT
    base: Price
    durations: dict[str, Factor]
    #: Factor over the base per model and mode; ``flat`` is the one price of a model without a
    #: std/pro split. Any other mode name an overlay adds is a mode the API is taken to accept.
    models: dict[str, dict[str, Factor]]
    sound: dict[str, Factor] = field(default_factory=dict)
    #: Sound with a ``voice_list`` (the voices given), in place of the ``sound`` factor.
    voice: dict[str, Factor] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class OmniPrices:
    __pydantic_config__: ClassVar = _STRICT
    per_second: Price
    pro: Factor
    video_reference: Factor


@dataclass(frozen=True, kw_only=True)
class PerSecond:
    """Units per second of one model in one mode: silent, with sound, with sound and voices, and
    with a video in ``video_list`` (omni-video). A variant left out is not offered."""

    __pydantic_config__: ClassVar = _STRICT
    silent: Price
    sound: Price | None = None
    voice: Price | None = None
    video: Price | None = None


@dataclass(frozen=True, kw_only=True)
class ImagePrices:
    __pydantic_config__: ClassVar = _STRICT
    text: Price
    reference: Price
    #: Factor per ``resolution`` value; a value not listed here is refused (it may cost more).
    resolutions: dict[str, Factor] = field(default_factory=dict)


def _durations(value: Any) -> Any:
    """``[5, 10]``, or ``"3-15"`` for every whole second from 3 to 15."""
    if isinstance(value, str):
        low, sep, high = value.partition("-")  # pragma: no mutate (one "-": rpartition is the same)
        if not sep or not (low.strip().isdigit() and high.strip().isdigit()):
            raise ValueError(f'{value!r} is not a list of seconds or a range such as "3-15"')
        first, last = int(low), int(high)
        if first > last:
            raise ValueError(f"{value!r} is an empty range")
        return list(range(first, last + 1))
    return value


Durations = Annotated[tuple[int, ...], _Before(_durations)]
Endpoint = Literal[
    "images/generations",
    "videos/text2video",
    "videos/image2video",
    "videos/multi-image2video",
    "videos/omni-video",
]


@dataclass(frozen=True, kw_only=True)
class CatalogEntry:
    """What one model takes on one endpoint. Modes, sound, voices and resolutions are allowed
    where the sheet prices them; these keys say the rest."""

    __pydantic_config__: ClassVar = _STRICT
    source: str
    note: str = ""
    #: Seconds a video may last (video endpoints): a list, or a range such as "3-15".
    durations: Durations = ()
    default_duration: int = 5
    #: The mode of a body that gives none (default: std when priced).
    default_mode: str | None = None
    #: Modes in which ``sound: on`` is allowed (default: every mode with a sound price). When
    #: given, a mode here without a sound price is valid, and pricing names the missing price.
    sound_modes: tuple[str, ...] | None = None
    camera_control: bool = False
    multi_shot: bool = False
    #: ``element_list`` on text2video/image2video (omni-video always takes elements).
    elements: bool = False
    #: omni-video: seconds a video edit (``refer_type: base``) without a duration is held at:
    #: its output follows the input video, which may be this long.
    edit_hold_seconds: int | None = None


@dataclass(frozen=True, kw_only=True)
class PromptLimits:
    __pydantic_config__: ClassVar = _STRICT
    prompt: int
    negative_prompt: int


@dataclass(frozen=True, kw_only=True)
class Provider:
    __pydantic_config__: ClassVar = _STRICT
    currency: str
    exponent: int
    per_unit: dict[Literal["video", "image"], PerUnit]
    prompt_limits: PromptLimits = PromptLimits(prompt=500, negative_prompt=200)
    #: Models this provider bills at the pro price whatever ``mode`` the body gives, each with
    #: the source that says so.
    bills_as_pro: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one model takes on one endpoint, resolved from the catalogue and the prices.

    ``modes`` is empty for a model with one price and no std/pro split. ``price_key`` names the
    part of the sheet that prices the model (for messages: the overlay key to add).
    """

    model: str
    endpoint: str
    modes: frozenset[str]
    default_mode: str | None
    durations: frozenset[int]
    default_duration: int
    sound_modes: frozenset[str]
    voice: bool
    camera_control: bool
    multi_shot: bool
    elements: bool
    edit_hold_seconds: int | None
    resolutions: frozenset[str]
    price_key: str
    source: str

    def duration_text(self) -> str:
        return _seconds_text(self.durations)


def _seconds_text(seconds: frozenset[int]) -> str:
    ordered = sorted(seconds)
    if not ordered:
        return "none"
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]} to {ordered[-1]} seconds"
    return " or ".join(f'"{s}"' for s in ordered)


@dataclass(frozen=True, kw_only=True)
class PriceSheet:
    """A validated price sheet. ``origin`` says which files it was built from."""

    __pydantic_config__: ClassVar = _STRICT
    version: Literal[1]
    sources: dict[str, str]
    catalog: dict[Endpoint, dict[str, CatalogEntry]] = field(default_factory=dict)
    video: VideoPrices
    omni: dict[str, OmniPrices]
    per_second: dict[str, dict[str, PerSecond]] = field(default_factory=dict)
    images: dict[str, ImagePrices]
    default_provider: str
    providers: dict[str, Provider]
    origin: str = BUNDLED

    def __post_init__(self) -> None:
        # Caches, not fields (never compared, dumped or validated), set once per sheet:
        # "_priced": priced job classes, filled by klingcost.pricing (a sheet is immutable, so
        # its prices are too); "_models": the resolved catalogue; "_sha256": sheet_hash's.
        object.__setattr__(self, "_priced", {})
        object.__setattr__(self, "_models", {})
        object.__setattr__(self, "_sha256", None)

    @property
    def models(self) -> dict[str, dict[str, Capabilities]]:
        """The catalogue, resolved: endpoint -> model -> :class:`Capabilities`."""
        models: dict[str, dict[str, Capabilities]] = self.__dict__["_models"]
        return models

    @property
    def priced(self) -> dict[Any, Any]:
        cache: dict[Any, Any] = self.__dict__["_priced"]
        return cache

    def provider(self, name: str | None = None) -> tuple[str, Provider]:
        chosen = name or self.default_provider
        try:
            return chosen, self.providers[chosen]
        except KeyError:
            raise UnknownProviderError(
                provider=chosen, known=sorted(self.providers), source=self.origin
            ) from None

    def model_dump(
        self, *, mode: Literal["python", "json"] = "python", exclude: set[str] | None = None
    ) -> dict[str, Any]:
        """The sheet as plain data (nested dicts; amounts as Fractions, or "n/d" text in
        ``json`` mode), in its own order: what :func:`canonical_text` sorts and writes."""
        data: dict[str, Any] = _adapter().dump_python(self, mode=mode, exclude=exclude)
        return data


def _adapter() -> Any:
    """pydantic's validator and serializer of :class:`PriceSheet`, built on first use."""
    global _ADAPTER
    if _ADAPTER is None:
        from pydantic import TypeAdapter

        _ADAPTER = TypeAdapter(PriceSheet)
    return _ADAPTER


_ADAPTER: Any = None


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
        frozen = _frozen_sheet((_DATA / "pricing.yaml").read_text(encoding="utf-8"))
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


# --- the catalogue, resolved for validation ---------------------------------------------------


_VIDEO_ENDPOINTS = ("videos/text2video", "videos/image2video")
#: Priced as clips too, but only for the models the catalogue lists there (kling-v1-6): a model
#: priced under video.models is not implied on it.
_LISTED_ONLY = ("videos/multi-image2video",)


def resolve_catalog(sheet: PriceSheet) -> dict[str, dict[str, Capabilities]]:
    """Each endpoint's models and what they take. A model the sheet prices but the catalogue
    does not list is taken on the endpoints its price is for, with the sheet's clip durations
    (O1-style omni prices: 3 to 10 s), so a price-only overlay still adds a usable model."""
    clip_seconds = tuple(int(k) for k in sheet.video.durations if k.isdigit())
    resolved: dict[str, dict[str, Capabilities]] = {
        endpoint: {}
        for endpoint in (
            "images/generations",
            *_VIDEO_ENDPOINTS,
            *_LISTED_ONLY,
            "videos/omni-video",
        )
    }
    declared: dict[tuple[str, str], CatalogEntry] = {
        (e, m): entry for e, models in sheet.catalog.items() for m, entry in models.items()
    }
    # Implied entries for priced models the catalogue leaves out.
    implied = CatalogEntry
    for model in sheet.images:
        declared.setdefault(("images/generations", model), implied(source="(its price)"))
    for model in sheet.video.models:
        for endpoint in _VIDEO_ENDPOINTS:
            declared.setdefault(
                (endpoint, model), implied(source="(its price)", durations=clip_seconds)
            )
    for model in sheet.omni:
        declared.setdefault(
            ("videos/omni-video", model),
            implied(source="(its price)", durations=tuple(range(3, 11))),
        )
    for (endpoint, model), entry in declared.items():
        resolved[endpoint][model] = _capabilities(sheet, endpoint, model, entry)
    return resolved


def _capabilities(
    sheet: PriceSheet, endpoint: str, model: str, entry: CatalogEntry
) -> Capabilities:
    modes: set[str] = set()
    sound: set[str] = set()
    voice = False
    resolutions: frozenset[str] = frozenset()
    if endpoint == "images/generations":
        price_key = f"images.{model}"
        image = sheet.images.get(model)
        if image is not None:
            resolutions = frozenset(image.resolutions)
    elif model in sheet.per_second:
        price_key = f"per_second.{model}"
        for mode, rates in sheet.per_second[model].items():
            modes.add(mode)
            if rates.sound is not None:
                sound.add(mode)
            voice = voice or rates.voice is not None
    elif endpoint == "videos/omni-video":
        price_key = f"omni.{model}"
        modes = {"std", "pro"}
    else:
        price_key = f"video.models.{model}"
        # A listed model whose price an overlay removed keeps std/pro: it is valid, and pricing
        # says which price is missing.
        modes = set(sheet.video.models.get(model, {"std": None, "pro": None})) - {"flat"}
        if model in sheet.video.sound:
            sound = set(modes) or {"flat"}
        voice = model in sheet.video.voice
    if entry.sound_modes is not None:
        # Said in the catalogue: the API takes it; a missing price is then named by pricing.
        sound = set(entry.sound_modes)
    default_mode = entry.default_mode
    if default_mode is None and modes:
        default_mode = "std" if "std" in modes else sorted(modes)[0]
    return Capabilities(
        model=model,
        endpoint=endpoint,
        modes=frozenset(modes),
        default_mode=default_mode,
        durations=frozenset(entry.durations),
        default_duration=entry.default_duration,
        sound_modes=frozenset(sound),
        voice=voice,
        camera_control=entry.camera_control,
        multi_shot=entry.multi_shot,
        elements=entry.elements,
        edit_hold_seconds=entry.edit_hold_seconds,
        resolutions=resolutions,
        price_key=price_key,
        source=entry.source,
    )


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


def bundled_sheet() -> PriceSheet:
    """The bundled sheet alone (Kling's own price list), whatever ``KLINGCOST_PRICING`` says."""
    return _load_cached(None)


# --- the canonical form: what a ledger publishes, and what a hold's hash names ---------------


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


def _bundled_data() -> dict[str, Any]:
    text = (_DATA / "pricing.yaml").read_text(encoding="utf-8")  # pragma: no mutate (ASCII)
    frozen = _frozen_data(text)  # pragma: no mutate (a fallback: the YAML gives the same data)
    if frozen is not None:
        return frozen
    return _parse_yaml(text, BUNDLED, trusted=True)  # pragma: no mutate (ours: either loader)


def _frozen_data(text: str) -> dict[str, Any] | None:
    """The frozen JSON of the bundled sheet, if it was made from exactly ``text``."""
    import hashlib
    import json

    try:
        frozen = json.loads(FROZEN.read_text(encoding="utf-8"))  # pragma: no mutate (ASCII)
    except (OSError, ValueError):
        return None
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()  # pragma: no mutate (the default)
    if not isinstance(frozen, dict) or frozen.get("yaml_sha256") != digest:
        return None
    data = frozen.get("sheet")
    return data if isinstance(data, dict) else None


def freeze_bundled_sheet() -> Path:
    """Write :data:`FROZEN` from the bundled YAML; returns its path.

    It holds the YAML's data (``sheet``, onto which an overlay merges) and, when that data is a
    valid sheet, the validated sheet itself (``validated``: :func:`canonical_text`'s data, in
    the sheet's own order) with the :func:`_models_fingerprint` of the models that validated
    it. An invalid sheet is frozen without ``validated``, so loading it validates it and says
    what is wrong (``scripts/freeze_pricing.py`` does, after writing).
    """
    import hashlib
    import json

    text = (_DATA / "pricing.yaml").read_text(encoding="utf-8")
    data = _parse_yaml(text, BUNDLED)
    yaml_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    frozen: dict[str, Any] = {"yaml_sha256": yaml_sha256, "sheet": data}
    try:
        sheet = parse_sheet(data, origin=BUNDLED)
    except PricingSheetError:
        pass  # frozen unvalidated: every load validates it, and refuses it naming the problems
    else:
        frozen = {
            "format": _FROZEN_FORMAT,
            "yaml_sha256": yaml_sha256,
            "models_sha256": _models_fingerprint(),
            "sheet": data,
            "validated": sheet.model_dump(mode="json", exclude={"origin"}),
        }
    FROZEN.write_text(json.dumps(frozen, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return FROZEN


# --- the frozen, validated bundled sheet: loaded without pydantic's validators ------------------

#: Bumped when what ``validated`` holds changes meaning in a way the fingerprint cannot see.
_FROZEN_FORMAT = 2


def _frozen_sheet(text: str) -> PriceSheet | None:
    """The bundled sheet from the validated form frozen beside ``text`` (its YAML), or None.

    That form was written by :func:`freeze_bundled_sheet` after the YAML passed
    :func:`parse_sheet`, so it is trusted, and built without validation, only while: it was
    made from exactly ``text`` (the YAML's SHA-256), in this format, by sheet models of the
    same shape as these (:func:`_models_fingerprint`: every field's name, type and default).
    Anything else (an edited YAML, a changed model, a damaged or older file, a value of a type
    the builder does not know) returns None, and the YAML's data is validated in full.
    ``tests/test_sheet_frozen.py`` proves both paths give the same sheet.
    """
    import hashlib
    import json

    try:
        frozen = json.loads(FROZEN.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(frozen, dict)
        or frozen.get("format") != _FROZEN_FORMAT
        or frozen.get("yaml_sha256") != hashlib.sha256(text.encode("utf-8")).hexdigest()
        or frozen.get("models_sha256") != _models_fingerprint()
    ):
        return None
    try:
        sheet = _build(PriceSheet, {**frozen["validated"], "origin": BUNDLED})
        assert isinstance(sheet, PriceSheet)
        sheet.models.update(resolve_catalog(sheet))
    except (_Unfrozen, KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError):
        return None
    return sheet


class _Unfrozen(Exception):
    """The frozen form holds what the builder cannot build: validate instead."""


def _sheet_types() -> list[type]:
    # Every sheet type of this module (a new one is seen without being listed anywhere).
    return [
        kind
        for kind in globals().values()
        if isinstance(kind, type) and getattr(kind, "__pydantic_config__", None) is _STRICT
    ]


def _models_fingerprint() -> str:
    """SHA-256 of every sheet type's fields: name, annotation as written, and default."""
    import dataclasses
    import hashlib

    lines = []
    for kind in sorted(_sheet_types(), key=lambda k: k.__name__):
        for item in dataclasses.fields(kind):
            if item.default is not dataclasses.MISSING:
                default = repr(item.default)
            elif item.default_factory is not dataclasses.MISSING:
                default = f"{getattr(item.default_factory, '__name__', '?')}()"
            else:
                default = "(required)"
            lines.append(f"{kind.__name__}.{item.name}: {_type_text(item.type)} = {default}")
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _type_text(kind: Any) -> str:
    """A field's type as text that no Python version spells otherwise (typing's reprs vary)."""
    origin, args = get_origin(kind), get_args(kind)
    if origin is Annotated:
        return f"{_type_text(args[0])} with {', '.join(repr(a) for a in args[1:])}"
    if origin is Literal:
        return f"Literal{list(args)!r}"
    if origin is Union or origin is UnionType:
        return " | ".join(_type_text(arg) for arg in args)
    if origin is not None:
        inner = ", ".join("..." if arg is Ellipsis else _type_text(arg) for arg in args)
        return f"{origin.__name__}[{inner}]"
    return str(getattr(kind, "__name__", repr(kind)))


def _build(annotation: Any, value: Any) -> Any:
    """``value`` (JSON of a validated sheet) as ``annotation``, without validation."""
    return _builder(annotation)(value)


@cache
def _builder(annotation: Any) -> Callable[[Any], Any]:
    """A function that builds ``annotation`` from its JSON, made once per type; it raises
    :class:`_Unfrozen` for a value of another shape. Only the shapes the sheet's types use are
    known: a sheet type, ``X | None``, ``dict``, ``tuple[X, ...]``, ``Literal``, str, int, bool
    and Fraction (an amount, frozen as "n/d" text)."""
    import dataclasses

    if getattr(annotation, "__pydantic_config__", None) is _STRICT:
        kind: Any = annotation
        types: dict[str, Any] = {item.name: item.type for item in dataclasses.fields(kind)}
        fields = {name: _builder(field_type) for name, field_type in types.items()}

        def sheet_type(value: Any) -> Any:
            if type(value) is not dict:
                raise _Unfrozen(kind.__name__)
            built = {}
            for key, item in value.items():
                build = fields.get(key)
                if build is None:
                    raise _Unfrozen(f"{kind.__name__}.{key}")
                built[key] = build(item)
            return kind(**built)

        return sheet_type
    if annotation is Fraction:
        return _fraction
    if annotation in (str, int, bool):
        return partial(_exactly, annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:  # an amount, durations: the marker only validates
        return _builder(args[0])
    if origin is Literal:
        return partial(_one_of, args)
    if (origin is Union or origin is UnionType) and len(args) == 2 and type(None) in args:
        inner = _builder(next(arg for arg in args if arg is not type(None)))
        return lambda value: None if value is None else inner(value)
    if origin is dict:
        key, item = _builder(args[0]), _builder(args[1])
        return lambda value: {key(k): item(v) for k, v in _exactly(dict, value).items()}
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _builder(args[0])
        return lambda value: tuple(item(v) for v in _exactly(list, value))
    raise _Unfrozen(repr(annotation))


def _fraction(value: Any) -> Fraction:
    if type(value) is not str:
        raise _Unfrozen(f"{value!r} is not an amount")
    return Fraction(value)


def _exactly(kind: type, value: Any) -> Any:
    if type(value) is not kind:
        raise _Unfrozen(f"{value!r} is not {kind.__name__}")
    return value


def _one_of(allowed: tuple[Any, ...], value: Any) -> Any:
    if not any(type(value) is type(choice) and value == choice for choice in allowed):
        raise _Unfrozen(f"{value!r} is not one of {allowed}")
    return value


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


def _parse_yaml(text: str, origin: str, *, trusted: bool = False) -> dict[str, Any]:
    import yaml  # loaded only when a sheet is read, to keep `import klingcost` light

    # The bundled sheet is ours, so libyaml parses it (~10x faster: it was half the start of
    # `klingcost estimate`); a user's file keeps the pure-Python parser, whose recursion
    # limit turns a hostile nesting into an error where libyaml's C stack could overflow.
    # (Either loader reads the bundled sheet to the same data: only the speed differs.)
    fast = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # pragma: no mutate (see above)
    loader = fast if trusted else yaml.SafeLoader
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise PricingSheetError(source=origin, problems=[f"not valid YAML: {exc}"]) from None
    except RecursionError:  # PyYAML composes and constructs nested nodes recursively
        raise PricingSheetError(source=origin, problems=["(top): nested too deeply"]) from None
    except ValueError as exc:  # an integer past 4,300 digits, a date like 2026-13-45
        problem = "an integer of over 4,300 digits" if "digits" in str(exc) else str(exc)
        raise PricingSheetError(source=origin, problems=[f"not valid YAML: {problem}"]) from None
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
