"""What every part of the ledger stands on: where the ledger lives, the connection and its
lock, and the transactions each part writes in (:meth:`LedgerBase._write`) and reads in
(:meth:`LedgerBase._read`), with the event log's one writer (:meth:`LedgerBase._event`).

Each concept of the ledger (budgets, holds, keys, alerts, ...) is a class of its own module
deriving from :class:`LedgerBase`; :class:`klingcost.ledger.Ledger` composes them.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar, cast

from klingcost.clock import Clock, SystemClock
from klingcost.errors import LedgerError, LedgerNotFound, LedgerSetupError, LedgerValueError
from klingcost.home import klingcost_home
from klingcost.ledger import outbox
from klingcost.ledger.backends import open_backend
from klingcost.ledger.checkpointer import CAP_PAGES, INLINE_PAGES, Checkpointer
from klingcost.ledger.db import DB, Backend, Cursor, Dialect
from klingcost.ledger.pgurl import is_postgres_url

if TYPE_CHECKING:
    from klingcost.ledger import Ledger

T = TypeVar("T")
_EVENT_SQL = "INSERT INTO events (at, kind, hold_id, team, data) VALUES (?, ?, ?, ?, ?)"


def default_ledger_path(environ: Mapping[str, str] | None = None) -> Path | str:
    """``KLINGCOST_LEDGER``, else ``$KLINGCOST_HOME/ledger.db``, else ``~/.klingcost/ledger.db``.

    A ``postgresql://`` URL in ``KLINGCOST_LEDGER`` is returned as it is (a str).
    """
    env = os.environ if environ is None else environ
    if env.get("KLINGCOST_LEDGER"):
        if is_postgres_url(env["KLINGCOST_LEDGER"]):
            return env["KLINGCOST_LEDGER"]
        return Path(env["KLINGCOST_LEDGER"]).expanduser()
    return klingcost_home(env) / "ledger.db"


def prepare_home(file: Path) -> None:
    """Make the default ledger's folder (``$KLINGCOST_HOME`` or ``~/.klingcost``) before a new
    ledger is made in it, or say in one line why it cannot be (LedgerSetupError, exit 2)."""
    if file.exists():
        return
    folder = file.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LedgerSetupError(
            f"cannot create the klingcost home {folder}: {exc.strerror or exc}; set "
            "KLINGCOST_HOME to a folder you can write, or give --ledger PATH"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LedgerSetupError(
            f"cannot write a new ledger in the klingcost home {folder}: permission denied; "
            "set KLINGCOST_HOME to a folder you can write, or give --ledger PATH"
        )


class LedgerBase:
    """The connection and its transactions; the parts of :class:`~klingcost.ledger.Ledger`
    derive from it. Open a ledger with :meth:`open`; use it as a context manager to close it."""

    def __init__(self, backend: Backend, *, clock: Clock, timeout: float):
        self.backend = backend
        self._db: DB = backend.db
        #: The file (a Path), or the PostgreSQL URL without its password (a str).
        self.path: Path | str = backend.location
        self.clock = clock
        self.timeout = timeout
        self._lock = threading.RLock()
        self._row_lock = backend.row_lock
        #: PostgreSQL locks rows explicitly; SQLite's write transaction locks the whole file.
        self._locks_rows = bool(backend.row_lock)
        #: The (period, tz) pairs of the budgets this ledger has reserved on: SQLite's reserve
        #: reads their balances with the path (see :meth:`_lean_path`).
        self._period_zones: set[tuple[str, str]] = set()
        #: Set by a write that enqueued alerts (see :meth:`_write`).
        self._enqueued = False
        #: Deliver enqueued alerts in a background thread after the commit (tests that drive
        #: delivery themselves turn it off).
        self.deliver_in_background = True
        #: When this process last looked for forecast warnings (:meth:`warn_forecasts`).
        self.forecasts_checked_at: datetime | None = None
        #: The background delivery thread, if one runs (:func:`klingcost.alerts.kick`).
        self._delivery: threading.Thread | None = None
        self._delivery_again = False

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        clock: Clock | None = None,
        timeout: float = 10.0,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        create: bool = True,
        read_only: bool = False,
    ) -> Self:
        """Open (creating and migrating as needed) the ledger at ``path`` or the default one.

        ``path`` is a file (SQLite) or a ``postgresql://`` URL (PostgreSQL). Order: ``path``,
        ``KLINGCOST_LEDGER``, ``$KLINGCOST_HOME/ledger.db``, ``~/.klingcost/ledger.db``.
        ``timeout`` is how long a write waits for a lock (the file's, or a budget row's).
        ``synchronous="FULL"`` makes every SQLite write survive a power loss too (an fsync
        each); PostgreSQL's durability is the server's (``synchronous_commit``).
        ``create=False`` refuses (LedgerNotFound) a ledger file that does not exist yet, rather
        than make an empty one: what a command that only reads wants (a mistyped path must not
        read as "no spending").
        ``read_only=True`` (implies ``create=False``) opens it for reading only, so that a
        read-only file, directory or database role can be read; every write then raises
        LedgerError. A SQLite file reached under two paths (a hard link, a file bind-mounted on
        its own) is refused with LedgerSetupError: see :mod:`klingcost.ledger._one_path`.
        """
        location = os.fspath(path) if path is not None else default_ledger_path()
        if create and not read_only and path is None and not os.environ.get("KLINGCOST_LEDGER"):
            prepare_home(Path(location))
        if (read_only or not create) and not is_postgres_url(location):
            file = Path(location).expanduser()
            if not file.exists():
                raise LedgerNotFound(
                    f"no ledger at {file}: check --ledger / KLINGCOST_LEDGER "
                    "(`klingcost budget set` starts one)"
                )
        backend = open_backend(
            location, timeout=timeout, synchronous=synchronous, read_only=read_only
        )
        return cls(backend, clock=clock or SystemClock(), timeout=timeout)

    @property
    def read_only(self) -> bool:
        """Opened with ``read_only=True``: every write raises LedgerError."""
        return self.backend.read_only

    @property
    def dialect(self) -> Dialect:
        """``sqlite`` or ``postgres``."""
        return self.backend.dialect

    @property
    def conn(self) -> Any:
        """The driver's connection (sqlite3, or psycopg for PostgreSQL), in autocommit mode.

        Its SQL is the database's own; :meth:`execute` takes the ledger's (``?`` placeholders)
        on either backend.
        """
        return self.backend.raw

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        """Run one statement written for SQLite (``?`` placeholders) on either backend, in its
        own transaction; the driver's errors become LedgerError."""
        with self.reading():
            return self._db.execute(sql, parameters)

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the connection's lock (re-entrant) while reading through it, and turn the
        driver's errors into LedgerError: a damaged file or a lost server is the ledger's
        failure, never a raw sqlite3/psycopg error. Readers in other modules use it too."""
        with self._lock:
            try:
                yield
            except LedgerError:
                raise
            except (OverflowError, UnicodeEncodeError) as exc:  # the driver could not bind it
                raise LedgerValueError(
                    f"ledger {self.path}: a value cannot be stored ({type(exc).__name__}: {exc})"
                ) from exc
            except Exception as exc:
                if type(exc).__module__.split(".")[0] not in ("sqlite3", "psycopg"):
                    raise
                raise LedgerError(f"ledger {self.path} failed: {exc}") from exc

    def close(self) -> None:
        delivery = self._delivery
        if delivery is not None:  # an alert on its way: give it a moment to leave
            delivery.join(outbox.CLOSE_WAIT)
        self.backend.close()

    @contextmanager
    def background_checkpoints(
        self, *, interval: float = 0.05, cap_pages: int = CAP_PAGES
    ) -> Iterator[Checkpointer | None]:
        """Run SQLite's WAL checkpoints in a thread while the block runs (for servers).

        This connection's inline auto-checkpoint is raised to ``cap_pages`` meanwhile (default
        :data:`klingcost.ledger.checkpointer.CAP_PAGES`) and set back after: a request checkpoints
        only when the WAL reaches the cap, which happens when writes come back to back with no
        gap for the thread's checkpoint to finish in (a WAL starts over only at a write that
        finds it all copied); that inline checkpoint then finds the thread's work done and
        copies only the rest. PostgreSQL: nothing to do (yields None).
        """
        if self.dialect != "sqlite":
            yield None
            return
        checkpointer = Checkpointer(Path(self.path), interval=interval)
        with checkpointer:
            self._autocheckpoint(cap_pages)
            try:
                yield checkpointer
            finally:
                self._autocheckpoint(INLINE_PAGES)

    def _autocheckpoint(self, pages: int) -> None:
        try:
            with self.reading():
                self._db.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}").fetchall()
        except LedgerError:  # closed meanwhile: nothing left to set
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # ``path`` is the file, or the URL without its passwords (backends.redact).
        return f"Ledger({str(self.path)!r})"

    __str__ = __repr__

    # --- transactions ---------------------------------------------------------------------

    def _write(self, operation: Callable[[DB], T]) -> T:
        """Run ``operation`` in one write transaction (SQLite: BEGIN IMMEDIATE, retried while
        the file is busy; PostgreSQL: READ COMMITTED, retried when it loses a race).

        A transaction that enqueued alerts starts their delivery in the background once it
        has committed (:func:`klingcost.alerts.kick`): never before (a rolled-back alert must
        not be sent), and never in the caller's way."""
        with self.reading():
            self._enqueued = False
            result = self.backend.write(operation)
            enqueued, self._enqueued = self._enqueued, False
        if enqueued and self.deliver_in_background:
            outbox.kick(cast("Ledger", self))
        return result

    def _read(self, operation: Callable[[DB], T]) -> T:
        """Run reads in one snapshot."""
        with self.reading():
            return self.backend.read(operation)

    def _event(
        self,
        conn: DB,
        at: str,
        kind: str,
        hold: int | None,
        team: str | None,
        **data: Any,
    ) -> None:
        text = json.dumps(data, separators=(",", ":"), default=str)
        if kind not in outbox.EVENT_KINDS:  # the common case: no alert, nothing more
            conn.execute(_EVENT_SQL, (at, kind, hold, team, text))
            return
        # An alert event: its outbox rows are written in this same transaction.
        row = conn.execute(_EVENT_SQL + " RETURNING id", (at, kind, hold, team, text)).fetchone()
        if outbox.enqueue(conn, row[0], kind, team, data, at):
            self._enqueued = True  # _write kicks a delivery once the transaction commits
