"""Where the ledger's two databases differ: SQLite (the embedded default) and PostgreSQL.

:class:`~klingcost.ledger.Ledger` is written once, in SQL that both databases run, with ``?``
placeholders; a backend holds what is not shared:

* connecting and migrating (:mod:`klingcost.migrations` for a file, :mod:`klingcost._postgres`
  for a ``postgresql://`` URL);
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

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from klingcost import checkpointer, migrations
from klingcost.errors import LedgerError

T = TypeVar("T")
Dialect = Literal["sqlite", "postgres"]
POSTGRES_SCHEMES: Final[tuple[str, ...]] = ("postgresql://", "postgres://")


def is_postgres_url(location: object) -> bool:
    """Whether ``location`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


def redact(url: str) -> str:
    """``url`` without its password, for messages and ``Ledger.path``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else f"***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


class Cursor(Protocol):
    """What the ledger reads from a statement: sqlite3's and psycopg's cursors both fit."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = ..., /) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class DB(Protocol):
    """A connection as the ledger's operations see it: statements with ``?`` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


class Backend(Protocol):
    """One open ledger database."""

    #: ``sqlite`` or ``postgres``.
    dialect: Dialect
    #: The file, or the URL without its password.
    location: Path | str
    #: The statement runner handed to operations (``?`` placeholders).
    db: DB
    #: The driver's connection (sqlite3 or psycopg).
    raw: Any
    #: Appended to a ``SELECT`` to lock the rows it reads until the transaction ends ("" when
    #: the whole database is locked by the write transaction, as in SQLite).
    row_lock: str

    def write(self, operation: Callable[[DB], T]) -> T:
        """Run ``operation`` in one write transaction (retried as the database needs)."""
        ...

    def read(self, operation: Callable[[DB], T]) -> T:
        """Run ``operation``'s reads in one consistent snapshot."""
        ...

    def snapshot(self) -> AbstractContextManager[DB]:
        """A second, read-only connection in one snapshot, for long exports."""
        ...

    def day(self, column: str) -> str:
        """SQL for the UTC day (``YYYY-MM-DD``) of an ISO timestamp column."""
        ...

    def close(self) -> None: ...


class SQLiteBackend:
    """A ledger file: WAL, ``busy_timeout``, and ``BEGIN IMMEDIATE`` for every write."""

    dialect: Dialect = "sqlite"
    row_lock = ""

    def __init__(self, path: Path, *, timeout: float, synchronous: str = "NORMAL") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.raw: sqlite3.Connection = migrations.connect(
            path, timeout=timeout, synchronous=synchronous
        )
        # The WAL's bounds: SQLite checkpoints inline past INLINE_PAGES (a server's background
        # checkpointer raises that to the cap while it runs), and a WAL that grew past
        # WAL_LIMIT_BYTES is cut back to it when it starts over.
        self.raw.execute(f"PRAGMA wal_autocheckpoint = {checkpointer.INLINE_PAGES}")
        self.raw.execute(f"PRAGMA journal_size_limit = {checkpointer.WAL_LIMIT_BYTES}")
        self.db: DB = self.raw
        self.location: Path | str = path
        self.path = path
        self.timeout = timeout

    def write(self, operation: Callable[[DB], T]) -> T:
        deadline = time.monotonic() + self.timeout
        conn = self.raw
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = operation(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return result
            except sqlite3.OperationalError as exc:
                code = getattr(exc, "sqlite_errorcode", None)
                if code not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise LedgerError(f"ledger {self.path}: {exc}") from exc
                if time.monotonic() >= deadline:
                    message = f"ledger {self.path} stayed busy for {self.timeout} s: {exc}"
                    raise LedgerError(message) from exc

    def read(self, operation: Callable[[DB], T]) -> T:
        self.raw.execute("BEGIN")
        try:
            return operation(self.raw)
        finally:
            self.raw.execute("COMMIT")

    @contextmanager
    def _snapshot(self) -> Iterator[DB]:
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None)
        try:
            conn.execute("BEGIN")
            yield conn
            conn.execute("COMMIT")
        finally:
            conn.close()

    def snapshot(self) -> AbstractContextManager[DB]:
        # A second connection: a long export never holds the ledger's lock, nor blocks its
        # writers (WAL), and reads one consistent snapshot.
        return self._snapshot()

    def day(self, column: str) -> str:
        return f"date({column})"

    def close(self) -> None:
        self.raw.close()


def open_backend(location: str | Path, *, timeout: float, synchronous: str = "NORMAL") -> Backend:
    """The backend for ``location``: a PostgreSQL URL or a SQLite file path."""
    if is_postgres_url(location):
        from klingcost._postgres import PostgresBackend  # psycopg is only needed here

        return PostgresBackend(str(location), timeout=timeout)
    return SQLiteBackend(Path(location).expanduser(), timeout=timeout, synchronous=synchronous)


__all__ = [
    "DB",
    "POSTGRES_SCHEMES",
    "Backend",
    "Cursor",
    "Dialect",
    "SQLiteBackend",
    "is_postgres_url",
    "open_backend",
    "redact",
]
