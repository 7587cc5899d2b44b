"""The event log, read: every change the ledger made, in order, and the refused submissions
the guards record there (``refused`` events). Append-only: nothing here updates or deletes
an event; :meth:`~klingcost.ledger._base.LedgerBase._event` is the one writer."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from klingcost.ledger._base import LedgerBase
from klingcost.ledger.db import DB
from klingcost.ledger.rows import _EVENT_COLUMNS, _dt, _event_from_row
from klingcost.ledger.types import Event, MetaValue


class EventsPart(LedgerBase):
    """The event log: :meth:`events`, :meth:`record_refusal`, :meth:`refusals`."""

    def events(
        self,
        *,
        hold_id: int | None = None,
        kind: str | None = None,
        team: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
        since: datetime | None = None,
        latest: int | None = None,
    ) -> list[Event]:
        """Events in the order they were recorded, optionally filtered; ``since`` keeps those
        recorded at or after it, ``latest`` only the last so many (still oldest first)."""
        clauses, params = ["id > ?"], list[object]([after_id])
        for column, value in (("hold_id", hold_id), ("kind", kind), ("team", team)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:  # ISO text in UTC sorts as time does
            clauses.append("at >= ?")
            params.append(since.astimezone(UTC).isoformat())
        where = " AND ".join(clauses)
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {where} ORDER BY id"
        if latest is not None:
            sql = f"SELECT * FROM ({sql} DESC LIMIT {int(latest)}) AS last ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.reading():
            rows = self._db.execute(sql, params).fetchall()
        return [_event_from_row(row) for row in rows]

    def record_refusal(
        self,
        team: str,
        *,
        reason: str,
        needed: int | None,
        left: int | None,
        period: str | None,
        job_class: Mapping[str, MetaValue] | None = None,
        key_id: str | None = None,
        source: str = "guard",
        unit: str | None = None,
        budget: str | None = None,
    ) -> Event:
        """Record a refused submission: an event of kind ``refused`` (in its own transaction;
        the refused reserve wrote nothing). ``reason`` is ``budget``, ``cannot_count``,
        ``concurrency`` or ``unpriced``; ``needed`` and ``left`` are in ``unit`` of ``budget``
        (the budget that refused, on ``team``'s path); ``source`` says which guard refused
        (``guard``, ``submit``, ``proxy``)."""
        at = self.clock.now().isoformat()
        data = {
            "reason": reason,
            "needed": needed,
            "left": left,
            "unit": unit,
            "period": period,
            "budget": budget,
            "key_id": key_id,
            "source": source,
            "job_class": dict(job_class or {}),
        }

        def operation(conn: DB) -> None:
            self._event(conn, at, "refused", None, team, **data)

        self._write(operation)
        return Event(0, _dt(at), "refused", None, team, data)

    def refusals(
        self,
        *,
        team: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[Event]:
        """Refused submissions in the order they were recorded (``refused`` events); ``since``
        and ``until`` are UTC days (``YYYY-MM-DD``, inclusive)."""
        where, params = "kind = 'refused' AND id > ?", list[object]([after_id])
        for clause, value in (
            ("team = ?", team),
            ("substr(at, 1, 10) >= ?", since),
            ("substr(at, 1, 10) <= ?", until),
        ):
            if value is not None:
                where += f" AND {clause}"
                params.append(value)
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {where} ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.reading():
            rows = self._db.execute(sql, params).fetchall()
        return [_event_from_row(row) for row in rows]
