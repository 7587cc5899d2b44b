"""The ledger's values: a hold and its states, an event of the log, a published price sheet,
a discrepancy found by :meth:`~klingcost.ledger.Ledger.check`, and :data:`KEEP`. A hold's
job class is :mod:`klingcost.jobclass`'s (stored in its columns as ``columns_of_meta`` says)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Final, Literal

from klingcost.budgets import Alert, HoldAmounts
from klingcost.errors import InvalidAmountError
from klingcost.jobclass import COLUMNS, JobClass, columns_of_meta
from klingcost.money import CURRENCY_EXPONENTS

HoldState = Literal["held", "submitted", "unknown", "settled", "voided"]
HOLD_STATES: Final[tuple[HoldState, ...]] = ("held", "submitted", "unknown", "settled", "voided")
OPEN_STATES: Final[frozenset[str]] = frozenset({"held", "submitted", "unknown"})
MetaValue = str | int | None


def _meta_json(meta: Mapping[str, MetaValue] | None) -> str:
    """``meta`` as the hold stores it (sorted, compact JSON); each value a str, int or None."""
    if not meta:
        return "{}"
    for name, value in meta.items():
        if not isinstance(name, str) or not (
            value is None or (isinstance(value, str | int) and not isinstance(value, bool))
        ):
            raise InvalidAmountError(
                f"hold meta must map names to str, int or None (given {name!r}: {value!r})"
            )
    return json.dumps(dict(meta), separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class Hold:
    id: int
    key: str
    team: str
    state: HoldState
    estimate: HoldAmounts
    reserved_at: datetime
    updated_at: datetime
    task_id: str | None = None
    units_milli: int | None = None
    cost_minor: int | None = None
    variance_units_milli: int | None = None
    variance_cost_minor: int | None = None
    raw_deduction: str | None = None
    reason: str | None = None
    meta: Mapping[str, MetaValue] = field(default_factory=dict)
    alerts: tuple[Alert, ...] = ()
    #: At settlement: how ``raw_deduction`` parsed (``ok``, ``absent``, ``zero``, ``malformed``,
    #: ``negative`` or ``absurd``) and the task's final status, when the settler said.
    deduction_flag: str | None = None
    task_status: str | None = None
    #: The sha256 of the price sheet the hold was priced with (see :meth:`Ledger.reserve`).
    sheet_sha256: str | None = None
    #: The proxy key that placed it (:mod:`klingcost.keys`), None for any other caller.
    key_id: str | None = None

    @property
    def is_open(self) -> bool:
        """Still counting against its budgets as held: held, submitted or unknown."""
        return self.state in OPEN_STATES

    @property
    def endpoint(self) -> str | None:
        """The API path the job was sent to (``/v1/videos/text2video``), as the guard recorded
        it; None for a hold placed without one."""
        endpoint = self.meta.get("endpoint")
        return endpoint if isinstance(endpoint, str) else None

    @property
    def job_class(self) -> dict[str, MetaValue]:
        """What fixes the job's price (endpoint, model, mode, duration, sound,
        video_reference, reference_image, n), as the hold's columns store it: the integer
        fields as ints, the others as text, None where the hold does not say."""
        return dict(zip(COLUMNS, columns_of_meta(self.meta), strict=True))

    @property
    def job(self) -> JobClass | None:
        """The job class, typed (:class:`klingcost.jobclass.JobClass`); None for a hold
        reserved without one."""
        return JobClass.from_row(self.job_class)

    @property
    def cost_exponent(self) -> int:
        """The minor unit of ``cost_minor`` and the estimate's cost (10^-exponent of the
        currency): the pricer's when the hold was just reserved with it, else the one
        klingcost knows for the currency (0, amounts in minor units, for one it does not)."""
        exponent = self.estimate.exponent
        if exponent is not None:
            return exponent
        return CURRENCY_EXPONENTS.get(self.estimate.currency, 0)


@dataclass(frozen=True, slots=True)
class PublishedSheet:
    """A version of the price sheet a ledger publishes (``klingcost pricing publish``)."""

    version: int
    sha256: str
    origin: str
    published_at: str
    #: The sheet as canonical JSON (:func:`klingcost.sheet.canonical_text`).
    canonical: str


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """A running balance (or a hold) that does not agree with the entries."""

    what: str
    budget: str | None = None
    period_key: str | None = None
    recorded: int | None = None
    expected: int | None = None
    hold_id: int | None = None
    #: Found by the database's own check of its storage (SQLite's quick_check): the file is
    #: damaged, and nothing read from it can be trusted.
    damaged: bool = False

    def __str__(self) -> str:
        where = " ".join(
            part
            for part in (
                f"budget {self.budget!r}" if self.budget else "",
                f"period {self.period_key}" if self.period_key else "",
                f"hold {self.hold_id}" if self.hold_id is not None else "",
            )
            if part
        )
        numbers = (
            f": recorded {self.recorded}, entries say {self.expected}"
            if self.recorded is not None or self.expected is not None
            else ""
        )
        return f"{self.what} {where}{numbers}".rstrip()


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    at: datetime
    kind: str
    hold_id: int | None
    team: str | None
    data: Mapping[str, Any]


class Keep(Enum):
    """The default of :meth:`Ledger.set_budget`'s fields: keep the current value (or, for a
    new budget, take the default). Distinct from None, which ``parent=None`` means."""

    KEEP = "keep"


#: Leave this field of a budget as it is.
KEEP: Final = Keep.KEEP
