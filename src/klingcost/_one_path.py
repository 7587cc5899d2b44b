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

A directory bind-mounted (``-v /srv/klingcost:/data``) is safe: both sides then name the same
``-wal`` and ``-shm`` files. Network file systems (NFS, SMB) are another matter: their locks do
not hold, and no check here can see that; docs/ledger-promises.md lists the safe set-ups.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

from klingcost.errors import LedgerSetupError

MOUNTINFO: Final = Path("/proc/self/mountinfo")

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


__all__ = ["SAFE_SETUPS", "mount_points", "refuse_second_name", "second_name"]
