"""The deduction verdict: what ``final_unit_deduction`` says, and whether to book it.

This is the one place that decides whether the API's figure for a task is trusted. Parsing
(:func:`parse_deduction`) turns the text into a :class:`Deduction` without trusting it;
:func:`decide` turns a task's final status and its deduction into a :class:`Decision` (book
the API's figure, book the estimate instead, void, or wait). Pure: no I/O, no httpx, sqlite3
or click; the settler (:mod:`klingcost.settlement`) applies the decision to the ledger.

**Plausible** means: the figure lies within what Kling lists for the request's *shape* (its
endpoint, duration and ``n``), across every model, mode and option of the sheets given (the
bundled sheet, which is Kling's own list, and the sheet the ledger publishes), widened by
:data:`MARGIN` on either side. What a sheet lists is priced by :mod:`klingcost.pricing` itself
over every job class the sheet's catalogue takes (:func:`klingcost.listing.listed_units`), so
a model, mode, duration, sound, voice or resolution the sheet prices is in the range the day
it is priced, and no second table can fall behind the sheet. The judgement does not rest on
the estimate: an overlay that priced a job at 0.001 units cannot make the API's real "7" look
absurd, and a figure of 9.86x the estimate is not refused when Kling lists such a price for
that shape (a wrong model, mode or sound factor in a sheet is exactly that far off).

* A plausible figure is **booked**, however far from the estimate; when it is more than
  :data:`DRIFT_FACTOR` times above or below the estimate the decision says ``drift``, and the
  ledger alerts the budgets the hold counts against.
* An implausible figure (outside the listed range, over the cap, or an exponent no charge
  has) is **not booked**. The task is settled at its estimate brought into the listed range
  (:meth:`Listed.clamp`): the estimate is what the hold was admitted at, and the clamp keeps
  a sheet that priced the job outside Kling's list (0.001 units) from being booked either.
  For a figure *below* the range that is the higher of the two (booking the low figure would
  understate the spending); for a figure *above* it, booking it would wreck a budget over one
  bad number that no listed price comes near, so the flagged figure is left for a person
  (``klingcost reconcile`` lists it; ``--strict`` fails on it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import TYPE_CHECKING, Final, Literal, get_args

if TYPE_CHECKING:  # only for types: the sheet is passed in, never loaded here
    from klingcost.sheet import PriceSheet

DeductionFlag = Literal["ok", "absent", "zero", "malformed", "negative", "absurd"]
DEDUCTION_FLAGS: Final[tuple[str, ...]] = get_args(DeductionFlag)

#: A single task deducting more units than this is flagged ``absurd`` whatever its shape
#: (Kling's dearest clip, kling-v3-omni 4k with a video reference at 15 s, is 67.5 units; a
#: 9-image kling-v3-omni task at 4k is 144 image units).
DEFAULT_DEDUCTION_CAP: Final = Fraction(1000)

#: How far outside the listed range a figure may lie and still be plausible, as a share of the
#: range's ends: 1/4 below its lowest and 1/4 above its highest price. It absorbs a price list
#: that moved since the sheet was written (Kling's changes have been steps of 1.5-2.5x within a
#: tier, which the range across models already spans) and rounding of fractional units (O1's
#: 0.6 units per second); it does not absorb an order of magnitude.
MARGIN: Final = Fraction(1, 4)

#: A booked figure more than this many times above or below the estimate is flagged ``drift``
#: and alerted: a wrong tier, mode or duration factor in the sheet is 1.5-10x.
DRIFT_FACTOR: Final = 2

#: Images per request at most (Kling's ``n`` is 1 to 9): the range of an unknown ``n``.
MAX_IMAGES: Final = 9
_IMAGE_ENDPOINT: Final = "images/generations"
_OMNI_ENDPOINT: Final = "videos/omni-video"
_CLIP_ENDPOINTS: Final = ("videos/text2video", "videos/image2video", "videos/multi-image2video")


# --- parsing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deduction:
    """What the API says a task deducted (``final_unit_deduction``), parsed but not judged.

    ``raw`` is the text as sent (None when the field was absent or null); ``units`` the exact
    amount when the text is a number; ``flag``:

    * ``ok``: a positive amount at most the cap;
    * ``absent``: no field, null or an empty string (tasks paid from cash balance, or not done);
    * ``zero``: the API says nothing was deducted;
    * ``malformed``: not a plain decimal number (``units`` is None);
    * ``negative``: below zero (``units`` kept, unless its exponent is absurd);
    * ``absurd``: above the cap (``units`` kept, unless its exponent is absurd, e.g. "1e999999").
    """

    raw: str | None
    units: Fraction | None
    flag: DeductionFlag

    @property
    def trusted(self) -> bool:
        """True when ``units`` parsed as a bookable number (``ok`` or ``zero``)."""
        return self.flag in ("ok", "zero")


# Digits and exponent are bounded before any number is built: "1e999999999" must not allocate
# 10**999999999, and a 10,000-digit string must not be parsed at all.
_NUMBER: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d{1,9}))?")
_MAX_DEDUCTION_TEXT: Final = 64
_MAX_EXPONENT: Final = 1000


def parse_deduction(value: object, *, cap: Fraction = DEFAULT_DEDUCTION_CAP) -> Deduction:
    """Parse ``final_unit_deduction`` (documented as a string) without trusting it.

    >>> parse_deduction("4")
    Deduction(raw='4', units=Fraction(4, 1), flag='ok')
    >>> parse_deduction("1e100").flag, parse_deduction("abc").flag, parse_deduction(None).flag
    ('absurd', 'malformed', 'absent')
    >>> parse_deduction("NaN").flag, parse_deduction("1e999999999").flag
    ('malformed', 'absurd')
    """
    if value is None:
        return Deduction(None, None, "absent")
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        return Deduction(_as_text(value), None, "malformed")
    if isinstance(value, int) and abs(value) >= 10**_MAX_DEDUCTION_TEXT:
        # str() of an int over 4,300 digits raises; nothing this long is a charge anyway
        # |value| >= 10**64 here: `<= 0` or `< 1` picks the same flag
        flag: DeductionFlag = "negative" if value < 0 else "absurd"  # pragma: no mutate (above)
        return Deduction("(an integer of over 64 digits)", None, flag)
    # str() of a str is itself: dropping the test changes nothing
    raw = value if isinstance(value, str) else _decimal_text(value)  # pragma: no mutate (above)
    text = raw.strip()
    if not text:
        return Deduction(raw, None, "absent")
    match = _NUMBER.fullmatch(text) if len(text) <= _MAX_DEDUCTION_TEXT else None
    if match is None:
        return Deduction(raw, None, "malformed")
    exponent = int(match.group(1) or 0)  # pragma: no mutate (0 or 1: both pass the bound)
    if abs(exponent) > _MAX_EXPONENT:
        number = Decimal(text)  # a Decimal keeps the exponent as a number: no huge int here
        if number == 0:
            return Deduction(raw, Fraction(0), "zero")
        # 1e-1001 of a unit: no real deduction looks like that (|exponent| > 1000 here, so
        # `<= 0` or `< 1` is the same test)
        if exponent < 0:  # pragma: no mutate (above)
            return Deduction(raw, None, "malformed")
        # not 0 (returned above) and |number| > 1: `<= 0` or `< 1` picks the same flag
        return Deduction(raw, None, "negative" if number < 0 else "absurd")  # pragma: no mutate
    units = Fraction(Decimal(text))
    if units == 0:
        return Deduction(raw, units, "zero")
    if units < 0:  # pragma: no mutate (0 returned above: `<= 0` is the same)
        return Deduction(raw, units, "negative")
    if units > cap:
        return Deduction(raw, units, "absurd")
    return Deduction(raw, units, "ok")


def _decimal_text(value: int | Decimal) -> str:
    try:
        return str(value)
    except (ValueError, InvalidOperation):  # pragma: no cover - ints are bounded above
        return "(unprintable)"  # pragma: no mutate (unreachable, see above)


def _as_text(value: object) -> str:
    import json  # only for a value of the wrong type, which is rare

    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text


# --- what Kling lists for a shape -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shape:
    """What fixes the *range* of a task's price without its model or mode: the endpoint, the
    duration in seconds and the number of images. ``None`` where unknown (any)."""

    endpoint: str | None = None
    duration: int | None = None
    n: int | None = None
    pack: str | None = None

    @classmethod
    def from_meta(cls, meta: Mapping[str, object], pack: str | None = None) -> Shape:
        """The shape a hold's ``meta`` records (the guard writes endpoint, duration and n)."""
        endpoint = meta.get("endpoint")
        return cls(
            endpoint=endpoint if isinstance(endpoint, str) else None,
            duration=_small_int(meta.get("duration")),
            n=_small_int(meta.get("n")),
            pack=pack,
        )


def _small_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value <= 3600 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 4:
        return _small_int(int(value))
    return None


@dataclass(frozen=True, slots=True)
class Listed:
    """The lowest and highest unit charge the sheets list for a shape (``low`` <= ``high``)."""

    low: Fraction
    high: Fraction

    def plausible(self, units: Fraction) -> bool:
        """Within the range widened by :data:`MARGIN` on either side."""
        return self.low * (1 - MARGIN) <= units <= self.high * (1 + MARGIN)

    def clamp(self, units: Fraction) -> Fraction:
        """``units`` brought into the listed range."""
        return min(max(units, self.low), self.high)

    def describe(self) -> str:
        return f"{_num(self.low)} to {_num(self.high)} units"


def _num(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    quotient = Decimal(value.numerator) / Decimal(value.denominator)
    text = format(quotient, "f")  # pragma: no mutate ("F" differs only for NaN and infinity)
    return text.rstrip("0")  # pragma: no mutate (an exact quotient has no trailing zeros)


def listed_range(shape: Shape, sheets: Sequence[PriceSheet]) -> Listed | None:
    """The range of unit charges the ``sheets`` list for ``shape``, across all their models and
    modes (and sound, voice, reference, video-reference and resolution options), as
    :mod:`klingcost.pricing` prices them; None when they list none. Cached per sheet."""
    prices: list[Fraction] = []
    for sheet in sheets:
        prices += _prices(sheet, shape)
    if not prices:
        return None
    return Listed(min(prices), max(prices))


def _endpoints(shape: Shape) -> tuple[str, ...]:
    known = (_IMAGE_ENDPOINT, *_CLIP_ENDPOINTS, _OMNI_ENDPOINT)
    if shape.endpoint in known:
        return (shape.endpoint,)
    if shape.pack == "image":
        return (_IMAGE_ENDPOINT,)
    if shape.pack == "video":
        return (*_CLIP_ENDPOINTS, _OMNI_ENDPOINT)
    return known


def _prices(sheet: PriceSheet, shape: Shape) -> list[Fraction]:
    # The listing is priced by klingcost.pricing over the sheet's whole catalogue, once per
    # sheet: a model, mode, duration, sound, voice or resolution the sheet prices is listed.
    from klingcost.listing import listed_units  # pricing loads the request models: only here

    listing = listed_units(sheet)
    prices: list[Fraction] = []
    for endpoint in _endpoints(shape):
        if endpoint == _IMAGE_ENDPOINT:
            span = listing.get((endpoint, None))
            if span is not None:
                fewest, most = (shape.n, shape.n) if shape.n is not None else (1, MAX_IMAGES)
                low, high = span[0] * fewest, span[1] * most
                prices += [low, high]  # pragma: no mutate (images come first: `=` is the same)
        else:
            span = listing.get((endpoint, shape.duration))
            if span is not None:
                prices += span
    return prices


# --- the verdict ----------------------------------------------------------------------------

Action = Literal["settle", "void", "pending"]
#: ``booked``: the API's figure; ``estimate``: the estimate (kept in range), because the
#: figure is absent, zero, malformed or implausible; ``void``/``pending``: nothing booked.
Basis = Literal["booked", "estimate", "void", "pending"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a hold once its task reports: the units to book and why."""

    action: Action
    basis: Basis
    #: The flag stored with the settlement (``ok`` when the API's figure was booked; ``absurd``
    #: for a figure outside the listed range as well as over the cap).
    flag: DeductionFlag
    units: Fraction | None = None
    #: Booked, but more than :data:`DRIFT_FACTOR` x away from the estimate: alert the owners.
    drift: bool = False
    #: A number that was not booked because nothing Kling lists for the shape comes near it.
    implausible: bool = False
    note: str = ""

    @property
    def verdict(self) -> str:
        """One word for events and reports: ok, drift, implausible, estimate, void, pending."""
        if self.drift:
            return "drift"
        if self.implausible:
            return "implausible"
        if self.basis == "booked":
            return "ok"
        return self.basis


def judge(deduction: Deduction, listed: Listed | None) -> tuple[DeductionFlag, bool]:
    """``(flag, implausible)``: the parse flag, turned ``absurd`` when the figure lies outside
    ``listed`` (widened by :data:`MARGIN`)."""
    if deduction.flag == "absurd":  # over the cap, or an exponent no charge has
        return "absurd", True
    if deduction.flag != "ok" or deduction.units is None or listed is None:
        return deduction.flag, False
    if listed.plausible(deduction.units):
        return "ok", False
    return "absurd", True


def drifted(units: Fraction, estimate: Fraction) -> bool:
    """More than :data:`DRIFT_FACTOR` times above or below ``estimate``."""
    if estimate <= 0:  # pragma: no mutate (booked units are positive: `< 0` is the same)
        return units > 0
    return units > estimate * DRIFT_FACTOR or units * DRIFT_FACTOR < estimate


def decide(
    status: str,
    deduction: Deduction,
    *,
    estimate: Fraction,
    listed: Listed | None,
    status_msg: str = "",
) -> Decision:
    """The one rule book for a task's final report (see the module's doc).

    ``status`` is the task's (``succeed``, ``failed``, or still running); ``estimate`` the
    hold's estimated units; ``listed`` what the sheets list for the hold's shape.

    >>> listed = Listed(Fraction(1), Fraction(20))
    >>> decide("succeed", parse_deduction("7"), estimate=Fraction(1, 1000), listed=listed).verdict
    'drift'
    >>> d = decide("succeed", parse_deduction("0.001"), estimate=Fraction(7), listed=listed)
    >>> d.verdict, d.units
    ('implausible', Fraction(7, 1))
    """
    if status not in ("succeed", "failed"):
        return Decision("pending", "pending", deduction.flag, note=f"task {status}")
    flag, implausible = judge(deduction, listed)
    if flag == "ok" and deduction.units is not None:
        units = deduction.units
        drift = drifted(units, estimate)
        if status == "failed":
            note = f"failed task charged {deduction.raw} units"
        else:
            note = f"settled at final_unit_deduction {deduction.raw}"
        if drift:
            note += f"; drift: {_num(units)} units against an estimate of {_num(estimate)}"
        return Decision("settle", "booked", "ok", units, drift=drift, note=note)
    if status == "failed":
        reason = f"task failed: {status_msg}" if status_msg else "task failed"
        return Decision("void", "void", flag, implausible=implausible, note=reason)
    units = estimate if listed is None or not implausible else listed.clamp(estimate)
    why = ""
    if implausible and listed is not None:
        why = f", implausible: Kling lists {listed.describe()} for its shape"
    note = f"final_unit_deduction {flag} ({deduction.raw!r}){why}: settled at the estimate"
    if units != estimate:
        note += f" brought into the listed range ({_num(units)} units)"
    return Decision("settle", "estimate", flag, units, implausible=implausible, note=note)


__all__ = [
    "DEDUCTION_FLAGS",
    "DEFAULT_DEDUCTION_CAP",
    "DRIFT_FACTOR",
    "MARGIN",
    "Decision",
    "Deduction",
    "DeductionFlag",
    "Listed",
    "Shape",
    "decide",
    "drifted",
    "judge",
    "listed_range",
    "parse_deduction",
]
