"""WAL checkpoints off the request path, for the processes that serve a SQLite ledger.

A SQLite write in WAL mode appends to ``ledger.db-wal``; a *checkpoint* copies those pages back
into the database file so that the WAL can start over. By default SQLite runs one inline, in
the ``COMMIT`` of whichever write pushed the WAL past ``wal_autocheckpoint`` pages: that request
pays for copying and syncing a thousand pages, and its latency is the p99 of a busy server.

A :class:`Checkpointer` is a thread with its own connection that runs
``PRAGMA wal_checkpoint(PASSIVE)`` whenever another connection has committed since its last
look (``PRAGMA data_version``), at most every ``interval`` seconds. PASSIVE never waits for a
lock and never blocks a reader or a writer. While it runs, the ledger's own connection raises
its ``wal_autocheckpoint`` from :data:`INLINE_PAGES` to :data:`CAP_PAGES`: inline checkpoints
are off in practice, yet a WAL that the thread cannot keep down (a reader holding an old
snapshot, a stalled thread) is still checkpointed inline at the cap, so the WAL stays bounded
with or without the thread. ``journal_size_limit`` truncates a WAL that grew past
:data:`WAL_LIMIT_BYTES` once it starts over.

The servers start one around their work (``klingcost hooks serve``, ``klingcost sync --wait``,
and a proxy would): ``with ledger.background_checkpoints(): ...``
(:meth:`klingcost.ledger.Ledger.background_checkpoints`). A process that writes once and
exits (a CLI submit) keeps SQLite's inline checkpoints.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from types import TracebackType
from typing import Final, Self

logger = logging.getLogger("klingcost.checkpointer")

#: SQLite's default auto-checkpoint (pages): what a connection uses when no thread does it.
INLINE_PAGES: Final = 1000
#: The auto-checkpoint of a connection whose checkpoints a thread runs: the WAL's cap.
CAP_PAGES: Final = 10_000
#: A WAL larger than this is truncated back to it when it starts over.
WAL_LIMIT_BYTES: Final = 64 * 1024 * 1024


class Checkpointer:
    """A background thread that checkpoints the WAL of the SQLite file ``path``."""

    def __init__(self, path: Path, *, interval: float = 0.05) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive seconds (given {interval!r})")
        self.path = path
        self.interval = interval
        #: Checkpoints run so far (each a PASSIVE one after another connection's commit).
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        # Connected here, so that a file that cannot be opened fails the caller, not a thread.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 0")  # PASSIVE never waits; neither does its read
        self._thread = threading.Thread(
            target=self._run, args=(conn,), name="klingcost-checkpointer", daemon=True
        )
        self._thread.start()

    def _run(self, conn: sqlite3.Connection) -> None:
        seen: object = None
        try:
            while not self._stop.wait(self.interval):
                try:
                    # data_version changes when another connection commits: nothing new, no
                    # checkpoint (and no fsync of the database file).
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                    if version == seen:
                        continue
                    seen = version
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # busy or damaged: the inline cap still holds
                    logger.debug("checkpoint of %s skipped: %s", self.path, exc)
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop the thread and wait for it (a checkpoint under way finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["CAP_PAGES", "INLINE_PAGES", "WAL_LIMIT_BYTES", "Checkpointer"]
