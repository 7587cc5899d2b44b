"""Where the ledger's two databases differ: SQLite (the embedded default) and PostgreSQL.

:class:`~klingcost.ledger.Ledger` is written once, in SQL that both databases run, with ``?``
placeholders, against the protocols of :mod:`klingcost.ledger.db`; a backend holds what is not
shared:

* connecting and migrating (:mod:`klingcost.ledger._sqlite` for a file,
  :mod:`klingcost.ledger._postgres` for a ``postgresql://`` URL);
* the write transaction and its retries: SQLite's ``BEGIN IMMEDIATE`` takes the file's one write
  lock and waits while another process holds it; PostgreSQL runs ``READ COMMITTED`` with row
  locks taken by the ledger (``row_lock``), and retries a transaction that lost a race
  (serialization failure, deadlock, a unique key written by a concurrent transaction);
* how a statement reaches the driver: SQLite gets it as written; PostgreSQL gets it translated
  once (and cached) to psycopg's ``%s`` placeholders and its spelling of SQLite's ``IS``;
* the few SQL expressions that differ (the UTC day of a timestamp) and the read-only snapshot
  that exports stream from.

Select a backend by the ledger's location: a path is a SQLite file, ``postgresql://...`` (or
``postgres://...``) a PostgreSQL database, as ``--ledger`` and ``KLINGCOST_LEDGER`` say.
"""

from __future__ import annotations

from pathlib import Path

from klingcost.errors import LedgerSetupError
from klingcost.ledger._sqlite import SQLiteBackend
from klingcost.ledger.db import Backend
from klingcost.ledger.pgurl import is_postgres_url


def open_backend(
    location: str | Path,
    *,
    timeout: float,
    synchronous: str = "NORMAL",
    read_only: bool = False,
) -> Backend:
    """The backend for ``location``: a PostgreSQL URL or a SQLite file path.

    ``read_only`` opens it for reading only: a SQLite file with ``mode=ro`` (it may be a
    read-only file, in a read-only directory), a PostgreSQL database in read-only transactions
    without migrating it.
    """
    if is_postgres_url(location):
        try:
            from klingcost.ledger._postgres import PostgresBackend  # psycopg is only needed here
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("psycopg"):
                raise
            raise LedgerSetupError(
                "a postgresql:// ledger needs psycopg, which is not installed: "
                "pip install 'klingcost[postgres]'"
            ) from None

        return PostgresBackend(str(location), timeout=timeout, read_only=read_only)
    return SQLiteBackend(
        Path(location).expanduser(), timeout=timeout, synchronous=synchronous, read_only=read_only
    )


__all__ = ["open_backend"]
