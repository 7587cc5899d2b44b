"""The usage-log import: openai-hk's rows stored once each and matched to holds, in one
write transaction; the credit rows calibration learns from; the rows left unmatched."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

if TYPE_CHECKING:
    from klingcost.ledger import Ledger

T = TypeVar("T")


class CreditRow(NamedTuple):
    """One usage-log row matched to a settled hold: its pack, the credits the proxy charged
    (``fen``, an exact decimal string) and the units Kling charged (milli)."""

    pack: str
    fen: str
    units_milli: int


_CREDIT_SQL: Final = (
    "SELECT h.pack, u.fen, h.units_milli FROM usage_rows AS u JOIN holds AS h"
    " ON h.id = u.hold_id WHERE h.state = 'settled' AND h.units_milli > 0"
)


def credit_rows(ledger: Ledger) -> list[CreditRow]:
    """Every imported usage row matched to a settled hold that was charged units."""
    with ledger.reading():
        return [CreditRow(*row) for row in ledger.execute(_CREDIT_SQL).fetchall()]


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One usage-log row as the ledger keeps it (amounts as exact decimal strings, ``raw``
    the row's JSON)."""

    reqid: str
    model: str | None
    fen: str
    yufen: str | None
    at: str | None
    raw: str


@dataclass(frozen=True, slots=True)
class StoredUsage:
    """What storing a usage log did, and the credit rows it now gives (all rows, old too)."""

    new: int
    matched_by_id: int
    matched_by_order: int
    credits: list[CreditRow]


def store_usage(
    ledger: Ledger,
    records: Sequence[UsageRecord],
    *,
    imported_at: str,
    then: Callable[[StoredUsage], T],
) -> T:
    """In one write transaction: store ``records`` once each (by ``reqid``), match them to
    holds, and call ``then`` with the result before the commit. Should ``then`` (or anything)
    raise, nothing is kept. The transaction may be retried (a busy file, a lost race): ``then``
    is called again each time, and its last answer is returned.

    A row matches the hold whose task id, or whose key (sent as ``external_task_id``), equals
    its ``reqid``; the rest are paired with the unmatched settled holds of the same model,
    newest with newest (the ledger does not keep the proxy's request ids: the fallback)."""

    def operation(conn: Any) -> T:
        new = 0
        for r in records:
            hold_id = _match(conn, r.reqid)
            cursor = conn.execute(
                "INSERT INTO usage_rows (reqid, model, fen, yufen, at, hold_id, matched_by, raw,"
                " imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (reqid) DO NOTHING",
                (
                    r.reqid,
                    r.model,
                    r.fen,
                    r.yufen,
                    r.at,
                    hold_id,
                    "id" if hold_id is not None else None,
                    r.raw,
                    imported_at,
                ),
            )
            new += cursor.rowcount
        by_order = _match_by_order(conn)
        (by_id,) = conn.execute(
            "SELECT COUNT(*) FROM usage_rows WHERE matched_by = 'id'"
        ).fetchone()
        credits = [CreditRow(*row) for row in conn.execute(_CREDIT_SQL).fetchall()]
        return then(StoredUsage(new, by_id, by_order, credits))

    return ledger._write(operation)


def _match(conn: Any, reqid: str) -> int | None:
    row = conn.execute("SELECT hold_id FROM tasks WHERE task_id = ?", (reqid,)).fetchone()
    if row is None:
        row = conn.execute("SELECT id FROM holds WHERE idempotency_key = ?", (reqid,)).fetchone()
    return None if row is None else int(row[0])


def _match_by_order(conn: Any) -> int:
    """Pair unmatched rows with unmatched settled holds of the same model, newest first."""
    paired = 0
    models = [
        model
        for (model,) in conn.execute(
            "SELECT DISTINCT model FROM usage_rows WHERE hold_id IS NULL AND model IS NOT NULL"
        )
    ]
    for model in models:
        reqids = [
            reqid
            for (reqid,) in conn.execute(
                "SELECT reqid FROM usage_rows WHERE hold_id IS NULL AND model = ?"
                " ORDER BY COALESCE(at, ''), rowid",
                (model,),
            )
        ]
        reqids.reverse()  # newest first
        holds = [
            hold_id
            for (hold_id,) in conn.execute(
                "SELECT h.id FROM holds AS h WHERE h.state = 'settled' AND h.model = ?"
                " AND NOT EXISTS (SELECT 1 FROM usage_rows AS u WHERE u.hold_id = h.id)"
                " ORDER BY h.reserved_at DESC, h.id DESC LIMIT ?",
                (model, len(reqids)),
            )
        ]
        for reqid, hold_id in zip(reqids, holds, strict=False):
            conn.execute(
                "UPDATE usage_rows SET hold_id = ?, matched_by = 'order' WHERE reqid = ?",
                (hold_id, reqid),
            )
            paired += 1
    return paired


def unmatched_usage(ledger: Ledger, limit: int = 50) -> tuple[str, ...]:
    """The first ``limit`` request ids (by id) of usage rows matched to no hold."""
    with ledger.reading():
        rows = ledger.execute(
            f"SELECT reqid FROM usage_rows WHERE hold_id IS NULL ORDER BY reqid LIMIT {int(limit)}"
        )
        return tuple(reqid for (reqid,) in rows)
