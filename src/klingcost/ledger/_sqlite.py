"""The ledger in a SQLite file: opening, checking, migrating, and the write transaction.

A file is refused, and never written to, when it is not SQLite, is a SQLite file of something
else, or was written by a newer klingcost (more migrations than this code knows:
:mod:`klingcost.ledger.migrations`). Opened, it is in WAL mode with ``busy_timeout`` and
foreign keys on; a file reached under a second path is refused first
(:mod:`klingcost.ledger._one_path`). Every write is one ``BEGIN IMMEDIATE`` transaction, which
takes the file's one write lock and waits while another process holds it.

The backend keeps one sqlite3 connection, and a :class:`sqlite_utils.Database` over that same
connection (:attr:`SQLiteBackend.database`) for the schema and its introspection (the spec
check, ``ledger check --full``): sqlite-utils reads tables, columns, indexes, views and
triggers as objects. It is made on first use, because ``import sqlite_utils`` loads click and
dateutil, which no ``reserve`` should pay for; the hot path (reserve, attach, settle) runs
plain ``conn.execute`` on the connection, as before.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

from klingcost.errors import LedgerError, LedgerSchemaError
from klingcost.ledger import checkpointer
from klingcost.ledger._one_path import refuse_a_live_second_path, refuse_second_name
from klingcost.ledger.db import DB, Dialect
from klingcost.ledger.migrations import APPLICATION_ID, MIGRATIONS, schema_version

if TYPE_CHECKING:
    import sqlite_utils

T = TypeVar("T")
SQLITE_HEADER: Final = b"SQLite format 3\x00"


def check_header(path: Path) -> None:
    """Refuse a non-empty file that is not SQLite, before SQLite touches it."""
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LedgerSchemaError(f"cannot read the ledger {path}: {exc}") from exc
    if header and header != SQLITE_HEADER:
        raise LedgerSchemaError(
            f"{path} is not a SQLite file, so not a klingcost ledger; "
            "choose another file with --ledger or KLINGCOST_LEDGER"
        )


def inspect(conn: sqlite3.Connection, path: Path) -> int:
    """The file's schema version; LedgerSchemaError when it is not ours. Reads only."""
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        tables = {
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
        }
        applied: Sequence[str] = ()
        if "_klingcost_migrations" in tables:
            applied = [r[0] for r in conn.execute("SELECT name FROM _klingcost_migrations")]
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        raise LedgerSchemaError(f"{path} is not a readable SQLite database: {exc}") from exc
    if app_id not in (0, APPLICATION_ID) or (tables and "_klingcost_migrations" not in tables):
        raise LedgerSchemaError(
            f"{path} is a SQLite database but not a klingcost ledger (it has other tables); "
            "it was left untouched: choose another file with --ledger"
        )
    known = {m.name for m in MIGRATIONS}
    unknown = sorted(set(applied) - known)
    if version > schema_version() or unknown:
        raise LedgerSchemaError(
            f"{path} was written by a newer klingcost (schema version {version}, "
            f"migrations {', '.join(unknown) or 'unknown'}; this klingcost knows "
            f"version {schema_version()}). Upgrade klingcost; the file was left untouched."
        )
    return version


def migrate(conn: sqlite3.Connection, path: Path) -> list[str]:
    """Apply the pending migrations, each in a write transaction; return their names."""
    done: list[str] = []
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = inspect(conn, path)  # again: another process may have migrated
            if version >= schema_version():
                conn.execute("COMMIT")
                return done
            migration = MIGRATIONS[version]
            conn.execute(
                "CREATE TABLE IF NOT EXISTS _klingcost_migrations"
                " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            for statement in migration.statements:
                conn.execute(statement)
            if migration.backfill is not None:
                migration.backfill(conn)
            conn.execute(
                "INSERT INTO _klingcost_migrations (name, applied_at) VALUES (?, ?)",
                (migration.name, datetime.now(UTC).isoformat()),
            )
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        done.append(migration.name)


def connect(path: Path, *, timeout: float, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """Open ``path`` as a klingcost ledger: check it, set WAL, and migrate it.

    ``synchronous`` NORMAL (the default) survives a crash of the process; FULL also survives
    losing power, at the cost of an fsync per write.
    """
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be NORMAL or FULL (given {synchronous!r})")
    check_header(path)
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot open the ledger {path}: {exc}") from exc
    try:
        version = inspect(conn, path)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LedgerError(f"cannot put the ledger {path} in WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Read and in WAL mode, this connection holds its locks: another live process using the
        # file through another path's log is refused before anything is written here.
        refuse_a_live_second_path(path)
        if version < schema_version():
            # Only a file that needs migrating takes the write lock: opening an up-to-date
            # ledger must not wait behind a writer (a reader would stall behind a stuck one).
            migrate(conn, path)
    except sqlite3.OperationalError as exc:
        conn.close()
        raise LedgerError(f"cannot open the ledger {path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise LedgerSchemaError(f"{path} is not a usable klingcost ledger: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


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
            self.raw = connect(path, timeout=timeout, synchronous=synchronous)
            # The WAL's bounds: SQLite checkpoints inline past INLINE_PAGES (a server's
            # background checkpointer raises that to the cap while it runs), and a WAL that
            # grew past WAL_LIMIT_BYTES is cut back to it when it starts over.
            self.raw.execute(f"PRAGMA wal_autocheckpoint = {checkpointer.INLINE_PAGES}")
            self.raw.execute(f"PRAGMA journal_size_limit = {checkpointer.WAL_LIMIT_BYTES}")
        self.db: DB = self.raw

    @cached_property
    def database(self) -> sqlite_utils.Database:
        """A :class:`sqlite_utils.Database` over this backend's own connection, for the
        schema and its introspection (made on first use: see the module's doc). It changes
        nothing on the connection: no recursive triggers, no plugin functions."""
        import sqlite_utils

        return sqlite_utils.Database(self.raw, recursive_triggers=False, execute_plugins=False)

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
        check_header(path)
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
                version = inspect(conn, path)  # the first read opens the -shm
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
        if version < schema_version():
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
                f"{schema_version()}, and cannot be upgraded by this user (it is "
                "read-only here): run any klingcost command that writes once, as the "
                "ledger's owner, to upgrade it"
            )
        connect(path, timeout=self.timeout).close()
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


__all__ = ["SQLITE_HEADER", "SQLiteBackend", "check_header", "connect", "inspect", "migrate"]
