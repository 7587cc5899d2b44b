"""Budgets, pure: what a budget is, what a hold counts against it, and whether it fits.

No I/O here. The ledger reads budgets and balances from SQLite and asks these functions; the
decision itself ("do ``amount`` more fit, given ``posted`` and ``held``?") is a pure function
of integers, so it can be tested exhaustively.

All amounts are ints in *minor units*: credits are whole credits (exponent 0), Kling units are
thousandths (``milli-units``, exponent 3), a money currency such as ``usd`` has its own exponent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Final, Literal, get_args

from klingcost.errors import BudgetConfigError, InvalidAmountError
from klingcost.money import CURRENCY_EXPONENTS, UNIT_EXPONENT, exact, format_minor
from klingcost.periods import PERIODS, Period, Window, check_period, zone

Pack = Literal["video", "image"]
PACKS: Final[tuple[str, ...]] = get_args(Pack)

#: A budget whose unit is ``units`` counts Kling units of one resource pack.
UNITS: Final = "units"
DEFAULT_SOFT: Final = Fraction(4, 5)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,63}$")
_CURRENCY = re.compile(r"^[a-z][a-z0-9_]{0,15}$")


@dataclass(frozen=True, slots=True)
class HoldAmounts:
    """What one job may cost: Kling units (x1000) of one pack, and the provider's charge."""

    units_milli: int
    pack: Pack
    cost_minor: int
    currency: str = "credits"
    #: The minor unit of ``cost_minor`` (10^-exponent of ``currency``), when the pricer says;
    #: a budget that counts the currency in another refuses the hold rather than misadd it.
    #: Not part of equality: a hold read back from the ledger does not carry it.
    exponent: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("units_milli", "cost_minor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidAmountError(
                    f"{name} must be an int in minor units (given {value!r}); floats are refused"
                )
            if value < 0:
                raise InvalidAmountError(f"{name} cannot be negative (given {value})")
            if value > MAX_MINOR:
                raise InvalidAmountError(
                    f"{name} is past what the ledger holds, 2**63 - 1 (given {value})"
                )
        if self.pack not in PACKS:
            raise InvalidAmountError(
                f"pack must be one of {', '.join(PACKS)} (given {self.pack!r})"
            )
        if not isinstance(self.currency, str) or not _CURRENCY.match(self.currency):
            raise InvalidAmountError(f"currency must be a lowercase name (given {self.currency!r})")


@dataclass(frozen=True, slots=True)
class Budget:
    """One budget: a limit (minor units of ``unit``) per period, on a path to the root.

    ``unit`` is ``"units"`` (Kling units of ``pack``; holds of the other pack count 0) or a
    currency name such as ``"credits"``. ``soft`` is the share of the limit past which an alert
    is recorded. Construct through :func:`make_budget` to validate a definition from outside.
    """

    team: str
    limit: int
    unit: str = "credits"
    period: Period = "none"
    parent: str | None = None
    soft: Fraction = DEFAULT_SOFT
    tz: str = "UTC"
    pack: Pack | None = None
    exponent: int = field(default=0)

    @property
    def unit_label(self) -> str:
        """What the minor unit of this budget is called in messages."""
        if self.unit == UNITS:
            return f"milli-units ({self.pack})"
        return self.unit if self.exponent == 0 else f"{self.unit} minor units (1e-{self.exponent})"

    def format(self, minor: int) -> str:
        """An amount of this budget as an exact decimal in major units ('12.5')."""
        return format_minor(minor, self.exponent)


def exponent_for(unit: str, exponent: int | None = None) -> int:
    if unit == UNITS:
        return UNIT_EXPONENT
    if exponent is not None:
        return exponent
    if unit not in CURRENCY_EXPONENTS:
        known = ", ".join(sorted(CURRENCY_EXPONENTS))
        raise BudgetConfigError(
            f"unknown currency {unit!r}: give its exponent (known: units, {known})"
        )
    return CURRENCY_EXPONENTS[unit]


#: The largest amount a ledger column holds (a signed 64-bit integer, as in SQLite).
MAX_MINOR: Final = 2**63 - 1


def parse_limit(text: str | int, exponent: int) -> int:
    """A limit written in major units ('500000', '12.5') as an int of minor units, exactly."""
    try:
        amount = exact(text)
    except (TypeError, ValueError) as exc:
        raise BudgetConfigError(f"invalid limit {text!r}: {exc}") from None
    scaled = amount * 10**exponent
    if scaled.denominator != 1:
        raise BudgetConfigError(
            f"limit {text!r} has more decimals than the unit allows ({exponent} decimal places)"
        )
    return int(scaled)


def make_budget(
    team: str,
    *,
    limit: int,
    unit: str = "credits",
    period: str = "none",
    parent: str | None = None,
    soft: Fraction | str | int = DEFAULT_SOFT,
    tz: str = "UTC",
    pack: str | None = "video",
    exponent: int | None = None,
) -> Budget:
    """Validate a budget definition; ``limit`` is already in minor units. BudgetConfigError."""
    problems: list[str] = []
    if not isinstance(team, str) or not _NAME.match(team):
        problems.append(
            f"team name {team!r} must be 1-64 letters, digits or _.:@/-,"
            " starting with a letter or digit"
        )
    if parent is not None and parent == team:
        problems.append(f"budget {team!r} cannot be its own parent")
    if isinstance(limit, bool) or not isinstance(limit, int):
        problems.append(f"limit must be an int in minor units (given {limit!r})")
    elif limit < 0:
        problems.append(f"limit cannot be negative (given {limit})")
    elif limit > MAX_MINOR:
        problems.append(f"limit {limit} is too large: at most {MAX_MINOR} minor units")
    if not isinstance(unit, str) or (unit != UNITS and not _CURRENCY.match(unit)):
        problems.append(f"unit must be 'units' or a lowercase currency name (given {unit!r})")
    try:
        checked_period = check_period(period)
    except ValueError as exc:
        problems.append(str(exc))
        checked_period = "none"  # pragma: no mutate (unused: the problem raises below)
    try:
        soft_value = exact(soft)
    except (TypeError, ValueError) as exc:
        problems.append(f"soft threshold: {exc}")
        soft_value = DEFAULT_SOFT  # pragma: no mutate (unused: the problem raises below)
    else:
        if not 0 < soft_value <= 1:
            problems.append(f"soft threshold must be in (0, 1] (given {soft})")
    try:
        zone(tz)
    except ValueError as exc:
        problems.append(str(exc))
    budget_pack: Pack | None = None
    if unit == UNITS:
        if pack not in PACKS:
            problems.append(f"pack must be one of {', '.join(PACKS)} (given {pack!r})")
        else:
            budget_pack = pack  # type: ignore[assignment]
    if problems:
        raise BudgetConfigError(f"invalid budget {team!r}: " + "; ".join(problems))
    return Budget(
        team=team,
        limit=limit,
        unit=unit,
        period=checked_period,
        parent=parent,
        soft=soft_value,
        tz=tz,
        pack=budget_pack,
        exponent=exponent_for(unit, exponent),
    )


def counted(
    unit: str, pack: str | None, amounts: HoldAmounts, team: str, exponent: int | None = None
) -> int:
    """How much of ``amounts`` counts against a budget of ``unit`` and ``pack`` (minor units).

    A units budget counts the hold's units when the packs match, else 0 (only for holds from
    before :func:`counts` was checked at reserve: a new hold of the other pack is refused).
    A currency budget counts the cost, and refuses (BudgetConfigError) a hold in another
    currency, or in another minor unit of it than the budget's ``exponent``: neither can be
    added as it is.
    """
    if unit == UNITS:
        return amounts.units_milli if amounts.pack == pack else 0
    if amounts.currency != unit:
        raise BudgetConfigError(
            f"budget {team!r} counts {unit}, but the hold is priced in {amounts.currency}; "
            "a budget never mixes currencies"
        )
    if None not in (exponent, amounts.exponent) and exponent != amounts.exponent:
        raise BudgetConfigError(
            f"budget {team!r} counts {unit} to 10^-{exponent}, but the hold is priced to "
            f"10^-{amounts.exponent}; set the budget again (klingcost budget set {team} ...) "
            "or give the provider the same exponent"
        )
    return amounts.cost_minor


def counts(unit: str, pack: str | None, amounts: HoldAmounts) -> bool:
    """Whether a budget of ``unit`` and ``pack`` can count ``amounts`` at all.

    A units budget counts only its own pack: a video-units budget cannot count an image job.
    Such a job is refused at reserve (:class:`~klingcost.errors.BudgetCannotCount`) rather than
    admitted with nothing held, which would let a team spend without limit on the other pack.
    A currency budget counts either pack (:func:`counted` refuses another currency).
    """
    return unit != UNITS or amounts.pack == pack


def charge_against(budget: Budget, amounts: HoldAmounts) -> int:
    """How much of ``amounts`` counts against ``budget`` (see :func:`counted`)."""
    return counted(budget.unit, budget.pack, amounts, budget.team, budget.exponent)


def fits(limit: int, posted: int, held: int, amount: int) -> bool:
    """Whether ``amount`` more fits. A budget that true charges drove past its limit admits
    nothing, not even a hold that counts 0, until it is back under (a new period, a higher
    limit, or a settlement below its hold)."""
    return posted + held + amount <= limit


def available(limit: int, posted: int, held: int) -> int:
    """What is left; negative when a settlement charged past the limit."""
    return limit - posted - held


def share_used(limit: int, used: int) -> Fraction:
    if limit == 0:
        return Fraction(0) if used <= 0 else Fraction(1)
    return Fraction(used, limit)


def crosses_soft(limit: int, soft: Fraction, before: int, after: int) -> bool:
    """Whether going from ``before`` to ``after`` used crosses ``soft`` x ``limit`` upwards."""
    # In integers: before < soft * limit <= after, with soft = num / den.
    scaled = soft.numerator * limit
    return before * soft.denominator < scaled <= after * soft.denominator and after > 0


@dataclass(frozen=True, slots=True)
class Alert:
    """A budget crossed its soft threshold (``soft``) or, at settlement, its limit (``over``)."""

    kind: Literal["soft", "over"]
    budget: str
    period_key: str
    used: int
    limit: int

    def __str__(self) -> str:
        what = "passed its soft threshold" if self.kind == "soft" else "was charged past its limit"
        return (
            f"budget {self.budget!r} {what}: {self.used} of {self.limit} used in {self.period_key}"
        )


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A budget in one period window: what is posted, held and left."""

    budget: Budget
    window: Window
    posted: int
    held: int

    @property
    def team(self) -> str:
        return self.budget.team

    @property
    def limit(self) -> int:
        return self.budget.limit

    @property
    def used(self) -> int:
        return self.posted + self.held

    @property
    def available(self) -> int:
        return available(self.budget.limit, self.posted, self.held)

    @property
    def share_used(self) -> Fraction:
        return share_used(self.budget.limit, self.used)


__all__ = [
    "CURRENCY_EXPONENTS",
    "DEFAULT_SOFT",
    "PACKS",
    "PERIODS",
    "UNITS",
    "Alert",
    "Budget",
    "BudgetStatus",
    "HoldAmounts",
    "Pack",
    "available",
    "charge_against",
    "counted",
    "counts",
    "crosses_soft",
    "exponent_for",
    "fits",
    "make_budget",
    "parse_limit",
    "share_used",
]
