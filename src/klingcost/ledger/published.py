"""The published price sheet: the version of the price sheet a ledger's holds must be priced
with (``klingcost pricing publish``), kept append-only with its sha256, and the setting that
lets submitters price with another (local overlays)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from klingcost.errors import LedgerValueError, SheetMismatchError
from klingcost.ledger import migrations
from klingcost.ledger._base import LedgerBase
from klingcost.ledger.db import DB
from klingcost.ledger.rows import _SHEET_COLUMNS, _sheet_from_row
from klingcost.ledger.types import PublishedSheet

if TYPE_CHECKING:
    from klingcost.sheet import PriceSheet

_SHEETS_LOCK: Final = migrations.APPLICATION_ID + 2  # pg_advisory_xact_lock key of publish_sheet
#: The ledger setting that lets submitters price with a sheet other than the published one.
LOCAL_OVERLAYS: Final = "local_overlays"
_SHEET_POLICY_SQL = (
    "SELECT (SELECT sha256 FROM pricing_sheets ORDER BY version DESC LIMIT 1),"
    " (SELECT version FROM pricing_sheets ORDER BY version DESC LIMIT 1),"
    f" (SELECT value FROM ledger_settings WHERE name = '{LOCAL_OVERLAYS}')"
)


class PublishedPart(LedgerBase):
    """The published price sheet: :meth:`publish_sheet`, :meth:`published_sheet`,
    :meth:`published_versions`, :meth:`allow_local_overlays`."""

    def publish_sheet(self, sheet: PriceSheet) -> PublishedSheet:
        """Make ``sheet`` the one the ledger's holds are priced by (a new version, unless it
        is the current one already). Versions are kept, append-only, with their sha256."""
        from klingcost.sheet import canonical_text, sheet_hash

        canonical, digest = canonical_text(sheet), sheet_hash(sheet)
        at = self.clock.now().isoformat()

        def operation(conn: DB) -> PublishedSheet:
            if self._locks_rows:  # one publisher at a time: versions are numbered in order
                conn.execute("SELECT pg_advisory_xact_lock(?)", (_SHEETS_LOCK,)).fetchall()
            row = conn.execute(
                f"SELECT {_SHEET_COLUMNS} FROM pricing_sheets ORDER BY version DESC LIMIT 1"
            ).fetchone()
            current = None if row is None else _sheet_from_row(row)
            if current is not None and current.sha256 == digest:
                return current
            version = 1 if current is None else current.version + 1
            conn.execute(
                f"INSERT INTO pricing_sheets ({_SHEET_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (version, digest, sheet.origin, at, canonical),
            )
            self._event(
                conn,
                at,
                "pricing_publish",
                None,
                None,
                version=version,
                sha256=digest,
                origin=sheet.origin,
                previous=None if current is None else current.sha256,
            )
            return PublishedSheet(version, digest, sheet.origin, at, canonical)

        return self._write(operation)

    def published_sheet(self, version: int | None = None) -> PublishedSheet | None:
        """The sheet the ledger publishes (its latest version, or ``version``); None if none."""
        where = "ORDER BY version DESC LIMIT 1" if version is None else "WHERE version = ?"
        sql = f"SELECT {_SHEET_COLUMNS} FROM pricing_sheets {where}"
        with self.reading():
            row = self._db.execute(sql, () if version is None else (version,)).fetchone()
        return None if row is None else _sheet_from_row(row)

    def published_versions(self) -> list[PublishedSheet]:
        """Every published version, oldest first (``canonical`` left empty)."""
        sql = "SELECT version, sha256, origin, published_at, '' FROM pricing_sheets ORDER BY 1"
        with self.reading():
            return [_sheet_from_row(row) for row in self._db.execute(sql).fetchall()]

    def allow_local_overlays(self, allow: bool) -> None:
        """Let submitters price with a sheet other than the published one (``True``), or
        refuse such holds (``False``, the default once a sheet is published)."""
        if not isinstance(allow, bool):
            raise LedgerValueError(f"allow must be True or False (given {allow!r})")
        at = self.clock.now().isoformat()
        value = "allow" if allow else "refuse"

        def operation(conn: DB) -> None:
            conn.execute(
                "INSERT INTO ledger_settings (name, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (LOCAL_OVERLAYS, value, at),
            )
            self._event(conn, at, "setting", None, None, name=LOCAL_OVERLAYS, value=value)

        self._write(operation)

    def local_overlays_allowed(self) -> bool:
        with self.reading():
            row = self._db.execute(_SHEET_POLICY_SQL).fetchone()
        if row is None:
            return False
        _, _, overlays = row
        return bool(overlays == "allow")

    def _check_sheet(self, conn: DB, given: str | None) -> None:
        """Inside a reserve: refuse a hold priced with another sheet than the published one."""
        published, version, overlays = conn.execute(_SHEET_POLICY_SQL).fetchone()
        if published is None or published == given or overlays == "allow":
            return
        raise SheetMismatchError(
            ledger=str(self.path), published=published, version=version, given=given
        )
