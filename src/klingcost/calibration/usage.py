"""The usage-log import: openai-hk's usage log (rows with ``fen``: credits charged,
``yufen``: credits left, ``model`` and ``reqid``) stored in the ledger, matched to holds, and
the credits per unit the proxy really charges learned from it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

from klingcost import _text
from klingcost._json import JSONInputError, loads
from klingcost.calibration.overlay import (
    OBSERVED_SOURCE,
    check_write_target,
    discard_staged,
    publish_overlay,
    stage_overlay,
    with_sources,
)
from klingcost.errors import CalibrationError
from klingcost.ledger import Ledger, queries
from klingcost.money import UNIT_EXPONENT, exact, format_amount
from klingcost.sheet import PriceSheet, load_sheet


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One row of openai-hk's usage log: credits charged (``fen``) for one request."""

    reqid: str
    model: str | None
    fen: Fraction
    yufen: Fraction | None
    at: str | None
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CreditRate:
    """Credits per unit observed for one pack, against the sheet's figure."""

    pack: str
    provider: str
    credits: Fraction
    units: Fraction
    rows: int
    distinct: tuple[Fraction, ...]
    sheet: Fraction | None

    @property
    def per_unit(self) -> Fraction:
        return self.credits / self.units

    def to_dict(self) -> dict[str, Any]:
        return {
            "pack": self.pack,
            "provider": self.provider,
            "credits": format_amount(self.credits),
            "units": format_amount(self.units),
            "rows": self.rows,
            "per_unit": format_amount(self.per_unit),
            "per_unit_values": [format_amount(v) for v in self.distinct],
            "sheet": None if self.sheet is None else format_amount(self.sheet),
        }


@dataclass(frozen=True, slots=True)
class UsageImport:
    """What an import did and what it learned."""

    read: int
    new: int
    matched_by_id: int
    matched_by_order: int
    unmatched: tuple[str, ...]
    rates: tuple[CreditRate, ...]
    overlay: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "new": self.new,
            "matched_by_id": self.matched_by_id,
            "matched_by_order": self.matched_by_order,
            "unmatched": list(self.unmatched),
            "rates": [r.to_dict() for r in self.rates],
            "overlay": self.overlay,
        }


_TIME_FIELDS: Final = ("created_at", "create_time", "created", "time", "ctime", "date", "at")


def _amount(row: Mapping[str, Any], name: str, where: str, required: bool) -> Fraction | None:
    value = row.get(name)
    if value is None or value == "":
        if required:
            raise CalibrationError(f"{where}: no {name!r} (credits); every row needs one")
        return None
    try:
        return exact(value)
    except (TypeError, ValueError):
        raise CalibrationError(
            f"{where}: {name} {_shown(value)} is not a number of credits"
            " (write 15000, 15000.5 or 4/3)"
        ) from None


def _shown(value: Any) -> str:
    """A value of the log as its JSON had it: ``0.5``, not ``Decimal('0.5')``."""
    return str(value) if isinstance(value, Decimal) else repr(value)


def _fen(row: Mapping[str, Any], where: str) -> Fraction:
    """The credits a row was charged: a positive amount. Zero or less is no charge to learn
    from (and would make a rate of 0 or below), so the log is refused, naming the row."""
    fen = _amount(row, "fen", where, True)
    assert fen is not None
    if fen <= 0:
        raise CalibrationError(
            f"{where}: fen {_shown(row['fen'])} is not a positive number of credits (fen is"
            " what the request was charged: above 0)"
        )
    return fen


def parse_usage(text: str, *, origin: str = "usage log") -> list[UsageRow]:
    """Rows from JSON (a list, or ``{"data": [...]}``) or JSON Lines. Floats never enter:
    numbers are read as Decimals."""
    stripped = text.strip()
    items: list[Any]
    try:
        data: Any = loads(stripped, decimals=True)
    except ValueError as whole:  # not one document (JSON Lines?), or out of bounds
        try:
            data = [loads(line, decimals=True) for line in stripped.splitlines() if line.strip()]
        except ValueError as exc:
            # A number or nesting out of bounds is the reason, wherever it was met first.
            unread = next((e for e in (whole, exc) if isinstance(e, JSONInputError)), None)
            if unread is not None:
                raise CalibrationError(
                    f"{origin}: JSON klingcost will not read: {unread}"
                ) from None
            raise CalibrationError(f"{origin}: not JSON or JSON Lines: {exc}") from None
    if isinstance(data, Mapping) and "reqid" in data:
        items = [data]  # JSON Lines with one row
    elif isinstance(data, Mapping):
        inner = data.get("data")
        if isinstance(inner, Mapping):
            inner = inner.get("list", inner.get("rows", inner.get("data")))
        if not isinstance(inner, list):
            raise CalibrationError(f"{origin}: a JSON object needs a 'data' list of rows")
        items = inner
    elif isinstance(data, list):
        items = data
    else:
        raise CalibrationError(f"{origin}: expected a list of rows")
    rows = []
    for i, item in enumerate(items, 1):
        where = f"{origin} row {i}"
        if not isinstance(item, Mapping):
            raise CalibrationError(f"{where}: expected an object with fen, yufen, model, reqid")
        reqid = item.get("reqid")
        if not isinstance(reqid, str | int) or isinstance(reqid, bool) or str(reqid) == "":
            raise CalibrationError(f"{where}: no 'reqid' (the request id); every row needs one")
        fen = _fen(item, where)
        at = next((str(item[k]) for k in _TIME_FIELDS if item.get(k) not in (None, "")), None)
        model = item.get("model")
        rows.append(
            UsageRow(
                str(reqid),
                str(model) if model is not None else None,
                fen,
                _amount(item, "yufen", where, False),
                at,
                item,
            )
        )
    return rows


def import_usage(
    ledger: Ledger,
    path: str | os.PathLike[str],
    *,
    newest_first: bool = False,
    provider: str = "openai-hk",
    sheet: PriceSheet | None = None,
    write: str | os.PathLike[str] | None = None,
    header: str = "",
) -> UsageImport:
    """Store the log's rows (once each, by ``reqid``), match them to holds, and learn the
    credits per unit. A row matches the hold whose task id, or whose key (sent as
    ``external_task_id``), equals its ``reqid``; the rest are paired with the unmatched
    settled holds of the same model, newest with newest (the ledger does not keep the proxy's
    request ids, so this is the fallback).

    With ``write``, the overlay (when there is one) is written there as :func:`write_overlay`
    does. The rows are kept only if everything succeeds: a bad row, an overlay the sheet
    refuses or a file that cannot be written leaves the ledger and ``write`` as they were."""
    target = None if write is None else check_write_target(write)  # before any work
    source = Path(path)
    try:
        text = _text.decode(source.read_bytes())  # a byte-order mark, else UTF-8 (or UTF-16)
    except OSError as exc:
        raise CalibrationError(f"cannot read the usage log {source}: {exc}") from None
    except _text.TextDecodeError as exc:
        raise CalibrationError(
            f"the usage log {source} is {exc}: export it as UTF-8 JSON"
        ) from None
    rows = parse_usage(text, origin=str(source))
    if any(r.at for r in rows) and all(r.at for r in rows):
        rows.sort(key=lambda r: r.at or "")
    elif newest_first:
        rows.reverse()
    sheet = sheet if sheet is not None else load_sheet()
    records = [
        queries.UsageRecord(
            r.reqid,
            r.model,
            format_amount(r.fen),
            None if r.yufen is None else format_amount(r.yufen),
            r.at,
            json.dumps(r.raw, default=str, ensure_ascii=False),
        )
        for r in rows
    ]
    staged: list[Path] = []

    def learn(
        stored: queries.StoredUsage,
    ) -> tuple[queries.StoredUsage, list[CreditRate], dict[str, Any]]:
        discard_staged(staged)  # the transaction is being retried: drop the last attempt's file
        rates = _credit_rates(stored.credits, provider, sheet)
        overlay = _credit_overlay(rates, provider)
        if target is not None and overlay:
            staged.append(stage_overlay(overlay, target, header=header))
        return stored, rates, overlay

    # Nothing is kept unless the whole import succeeds. The overlay is learned from the rows
    # inside the transaction, proved and written to a temporary file beside the target before
    # the rows are committed: any failure rolls the rows back and removes that file. Only the
    # rename follows the commit; it is atomic, in a folder just written to, and should it fail
    # the rows are kept once each (by reqid), so running the import again writes the same file.
    try:
        stored, rates, overlay = queries.store_usage(
            ledger, records, imported_at=ledger.clock.now().isoformat(), then=learn
        )
    except BaseException:
        discard_staged(staged)
        raise
    if target is not None and staged:
        publish_overlay(staged[-1], target)
    return UsageImport(
        len(rows),
        stored.new,
        stored.matched_by_id,
        stored.matched_by_order,
        queries.unmatched_usage(ledger),
        tuple(rates),
        overlay,
    )


def credit_rates(
    ledger: Ledger, *, provider: str = "openai-hk", sheet: PriceSheet | None = None
) -> list[CreditRate]:
    """Credits per unit per pack, over every imported row matched to a settled hold."""
    sheet = sheet if sheet is not None else load_sheet()
    return _credit_rates(queries.credit_rows(ledger), provider, sheet)


def _credit_overlay(rates: Sequence[CreditRate], provider: str) -> dict[str, Any]:
    """The overlay of the credits per unit that differ from the sheet's; {} when none do."""
    per_unit: dict[str, Any] = {}
    for rate in rates:
        if rate.sheet != rate.per_unit:
            per_unit[rate.pack] = {
                "amount": format_amount(rate.per_unit),
                "source": OBSERVED_SOURCE,
                "note": f"credits charged / units charged over {rate.rows} usage-log rows"
                + ("" if rate.sheet is None else f" (the sheet said {format_amount(rate.sheet)})"),
            }
    if not per_unit:
        return {}
    return with_sources(
        {"providers": {provider: {"per_unit": per_unit}}},
        f"{provider}'s usage log (fen per request), imported by klingcost import-usage",
    )


def _credit_rates(
    rows: Iterable[queries.CreditRow], provider: str, sheet: PriceSheet
) -> list[CreditRate]:
    sums: dict[str, list[Any]] = {}
    for pack, fen, units_milli in rows:
        credits = exact(fen)
        units = Fraction(units_milli, 10**UNIT_EXPONENT)
        entry = sums.setdefault(pack, [Fraction(0), Fraction(0), 0, set()])
        entry[0] += credits
        entry[1] += units
        entry[2] += 1
        entry[3].add(credits / units)
    profile = sheet.providers.get(provider)
    out = []
    for pack, (credits, units, count, distinct) in sorted(sums.items()):
        rule = profile.per_unit.get(pack) if profile else None  # type: ignore[call-overload]
        out.append(
            CreditRate(
                pack,
                provider,
                credits,
                units,
                count,
                tuple(sorted(distinct)),
                rule.amount if rule else None,
            )
        )
    return out


__all__ = [
    "CreditRate",
    "UsageImport",
    "UsageRow",
    "credit_rates",
    "import_usage",
    "parse_usage",
]
