"""Batch estimation: a JSON Lines file of jobs priced line by line, with exact totals.

A batch repeats itself: the same job, byte for byte, many times over. Each distinct line is
parsed, validated and priced once per call; a repeat reuses that result. The cache is keyed
on the whole line (every byte of the body, prompt included, so nothing that could change a
verdict is left out of the key) and lives only as long as one call, with one sheet, provider
and default endpoint: it cannot outlive or hide a changed sheet. Totals are summed per
distinct job class times its count, exactly, once at the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final

from klingcost._json import JSONInputError, loads
from klingcost.errors import _MISSING, KlingcostError, RequestValidationError
from klingcost.jobs import split_job
from klingcost.money import format_amount
from klingcost.pricing import Estimate, estimate
from klingcost.sheet import PriceSheet

#: Distinct lines remembered per call; past it the cache starts afresh (bounded memory for a
#: file of millions of different bodies, which gains nothing from it anyway).
CACHE_LINES: Final = 100_000


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One non-blank line: its number (from 1) and either its estimate or why it has none.

    ``error`` is a KlingcostError for a job that breaks a rule, or a message for a line that is
    not JSON. Lines with the same text share one (immutable) result object."""

    number: int
    estimate: Estimate | None
    error: KlingcostError | str | None


@dataclass
class BatchTotals:
    lines: int = 0
    errors: int = 0
    units: dict[str, Fraction] = field(default_factory=dict)  # per pack
    cost: Fraction = Fraction(0)
    currency: str | None = None

    @property
    def priced(self) -> int:
        return self.lines - self.errors

    def to_dict(self) -> dict[str, Any]:
        """The totals as ``klingcost estimate --json`` prints them: amounts as exact text."""
        return {
            "lines": self.lines,
            "priced": self.priced,
            "errors": self.errors,
            "units": {pack: format_amount(units) for pack, units in sorted(self.units.items())},
            "cost": format_amount(self.cost),
            "currency": self.currency or None,
        }


class BatchEstimate:
    """Iterate it for each line's :class:`BatchLine`; then :meth:`totals` sums what it saw."""

    def __init__(
        self,
        lines: Iterable[str],
        *,
        endpoint: str | None,
        sheet: PriceSheet,
        provider: str | None = None,
        strict: bool = False,
    ) -> None:
        self._lines = lines
        self._strict = strict
        self._endpoint = endpoint
        self._sheet = sheet
        self._provider = provider
        self._lines_seen = 0
        self._errors = 0
        # How many lines each priced job class took, by its Cost (one shared object per job
        # class in the sheet's cache; kept alive here, so its id stays its own): the totals,
        # summed once at the end.
        self._found: dict[int, Estimate] = {}
        self._count: dict[int, int] = {}

    def __iter__(self) -> Iterator[BatchLine]:
        cache: dict[str, tuple[Estimate | None, KlingcostError | str | None]] = {}
        by_class, count = self._found, self._count
        for number, raw in enumerate(self._lines, start=1):
            if not raw.strip():
                continue
            result = cache.get(raw)
            if result is None:
                if len(cache) >= CACHE_LINES:
                    cache.clear()
                result = cache[raw] = self._price(raw)
            found, error = result
            self._lines_seen += 1
            if found is None:
                self._errors += 1
            else:
                key = id(found.cost)
                if key in count:
                    count[key] += 1
                else:
                    by_class[key], count[key] = found, 1
            yield BatchLine(number, found, error)

    def _price(self, raw: str) -> tuple[Estimate | None, KlingcostError | str | None]:
        try:
            value = loads(raw)
        except json.JSONDecodeError as exc:
            return None, f"not JSON: {exc.msg} at column {exc.colno}"
        except JSONInputError as exc:
            return None, f"not JSON: {exc}"
        try:
            priced = estimate_job(
                value,
                endpoint=self._endpoint,
                sheet=self._sheet,
                provider=self._provider,
                strict=self._strict,
            )
            return priced, None
        except KlingcostError as exc:
            return None, exc

    def totals(self) -> BatchTotals:
        totals = BatchTotals(lines=self._lines_seen, errors=self._errors)
        for key, found in self._found.items():
            count = self._count[key]
            units = totals.units.get(found.pack, Fraction(0))
            totals.units[found.pack] = units + found.units * count
            totals.cost += found.cost.amount * count
            totals.currency = found.cost.currency
        return totals


def estimate_batch(
    lines: Iterable[str],
    *,
    endpoint: str | None = None,
    sheet: PriceSheet,
    provider: str | None = None,
    strict: bool = False,
) -> BatchEstimate:
    """Price every non-blank line of a JSON Lines batch (``text.splitlines()`` or a file).

    ``endpoint`` is for jobs that do not name their own. Nothing is read until the result is
    iterated; a bad line is reported in its :class:`BatchLine` and the others still priced.
    ``strict`` refuses every field klingcost does not know, as :func:`~klingcost.estimate` does.
    """
    return BatchEstimate(lines, endpoint=endpoint, sheet=sheet, provider=provider, strict=strict)


def estimate_job(
    job: Any,
    *,
    endpoint: str | None = None,
    sheet: PriceSheet,
    provider: str | None = None,
    strict: bool = False,
) -> Estimate:
    """Price one job as a file or a batch line gives it (a body, or ``{"endpoint": E,
    "body": {...}}``: see :func:`~klingcost.jobs.split_job`); ``endpoint`` is for a body that
    names none. A job that breaks a rule raises, as :func:`~klingcost.estimate` does."""
    job_endpoint, body = split_job(job, endpoint)
    return estimate(job_endpoint, body, sheet=sheet, provider=provider, strict=strict)


def error_dict(error: KlingcostError | str | None) -> dict[str, Any]:
    """A :class:`BatchLine`'s ``error`` as data (``klingcost estimate --json``): its message,
    every broken rule of a request with its field, value given and what is allowed, and the
    argument an error is about (``option``) when it names one."""
    if isinstance(error, str | None):  # a line that is no JSON: its message
        return {"message": error or "invalid"}
    if isinstance(error, RequestValidationError):
        return {
            "message": "; ".join(str(p) for p in error.problems),
            "problems": [
                {
                    "field": p.field,
                    "given": None if p.given is _MISSING else _jsonable(p.given),
                    "allowed": p.allowed,
                    "message": p.message,
                }
                for p in error.problems
            ],
        }
    if error.option is not None:
        return {"message": str(error), "option": error.option}
    return {"message": str(error)}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
