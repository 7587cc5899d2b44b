"""One ledger file, one path: a SQLite ledger reached under a second name is refused.

SQLite keeps a WAL database's write-ahead log and its shared-memory index in files named after
the path the database was opened by (``PATH-wal`` and ``PATH-shm``; symbolic links are resolved
first, so a symlink is safe). One file under two names gives each name its own log and index:
writers on different names do not see each other's transactions, each admits holds against
the same remaining budget, and one side's checkpoint later overwrites the other's pages.
Measured (tests/test_ledger_one_path.py): four processes on two names of one file admitted 200
holds of 1,000 credits against a 100,000 limit, and nothing in the file showed it afterwards.

Two set-ups give a file a second name, and both are refused when a ledger opens:

* a **hard link**: the file's link count (``st_nlink``) is above one;
* a **single file bind-mounted** on its own (``-v /srv/ledger.db:/data/ledger.db``, a common
  way to hand a file to a container): the path is a mount point, as ``/proc/self/mountinfo``
  lists it. The process that opens the file through the mount is refused; the one that opens
  it at its own place is not, so one side stops before the two can meet.

Both are seen from the path alone, before SQLite opens the file. Once it is open, a third check
catches any other way two paths can meet, a ledger file renamed or replaced while a process
has it open among them, as long as both sides are live: every open WAL connection holds a
read lock on the database file and one on its ``-shm`` index, and ``/proc/locks`` (Linux) lists
them by inode. A process that holds a lock on this ledger's file, none on this path's ``-shm``
and one on another wal-index reaches the file through another index: the open is refused,
naming its pid. (A reader whose ``-shm`` is read-only to it locks no index at all; it cannot
write, and is left alone. Locks are read from /proc rather than probed with fcntl: an extra
descriptor on the file, once closed, would drop the locks SQLite holds on it in this process.)

A directory bind-mounted (``-v /srv/klingcost:/data``) is safe: both sides then name the same
``-wal`` and ``-shm`` files. Network file systems (NFS, SMB) are another matter: their locks do
not hold, and no check here can see that; docs/ledger-promises.md lists the safe set-ups.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Final

from klingcost.errors import LedgerSetupError

MOUNTINFO: Final = Path("/proc/self/mountinfo")
LOCKS: Final = Path("/proc/locks")
#: How long a mismatch may last before it is believed: a connection that is opening or closing
#: holds its lock on the file a moment before (after) its lock on the index.
SETTLE_SECONDS: Final = 2.0
#: A held POSIX lock in /proc/locks: "1: POSIX  ADVISORY  READ 3893 fe:00:4243703 128 128"
#: (a waiter's line has "->" after the number and holds nothing; the end may be "EOF").
_LOCK_LINE = re.compile(
    r"^\d+:\s+POSIX\s+\S+\s+\S+\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s+(\d+)\s+(\d+|EOF)",
    re.M,
)
#: The bytes of a ``-shm`` file SQLite locks (its WAL locks at 120..127, the "dead man
#: switch" at 128, which every connection holds while open).
INDEX_LOCK_BYTES: Final = range(120, 129)
Inode = tuple[int, int, int]

SAFE_SETUPS: Final = (
    "one path per ledger file (remove the other name), a bind mount of the directory that "
    "holds the ledger rather than of the file itself, or PostgreSQL (--ledger "
    "postgresql://...) for workers on several machines or containers; see "
    "docs/ledger-promises.md"
)

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """A mountinfo path: space, tab, newline and backslash are written as octal escapes."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def mount_points(mountinfo: Path = MOUNTINFO) -> frozenset[str]:
    """Every mount point this process sees (empty where there is no ``/proc``: not Linux)."""
    try:
        text = mountinfo.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return frozenset()
    points = set()
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            points.add(_unescape(fields[4]))
    return frozenset(points)


def second_name(path: Path) -> str | None:
    """Why the ledger file at ``path`` has another name, or None when it has just this one."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None  # a new ledger: it has one name until someone gives it another
    if status.st_nlink > 1:
        return f"the file has {status.st_nlink} hard links"
    real = os.path.realpath(path)
    if real in mount_points():
        return f"{real} is a mount point: the file itself is bind-mounted"
    return None


def refuse_second_name(path: Path) -> None:
    """LedgerSetupError when the ledger file at ``path`` is reachable under another name."""
    why = second_name(path)
    if why is not None:
        raise LedgerSetupError(
            f"ledger {path} is one file under two paths ({why}): SQLite gives each path its "
            "own write-ahead log, so writers on the two paths do not see each other and can "
            f"overspend a budget. It was not opened. Safe set-ups: {SAFE_SETUPS}"
        )


def _inode(path: str) -> Inode | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (os.major(status.st_dev), os.minor(status.st_dev), status.st_ino)


def held_locks(locks: str) -> list[tuple[int, Inode, int, int]]:
    """Each held POSIX lock in ``locks`` (the text of /proc/locks): pid, inode (major, minor,
    number), first and last byte."""
    return [
        (
            int(m.group(1)),
            (int(m.group(2), 16), int(m.group(3), 16), int(m.group(4))),
            int(m.group(5)),
            2**63 if m.group(6) == "EOF" else int(m.group(6)),
        )
        for m in _LOCK_LINE.finditer(locks)
    ]


def other_index_users(locks: str, database: Inode, index: Inode, me: int) -> set[int]:
    """The pids (not ``me``) that hold ``database`` open through another ``-shm`` than
    ``index``: a lock on the file, none on this index, and a wal-index lock on another file.

    The last condition keeps out a reader of this very path whose ``-shm`` is read-only to it:
    SQLite then reads the index without locking it. Such a reader cannot write, and a process
    on another path always locks its own index."""
    held = held_locks(locks)
    on_database = {pid for pid, inode, _, _ in held if inode == database}
    on_index = {pid for pid, inode, _, _ in held if inode == index}
    indexing_elsewhere = {
        pid
        for pid, inode, first, last in held
        if inode not in (database, index)
        and first <= INDEX_LOCK_BYTES[-1]
        and last >= INDEX_LOCK_BYTES[0]
    }
    return (on_database - on_index - {me}) & indexing_elsewhere


def live_second_paths(path: Path, locks_file: Path = LOCKS) -> set[int]:
    """The pids that have the ledger file at ``path`` open through another path's ``-shm``
    (empty when none, or where there is no ``/proc/locks``).

    Call it with a connection of this process open and read, so that this path's ``-shm``
    exists. SQLite puts the index beside the file's real path (symlinks resolved), so it is
    looked for there.
    """
    real = os.path.realpath(path)
    database, index = _inode(real), _inode(f"{real}-shm")
    if database is None or index is None:
        return set()  # no index (an immutable read): nothing to compare
    try:
        locks = locks_file.read_text(encoding="ascii", errors="replace")
    except OSError:
        return set()
    if f"{database[0]:02x}:{database[1]:02x}:{database[2]} " not in locks:
        return set()  # one substring search: no one else holds a lock on this file
    return other_index_users(locks, database, index, os.getpid())


def refuse_a_live_second_path(path: Path, *, settle: float | None = None) -> None:
    """LedgerSetupError when another live process uses the ledger at ``path`` through another
    path's write-ahead log (see the module's doc); a mismatch must last ``settle`` seconds
    (default SETTLE_SECONDS) to be believed."""
    deadline = time.monotonic() + (SETTLE_SECONDS if settle is None else settle)
    delay = 0.05
    while others := live_second_paths(path):
        if time.monotonic() >= deadline:
            pids = ", ".join(str(pid) for pid in sorted(others))
            raise LedgerSetupError(
                f"ledger {path} is one file under two paths: process {pids} has it open "
                "through another path (a hard link, a file bind-mounted on its own, or the "
                "file moved or replaced while it was open), with another write-ahead log, so "
                "writers on the two paths would not see each other and could overspend a "
                f"budget. It was not opened here. Safe set-ups: {SAFE_SETUPS}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


__all__ = [
    "SAFE_SETUPS",
    "held_locks",
    "live_second_paths",
    "mount_points",
    "other_index_users",
    "refuse_a_live_second_path",
    "refuse_second_name",
    "second_name",
]
