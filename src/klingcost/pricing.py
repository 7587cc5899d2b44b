"""The cost function: a validated request and a price sheet in, an exact estimate out.

Pure (no I/O), exact (fractions, never floats) and deterministic. An estimate says:

* ``units``: Kling's units, as ``final_unit_deduction`` will report them, from the ``pack``
  they are drawn on (``video`` or ``image``: Kling keeps separate resource packs);
* ``breakdown``: each rule applied, with its factor and its source; their product is ``units``;
* ``cost``: what the provider charges for those units, in its currency (openai-hk: credits),
  rounded **up** to the currency's minor unit (whole credits), so a hold never understates it.

How the seed's sentences fit Kling's price list: a video clip costs
``base (kling-v1, 5 s, std = 1 unit) x model-and-mode factor x duration factor x sound factor``.
The model-and-mode factor is read whole from the list (kling-v1-5 pro is 3.5, not 2 x 3.5), so
"pro mode costs 3.5x", "kling-v1-5 costs 2x" and "kling-v1-5 at 10s in pro = base x2 x3.5" all hold.
O1 is priced per second: ``0.6 units/s x 4/3 (pro) x 1.5 (video reference) x seconds``.
kling-v3 and kling-v3-omni are priced per second from a table (``per_second``): units per second of
the mode, silent, with sound, with sound and voices, or with a video reference, x seconds.
Images: ``units per image (with or without a reference image) x resolution x n``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Literal

from klingcost.errors import UnpricedRequestError
from klingcost.jobclass import JobClass
from klingcost.money import format_amount, to_minor
from klingcost.request import ValidatedRequest, validate_request
from klingcost.sheet import PriceSheet, load_sheet

Pack = Literal["video", "image"]


@dataclass(frozen=True, slots=True)
class Step:
    """One rule of a breakdown: ``factor`` (the first step's is the base price in units)."""

    rule: str
    factor: Fraction
    source: str
    note: str

    def to_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "factor": format_amount(self.factor),
            "source": self.source,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Cost:
    """What the provider charges: ``exact`` before rounding, ``minor`` after (rounded up)."""

    provider: str
    currency: str
    exponent: int
    per_unit: Fraction
    source: str
    exact: Fraction
    minor: int

    @property
    def amount(self) -> Fraction:
        return Fraction(self.minor, 10**self.exponent)


@dataclass(frozen=True, slots=True, init=False)
class Estimate:
    """The exact price of one request. Immutable; cheap to build from the sheet's cache."""

    request: ValidatedRequest
    pack: Pack
    units: Fraction
    breakdown: tuple[Step, ...]
    cost: Cost

    def __init__(
        self,
        request: ValidatedRequest,
        pack: Pack,
        units: Fraction,
        breakdown: tuple[Step, ...],
        cost: Cost,
    ) -> None:
        # One is built per estimate: the slots' own setters cost half of the frozen
        # dataclass's object.__setattr__ calls (the class stays frozen to every other caller).
        _SET_REQUEST(self, request)
        _SET_PACK(self, pack)
        _SET_UNITS(self, units)
        _SET_BREAKDOWN(self, breakdown)
        _SET_COST(self, cost)

    @property
    def endpoint(self) -> str:
        return self.request.endpoint

    @property
    def model(self) -> str:
        return self.request.model

    @property
    def credits(self) -> Fraction | None:
        """The cost in openai-hk credits, or None when the provider bills in money."""
        return self.cost.amount if self.cost.currency == "credits" else None

    def to_dict(self) -> dict[str, Any]:
        request = self.request
        credits = self.credits
        return {
            "endpoint": request.endpoint,
            "model": request.model,
            "mode": request.mode,
            "duration": request.duration,
            "sound": request.sound,
            "video_reference": request.video_reference,
            "reference_image": request.reference_image,
            "n": request.n,
            "voice": request.voice,
            "resolution": request.resolution,
            "pack": self.pack,
            "units": format_amount(self.units),
            "provider": self.cost.provider,
            "currency": self.cost.currency,
            "cost": format_amount(self.cost.amount),
            "credits": None if credits is None else format_amount(credits),
            "per_unit": format_amount(self.cost.per_unit),
            "breakdown": [step.to_dict() for step in self.breakdown],
            "warnings": list(request.warnings),
        }

    @property
    def warnings(self) -> tuple[str, ...]:
        """Fields klingcost did not know and priced as if absent."""
        return self.request.warnings


def _slot_setter(name: str) -> Callable[[Estimate, Any], None]:
    """The setter of one of :class:`Estimate`'s slots (its member descriptor's ``__set__``)."""
    setter: Callable[[Estimate, Any], None] = vars(Estimate)[name].__set__
    return setter


_SET_REQUEST = _slot_setter("request")
_SET_PACK = _slot_setter("pack")
_SET_UNITS = _slot_setter("units")
_SET_BREAKDOWN = _slot_setter("breakdown")
_SET_COST = _slot_setter("cost")


def estimate(
    endpoint: str,
    body: Mapping[str, Any],
    *,
    sheet: PriceSheet | None = None,
    provider: str | None = None,
    strict: bool = False,
) -> Estimate:
    """Validate ``body`` for ``endpoint`` and price it.

    ``sheet`` defaults to the bundled sheet with ``$KLINGCOST_PRICING`` overlaid; ``provider``
    to the sheet's default (openai-hk). Raises :class:`~klingcost.errors.RequestValidationError`
    for a body that breaks a rule. A field klingcost does not know is priced as if absent and
    named in :attr:`Estimate.warnings`; ``strict`` refuses it instead.
    """
    sheet = sheet if sheet is not None else load_sheet()
    cache = sheet.priced
    rules = cache.get(provider)  # pragma: no mutate (a miss looks them up again: the same)
    if rules is None:
        rules = cache[provider] = _provider_rules(sheet, provider)
    name, limits, as_pro = rules
    request = validate_request(
        endpoint, body, limits=limits, sheet=sheet, strict=strict, as_pro=as_pro
    )
    return price(request, sheet=sheet, provider=name)


def _provider_rules(
    sheet: PriceSheet, provider: str | None
) -> tuple[str, tuple[int, int], Mapping[str, str]]:
    """What validation needs of ``provider`` (its name, prompt limits and ``bills_as_pro``),
    kept in the sheet's cache under the provider's name (no job-class key is a string)."""
    name, profile = sheet.provider(provider)
    limits = (profile.prompt_limits.prompt, profile.prompt_limits.negative_prompt)
    return name, limits, profile.bills_as_pro


def price(
    request: ValidatedRequest, *, sheet: PriceSheet | None = None, provider: str | None = None
) -> Estimate:
    """Price an already validated request (a dictionary lookup once a job class was seen)."""
    sheet = sheet if sheet is not None else load_sheet()
    key = (request.job_key, provider)
    cache: dict[tuple[Any, ...], _Priced] = sheet.priced
    cached = cache.get(key)  # pragma: no mutate (a lookup skipped prices afresh: the same)
    if cached is None:
        cached = cache[key] = _price_job(request.job, sheet, provider)
    pack, units, breakdown, cost = cached
    return Estimate(request, pack, units, breakdown, cost)


# The job classes are few (a few hundred), so the sheet's cache of them stays tiny.
_Priced = tuple[Pack, Fraction, tuple[Step, ...], Cost]


def _price_job(request: JobClass, sheet: PriceSheet, provider: str | None) -> _Priced:
    name, profile = sheet.provider(provider)
    as_pro: list[Step] = []
    if request.mode == "std" and request.model in profile.bills_as_pro:
        # The provider charges pro for this model whatever the body says: a hold at the std
        # price would under-hold every such job (the proxy's own observed charge says pro).
        note = f"{name} bills {request.model} at the pro price, whatever the mode"
        source = profile.bills_as_pro[request.model]
        as_pro.append(Step(f"mode std given; {note}", Fraction(1), source, note))
        request = replace(request, mode="pro")
    pack, steps = _steps(request, sheet)
    steps[1:1] = as_pro  # right after the base, before the pro factor it explains
    units = _product(steps)
    rate = profile.per_unit[pack]
    exact_cost = units * rate.amount
    cost = Cost(
        provider=name,
        currency=profile.currency,
        exponent=profile.exponent,
        per_unit=rate.amount,
        source=rate.source,
        exact=exact_cost,
        minor=to_minor(exact_cost, profile.exponent),
    )
    return pack, units, tuple(steps), cost


def _steps(request: JobClass, sheet: PriceSheet) -> tuple[Pack, list[Step]]:
    """Kling's own rules for ``request``, before any provider's billing rules."""
    if request.endpoint == "images/generations":
        return "image", _image_steps(request, sheet)
    if request.model in sheet.per_second:
        return "video", _per_second_steps(request, sheet)
    if request.endpoint == "videos/omni-video":
        return "video", _omni_steps(request, sheet)
    return "video", _video_steps(request, sheet)


def kling_units(job: JobClass, sheet: PriceSheet) -> Fraction:
    """The units of ``job`` by Kling's own rules, before any provider's billing rules (what
    the sheet lists; :mod:`klingcost.listing`). Raises UnpricedRequestError when the sheet
    gives no price for it."""
    _pack, steps = _steps(job, sheet)
    return _product(steps)


def _product(steps: list[Step]) -> Fraction:
    units = Fraction(1)
    for step in steps:
        units *= step.factor
    return units


def _video_steps(request: JobClass, sheet: PriceSheet) -> list[Step]:
    video = sheet.video
    modes = video.models.get(request.model)
    mode_key = request.mode or "flat"
    if modes is None or mode_key not in modes:
        raise UnpricedRequestError(
            endpoint=request.endpoint,
            model=request.model,
            missing=f"video.models.{request.model}.{mode_key}",
        )
    base = video.base
    steps = [Step("base: kling-v1, 5 s, std", base.units, base.source, base.note)]
    mode = modes[mode_key]
    if mode.factor != 1:
        label = "one price, no std/pro" if mode_key == "flat" else mode_key
        steps.append(
            Step(f"model and mode: {request.model} {label}", mode.factor, mode.source, mode.note)
        )
    duration = video.durations.get(str(request.duration))
    if duration is None:
        raise UnpricedRequestError(
            endpoint=request.endpoint,
            model=request.model,
            missing=f"video.durations.{request.duration}",
        )
    if duration.factor != 1:
        steps.append(
            Step(f"duration: {request.duration} s", duration.factor, duration.source, duration.note)
        )
    if request.voice:
        voice = video.voice.get(request.model)
        if voice is None:
            raise UnpricedRequestError(
                endpoint=request.endpoint,
                model=request.model,
                missing=f"video.voice.{request.model}",
            )
        steps.append(Step("sound: on, with voices", voice.factor, voice.source, voice.note))
    elif request.sound:
        sound = video.sound.get(request.model)
        if sound is None:
            raise UnpricedRequestError(
                endpoint=request.endpoint,
                model=request.model,
                missing=f"video.sound.{request.model}",
            )
        steps.append(Step("sound: on", sound.factor, sound.source, sound.note))
    return steps


def _duration_step(request: JobClass, source: str) -> Step:
    if request.held_duration:
        note = (
            "a video edit without a duration follows its input video: held at the longest it "
            "can last"
        )
        return Step(
            f"duration: {request.duration} s (held)", Fraction(request.duration or 0), source, note
        )
    return Step(
        f"duration: {request.duration} s",
        Fraction(request.duration or 0),
        source,
        "priced per second",
    )


def _per_second_steps(request: JobClass, sheet: PriceSheet) -> list[Step]:
    mode = request.mode or "flat"
    rates = sheet.per_second[request.model].get(mode)
    if request.video_reference:
        variant, label = "video", "with a video reference"
    elif request.voice:
        variant, label = "voice", "sound on, with voices"
    elif request.sound:
        variant, label = "sound", "sound on"
    else:
        variant, label = "silent", "silent"
    rate = getattr(rates, variant) if rates is not None else None
    if rate is None:
        raise UnpricedRequestError(
            endpoint=request.endpoint,
            model=request.model,
            missing=f"per_second.{request.model}.{mode}.{variant}",
        )
    return [
        Step(
            f"base: {request.model} {mode}, {label}, per second", rate.units, rate.source, rate.note
        ),
        _duration_step(request, "kling-official"),
    ]


def _omni_steps(request: JobClass, sheet: PriceSheet) -> list[Step]:
    omni = sheet.omni.get(request.model)
    if omni is None:
        raise UnpricedRequestError(
            endpoint=request.endpoint, model=request.model, missing=f"omni.{request.model}"
        )
    rate = omni.per_second
    steps = [Step(f"base: {request.model} std, per second", rate.units, rate.source, rate.note)]
    if request.mode == "pro":
        steps.append(Step("mode: pro", omni.pro.factor, omni.pro.source, omni.pro.note))
    if request.video_reference:
        ref = omni.video_reference
        steps.append(Step("video reference", ref.factor, ref.source, ref.note))
    steps.append(_duration_step(request, "seed"))
    return steps


def _image_steps(request: JobClass, sheet: PriceSheet) -> list[Step]:
    image = sheet.images.get(request.model)
    if image is None:
        raise UnpricedRequestError(
            endpoint=request.endpoint, model=request.model, missing=f"images.{request.model}"
        )
    per_image = image.reference if request.reference_image else image.text
    kind = "with a reference image" if request.reference_image else "text only"
    steps = [
        Step(
            f"base: {request.model} image, {kind}",
            per_image.units,
            per_image.source,
            per_image.note,
        )
    ]
    if request.resolution is not None:
        size = image.resolutions.get(request.resolution)
        if size is None:
            raise UnpricedRequestError(
                endpoint=request.endpoint,
                model=request.model,
                missing=f"images.{request.model}.resolutions.{request.resolution}",
            )
        if size.factor != 1:
            steps.append(
                Step(f"resolution: {request.resolution}", size.factor, size.source, size.note)
            )
    if request.n != 1:
        steps.append(
            Step(
                f"n: {request.n} images", Fraction(request.n), "seed", "images are billed per image"
            )
        )
    return steps
