"""What the ledger sees of a database: a statement runner (:class:`DB`), its cursors, and one
open backend (:class:`Backend`). SQLite (:mod:`klingcost.ledger._sqlite`) and PostgreSQL
(:mod:`klingcost.ledger._postgres`) each implement :class:`Backend`; the ledger's operations are
written once against :class:`DB`, in SQL both databases run, with ``?`` placeholders.

A leaf: the backends import these protocols, and nothing here imports a backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

T = TypeVar("T")
Dialect = Literal["sqlite", "postgres"]


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


__all__ = ["DB", "Backend", "Cursor", "Dialect"]
