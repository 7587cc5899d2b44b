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

import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeVar
from urllib.parse import unquote

from klingcost import checkpointer, migrations
from klingcost._one_path import refuse_a_live_second_path, refuse_second_name
from klingcost.errors import LedgerError, LedgerSetupError

T = TypeVar("T")
Dialect = Literal["sqlite", "postgres"]
POSTGRES_SCHEMES: Final[tuple[str, ...]] = ("postgresql://", "postgres://")


def is_postgres_url(location: object) -> bool:
    """Whether ``location`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


#: ``password=`` and ``sslpassword=`` in a URL's query string, up to the next ``&name=``
#: (an ``&`` not followed by a parameter is taken as part of an unencoded password).
_QUERY_SECRET = re.compile(r"(?i)([?&](?:ssl)?password=)(.*?)(?=&[^&=#]*=|#|$)")
#: Where the query string starts: a ``?`` followed by a parameter name and ``=``.
_QUERY_START = re.compile(r"\?[A-Za-z_]+=")
#: What libpq and psycopg may cut a malformed URL at: a piece of a password can appear alone.
_CUTS = re.compile(r"[@/?#&:=%\[\]]")
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")


def _userinfo(url: str) -> tuple[int, int] | None:
    """Where the password of ``scheme://user:password@host`` lies in ``url`` (start, end).

    Read without a URL parser, which a badly written URL breaks: the password runs from the
    first ``:`` after the scheme to the *last* ``@`` before the query string (a password may
    hold an unencoded ``@``, ``/`` or ``?``).
    """
    start = url.find("://")
    query = _QUERY_START.search(url)
    at = url.rfind("@", 0, query.start() if query else len(url))
    if start < 0 or at < start:
        return None
    colon = url.find(":", start + 3, at)
    return None if colon < 0 else (colon + 1, at)


def passwords(url: str) -> list[str]:
    """Every password ``url`` carries, as written (userinfo, ``password=``, ``sslpassword=``)."""
    found = []
    span = _userinfo(url)
    if span is not None:
        found.append(url[span[0] : span[1]])
    found += [m.group(2) for m in _QUERY_SECRET.finditer(url)]
    return [p for p in found if p]


def redact(url: str) -> str:
    """``url`` without its passwords, for messages, reprs and ``Ledger.path``: the one in the
    userinfo, and ``password=`` or ``sslpassword=`` in the query, however badly encoded."""
    span = _userinfo(url)
    if span is not None and span[1] > span[0]:
        url = f"{url[: span[0]]}***{url[span[1] :]}"
    return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}***" if m.group(2) else m.group(0), url)


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's message about ``url``) without any password of ``url``, whole,
    decoded, or in the pieces a parser may have cut it into (three characters and up)."""
    pieces: set[str] = set()
    for password in passwords(url):
        for form in (password, unquote(password)):
            pieces.add(form)
            pieces.update(_CUTS.split(form))
    for piece in sorted((p for p in pieces if len(p) >= 3), key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


def scrub_error(exc: BaseException, url: str) -> str:
    """A connection error's message, safe to show. When ``url`` holds a password, a message
    that quotes a piece of the URL (libpq's "invalid percent-encoded token: ..." and the like)
    has every quoted piece hidden: in a malformed URL any piece may be part of a password."""
    text = str(exc).strip()
    if not passwords(url):
        return text
    text = redact(scrub(text, url))
    return _QUOTED.sub(lambda m: m.group(0)[0] + "***" + m.group(0)[0], text)


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
    #: Opened for reading only: every write is refused.
    read_only: bool
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

    def damage(self, *, full: bool = False) -> list[str]:
        """What the database's own check finds wrong with its storage ([] when nothing)."""
        ...

    def close(self) -> None: ...


class SQLiteBackend:
    """A ledger file: WAL, ``busy_timeout``, and ``BEGIN IMMEDIATE`` for every write."""

    dialect: Dialect = "sqlite"
    row_lock = ""

    def __init__(
        self,
        path: Path,
        *,
        timeout: float,
        synchronous: str = "NORMAL",
        read_only: bool = False,
    ) -> None:
        # Before SQLite opens it: a second name gives the file a second WAL (see _one_path).
        refuse_second_name(path)
        self.location: Path | str = path
        self.path = path
        self.timeout = timeout
        self.read_only = read_only
        #: How a second, read-only connection (an export's snapshot) opens the file.
        self.read_uri = f"{path.resolve().as_uri()}?mode=ro"
        if read_only:
            self.raw: sqlite3.Connection = self._connect_read_only()
            try:  # open and read: this path's -shm is locked now, as is any other one in use
                refuse_a_live_second_path(path)
            except BaseException:
                self.raw.close()
                raise
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Checks for a live second path itself, before it migrates (writes) anything.
            self.raw = migrations.connect(path, timeout=timeout, synchronous=synchronous)
            # The WAL's bounds: SQLite checkpoints inline past INLINE_PAGES (a server's
            # background checkpointer raises that to the cap while it runs), and a WAL that
            # grew past WAL_LIMIT_BYTES is cut back to it when it starts over.
            self.raw.execute(f"PRAGMA wal_autocheckpoint = {checkpointer.INLINE_PAGES}")
            self.raw.execute(f"PRAGMA journal_size_limit = {checkpointer.WAL_LIMIT_BYTES}")
        self.db: DB = self.raw

    def _connect_read_only(self) -> sqlite3.Connection:
        """Open the file for reading only (``mode=ro``), so that a read-only file or directory
        can be read, and nothing a reader does can write.

        A WAL database read this way still needs its ``-shm`` index, which SQLite creates
        beside the file when it is missing. Where it cannot (a read-only directory, or a
        read-only mount) and there is no ``-wal`` with transactions in it, the file alone is
        the whole ledger and no one can be writing it (a writer would need those files too):
        it is opened ``immutable=1``. With a ``-wal`` that cannot be read through its index,
        the file alone would be out of date, so the open is refused instead.
        """
        path = self.path
        migrations.check_header(path)
        for attempt in ("ro", "immutable"):
            if attempt == "immutable":
                self.read_uri = f"{path.resolve().as_uri()}?immutable=1"
            try:
                conn = sqlite3.connect(
                    self.read_uri,
                    uri=True,
                    timeout=self.timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as exc:
                raise LedgerError(f"cannot open the ledger {path} to read: {exc}") from exc
            try:
                version = migrations.inspect(conn, path)  # the first read opens the -shm
            except sqlite3.OperationalError as exc:
                conn.close()
                # CANTOPEN, or READONLY_CANTINIT and kin: the -shm cannot be made or set up.
                code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
                no_index = code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY)
                if attempt == "ro" and no_index and not _has_wal(path):
                    continue
                if no_index:
                    raise LedgerError(
                        f"cannot read the ledger {path}: its write-ahead log {path}-wal holds "
                        f"transactions, and its index {path}-shm cannot be created here "
                        "(read-only directory). Open it once with write access (any "
                        "klingcost command that writes, as the ledger's owner) so that the "
                        "log is folded into the file, or give this user write access to the "
                        "directory"
                    ) from exc
                raise LedgerError(f"cannot read the ledger {path}: {exc}") from exc
            except BaseException:
                conn.close()
                raise
            break
        try:
            conn.execute("PRAGMA query_only = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        except BaseException:
            conn.close()
            raise
        if version < migrations.schema_version():
            conn.close()
            return self._upgrade_then_read(version)
        return conn

    def _upgrade_then_read(self, version: int) -> sqlite3.Connection:
        """A ledger from an older klingcost: migrate it (a write) when this user may, then
        read it; otherwise say what to do (its tables lack what this klingcost reads)."""
        path = self.path
        if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)):
            raise LedgerError(
                f"the ledger {path} has schema version {version}, older than this klingcost's "
                f"{migrations.schema_version()}, and cannot be upgraded by this user (it is "
                "read-only here): run any klingcost command that writes once, as the "
                "ledger's owner, to upgrade it"
            )
        migrations.connect(path, timeout=self.timeout).close()
        return self._connect_read_only()

    def write(self, operation: Callable[[DB], T]) -> T:
        if self.read_only:
            raise LedgerError(f"ledger {self.path} was opened read-only: nothing was written")
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
        conn = sqlite3.connect(self.read_uri, uri=True, timeout=self.timeout, isolation_level=None)
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

    def damage(self, *, full: bool = False) -> list[str]:
        """SQLite's ``PRAGMA quick_check`` (``integrity_check`` when ``full``), as SQLite words
        it. quick_check reads every page and record (O(N)); integrity_check also matches every
        index against its table and checks UNIQUE constraints, several times slower.
        A file too damaged to finish the check is reported by what stopped it."""
        pragma = "integrity_check" if full else "quick_check"
        try:
            rows = self.raw.execute(f"PRAGMA {pragma}").fetchall()
        except sqlite3.DatabaseError as exc:
            return [f"{pragma} stopped: {exc}"]
        messages = [str(row[0]) for row in rows]
        return [] if messages == ["ok"] else [f"{pragma}: {m}" for m in messages]

    def close(self) -> None:
        self.raw.close()


def _has_wal(path: Path) -> bool:
    """Whether ``path`` has a write-ahead log with anything in it."""
    try:
        return Path(f"{path}-wal").stat().st_size > 0
    except FileNotFoundError:
        return False


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
            from klingcost._postgres import PostgresBackend  # psycopg is only needed here
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


__all__ = [
    "DB",
    "POSTGRES_SCHEMES",
    "Backend",
    "Cursor",
    "Dialect",
    "SQLiteBackend",
    "is_postgres_url",
    "open_backend",
    "passwords",
    "redact",
    "scrub",
    "scrub_error",
]
