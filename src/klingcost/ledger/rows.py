"""The rows the ledger reads, by name: one NamedTuple per table it reads whole, whose fields
are the columns its SELECT names (the SQL is built from the fields, so the two cannot drift),
and the function that turns such a row into the value callers see.

The hot path (``reserve``, ``attach``) unpacks its rows into named variables instead of
building these tuples: the same names, with no Python work added per row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import fields
from datetime import datetime
from fractions import Fraction
from functools import lru_cache
from typing import Any, NamedTuple

from klingcost.budgets import Alert, Budget, HoldAmounts, Pack
from klingcost.keys import ApiKey
from klingcost.ledger.types import Event, Hold, HoldState, PublishedSheet
from klingcost.periods import Period


class HoldRow(NamedTuple):
    """A row of ``holds`` as :data:`_HOLD_SELECT` reads it."""

    id: int
    idempotency_key: str
    team: str
    state: HoldState
    pack: Pack
    currency: str
    est_units_milli: int
    est_cost_minor: int
    units_milli: int | None
    cost_minor: int | None
    variance_units_milli: int | None
    variance_cost_minor: int | None
    raw_deduction: str | None
    reason: str | None
    meta: str
    reserved_at: str
    updated_at: str
    task_id: str | None
    deduction_flag: str | None
    task_status: str | None
    sheet_sha256: str | None
    key_id: str | None


class BudgetRow(NamedTuple):
    """A row of ``budgets``: what a hold on its path needs of it, and its parent."""

    name: str
    unit: str
    pack: Pack | None
    limit_minor: int
    period: Period
    tz: str
    soft: str
    exponent: int
    parent: str | None


#: Where BudgetRow's columns sit in a plain tuple of its SELECT: reserve (the hot path) keeps
#: the driver's tuples rather than build a BudgetRow per row, and reads them by these names.
NAME, PERIOD, TZ, PARENT = (BudgetRow._fields.index(c) for c in ("name", "period", "tz", "parent"))


class KeyRow(NamedTuple):
    """A row of ``api_keys`` (it holds no secret: a hash of the bearer key)."""

    id: str
    team: str
    name: str | None
    key_hash: str
    access_key: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    max_concurrent: int | None


class EventRow(NamedTuple):
    """A row of ``events``."""

    id: int
    at: str
    kind: str
    hold_id: int | None
    team: str | None
    data: str


def _columns(names: Iterable[str], prefix: str = "") -> str:
    return ", ".join(f"{prefix}{name}" for name in names)


# ``holds.task_id`` copies ``tasks.task_id``; both are written by ``attach`` alone, in one
# transaction, so a hold reads without a join (and ``UPDATE ... RETURNING`` gives the same row).
_HOLD_ROW = _columns(HoldRow._fields)
_HOLD_SELECT = f"SELECT {_columns(HoldRow._fields, 'h.')} FROM holds AS h"
_BUDGET_COLUMNS = _columns(BudgetRow._fields)
_KEY_COLUMNS = _columns(KeyRow._fields)
_EVENT_COLUMNS = _columns(EventRow._fields)
_SHEET_COLUMNS = _columns(f.name for f in fields(PublishedSheet))


@lru_cache(maxsize=256)
def _soft(text: str) -> Fraction:
    return Fraction(text)


def _hold_from_row(row: tuple[Any, ...], alerts: tuple[Alert, ...] = ()) -> Hold:
    r = HoldRow._make(row)
    return Hold(
        id=r.id,
        key=r.idempotency_key,
        team=r.team,
        state=r.state,
        estimate=HoldAmounts(r.est_units_milli, r.pack, r.est_cost_minor, r.currency),
        units_milli=r.units_milli,
        cost_minor=r.cost_minor,
        variance_units_milli=r.variance_units_milli,
        variance_cost_minor=r.variance_cost_minor,
        raw_deduction=r.raw_deduction,
        reason=r.reason,
        meta=json.loads(r.meta),
        reserved_at=datetime.fromisoformat(r.reserved_at),
        updated_at=datetime.fromisoformat(r.updated_at),
        task_id=r.task_id,
        alerts=alerts,
        deduction_flag=r.deduction_flag,
        task_status=r.task_status,
        sheet_sha256=r.sheet_sha256,
        key_id=r.key_id,
    )


def _budget_from_row(row: tuple[Any, ...]) -> Budget:
    r = BudgetRow._make(row)
    return Budget(
        team=r.name,
        limit=r.limit_minor,
        unit=r.unit,
        period=r.period,
        parent=r.parent,
        soft=_soft(r.soft),
        tz=r.tz,
        pack=r.pack,
        exponent=r.exponent,
    )


def _key_from_row(row: tuple[Any, ...]) -> ApiKey:
    r = KeyRow._make(row)
    return ApiKey(
        id=r.id,
        team=r.team,
        name=r.name,
        key_hash=r.key_hash,
        access_key=r.access_key,
        created_at=_dt(r.created_at),
        expires_at=None if r.expires_at is None else _dt(r.expires_at),
        revoked_at=None if r.revoked_at is None else _dt(r.revoked_at),
        max_concurrent=r.max_concurrent,
    )


def _event_from_row(row: tuple[Any, ...]) -> Event:
    r = EventRow._make(row)
    return Event(r.id, _dt(r.at), r.kind, r.hold_id, r.team, json.loads(r.data))


def _sheet_from_row(row: tuple[Any, ...]) -> PublishedSheet:
    return PublishedSheet(*row)  # the SELECT names its fields, in order (_SHEET_COLUMNS)


def _first(row: tuple[Any, ...]) -> Any:
    return row[0]


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)
