"""The price sheet's types: frozen dataclasses, one per part of ``pricing.yaml``.

pydantic validates a sheet into them (:mod:`klingcost.sheet.validate`), strictly; the bundled
sheet is built into them from its frozen form without pydantic (:mod:`klingcost.sheet.frozen`).
Nothing here imports pydantic until a sheet is validated or dumped.
"""

# No `from __future__ import annotations`: the sheet types' fields keep their types as objects,
# which the frozen sheet's builder reads without evaluating annotation strings (each one a
# compile() that cost more than building the whole sheet).
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Annotated, Any, ClassVar, Final, Literal

from klingcost.errors import UnknownProviderError
from klingcost.money import exact

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
