"""The accepted-tasks journal: task ids the API accepted that the ledger could not record.

Once the API has accepted a task it will charge for it, so its id must not be lost. The guard
attaches the id to the hold in the ledger; when that fails (the ledger is busy past its
timeout, the disk is full, the process is interrupted), the guard appends one JSON line to this
journal instead, and ``klingcost sync`` replays it (:func:`replay`) before anything else: the
id is attached to its hold, which then settles like any other.

Where it lives: beside a SQLite ledger (``ledger.db`` -> ``ledger.db.accepted.jsonl``), so that
whoever can write the ledger finds it; for PostgreSQL under ``KLINGCOST_HOME``
(``accepted-<hash of the URL without its password>.jsonl``), since a server has no "beside".

The file is append-only: each line is written whole with one ``write`` on a descriptor opened
``O_APPEND`` and fsync'ed, so concurrent writers never interleave and a line that was reported
written survives a crash. Replaying is idempotent (attaching the same task id again changes
nothing), so lines are never removed. A line that cannot be read (cut short by a full disk) is
skipped and reported.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from klingcost import errors
from klingcost.backends import is_postgres_url
from klingcost.home import klingcost_home

if TYPE_CHECKING:
    from klingcost.ledger import Ledger

SUFFIX = ".accepted.jsonl"


@dataclass(frozen=True, slots=True)
class Accepted:
    """One journal line: the API accepted ``task_id`` for ``hold_id`` on ``ledger``."""

    ledger: str
    hold_id: int
    task_id: str
    at: str
    reason: str


def journal_path(location: Path | str, environ: Mapping[str, str] | None = None) -> Path:
    """Where the journal of the ledger at ``location`` (a path, or a URL without password) is."""
    text = str(location)
    if not is_postgres_url(text):
        path = Path(text)
        return path.with_name(path.name + SUFFIX)
    env = os.environ if environ is None else environ
    base = klingcost_home(env)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return base / f"accepted-{digest}.jsonl"


def record(ledger: Ledger, *, hold_id: int, task_id: str, reason: str) -> Path:
    """Append one line for ``task_id`` and make it durable; returns the journal's path.

    Raises OSError when the line could not be written whole (the caller reports the task id).
    """
    path = journal_path(ledger.path)
    line = {
        "ledger": str(ledger.path),
        "hold": hold_id,
        "task_id": task_id,
        "at": ledger.clock.now().isoformat(),
        "reason": reason,
    }
    data = (json.dumps(line, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        written = os.write(fd, data)
        if written != len(data):  # a full disk may write part of it: say so, never pretend
            raise OSError(f"only {written} of {len(data)} bytes written to {path}")
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read(location: Path | str) -> tuple[list[Accepted], list[str]]:
    """The journal's entries for the ledger at ``location``, and a note per unreadable line."""
    path = journal_path(location)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], []
    entries: list[Accepted] = []
    problems: list[str] = []
    for number, text in enumerate(raw.splitlines(), start=1):
        try:
            item = json.loads(text)
            entry = Accepted(
                ledger=str(item["ledger"]),
                hold_id=int(item["hold"]),
                task_id=str(item["task_id"]),
                at=str(item["at"]),
                reason=str(item.get("reason", "")),
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            problems.append(f"{path} line {number} cannot be read ({type(exc).__name__})")
            continue
        # No filter on ``entry.ledger``: the file itself is this ledger's (beside it, or named
        # by its URL), and one SQLite file is reached by more than one spelling of its path.
        if entry.task_id:
            entries.append(entry)
    return entries, problems


def replay(ledger: Ledger) -> tuple[int, list[tuple[int, str]]]:
    """Attach every journaled task id to its hold; returns how many were newly attached and
    ``(hold, why)`` for each entry that could not be (a line unreadable: hold 0)."""
    entries, problems = read(ledger.path)
    failures: list[tuple[int, str]] = [(0, problem) for problem in problems]
    attached = 0
    for entry in entries:
        try:
            before = ledger.get_hold(entry.hold_id)
            if before.task_id == entry.task_id:
                continue  # replayed before
            ledger.attach(entry.hold_id, entry.task_id)
        except errors.LedgerError as exc:
            failures.append((entry.hold_id, f"journaled task {entry.task_id}: {exc}"))
            continue
        attached += 1
    return attached, failures


__all__ = ["SUFFIX", "Accepted", "journal_path", "read", "record", "replay"]
