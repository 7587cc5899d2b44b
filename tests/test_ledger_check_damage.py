"""``ledger check`` reports a damaged file as SQLite sees it (issue 13, item 17).

The review corrupted 60 ledger files; ``ledger check``, which only recomputed the balances,
said OK for 24 that ``PRAGMA integrity_check`` reported. It now runs SQLite's ``quick_check``
first (``--full``: ``integrity_check``) and exits 1 with what SQLite said. The files here are
real ledgers with pages overwritten, zeroed, swapped, cut off, or one byte changed.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from klingcost.budgets import HoldAmounts
from klingcost.cli import main
from klingcost.ledger import Ledger

AMOUNTS = HoldAmounts(units_milli=7000, pack="video", cost_minor=105_000, currency="credits")
Damage = Callable[[bytearray, int, dict[str, list[int]]], None]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, dict[str, list[int]]]:
    """A ledger of 400 holds (half settled), closed; its page size and each tree's pages."""
    path = tmp_path_factory.mktemp("damage") / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("team", limit=10**12)
        for i in range(400):
            hold = ledger.reserve("team", AMOUNTS, key=f"job-{i:05d}", meta={"prompt": "x" * 40})
            if i % 2:
                ledger.attach(hold.id, f"task-{i:05d}")
                ledger.settle(hold.id, units_milli=7000, cost_minor=105_000, raw_deduction="7")
    with sqlite3.connect(path) as conn:
        try:
            rows = conn.execute("SELECT name, pageno FROM dbstat WHERE pagetype = 'leaf'")
        except sqlite3.OperationalError:
            pytest.skip("this SQLite has no dbstat table to find the pages with")
        pages: dict[str, list[int]] = {}
        for name, number in rows:
            pages.setdefault(name, []).append(number)
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    return path, size, pages


def _damaged(pristine: tuple[Path, int, dict[str, list[int]]], tmp: Path, damage: Damage) -> Path:
    path, size, pages = pristine
    data = bytearray(path.read_bytes())
    damage(data, size, pages)
    copy = tmp / "damaged.db"
    copy.write_bytes(bytes(data))
    return copy


def _check(path: Path, *options: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["ledger", "check", *options, "--ledger", str(path)])
    return result.exit_code, result.output


def _sqlite_says(path: Path, pragma: str) -> bool:
    """The oracle: does plain SQLite find this file damaged?"""
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
            rows = conn.execute(f"PRAGMA {pragma}").fetchall()
    except sqlite3.DatabaseError:
        return True
    finally:
        conn.close()
    return [r[0] for r in rows] != ["ok"]


def _balances_only(conn: Any) -> list[Any]:
    """What ``ledger check`` did before: recompute the balances and rollups, nothing else."""
    from klingcost.ledger.audit import _check as recompute

    return recompute(conn)


def _page(size: int, number: int) -> slice:
    return slice((number - 1) * size, number * size)


def test_an_undamaged_ledger_passes_both_checks(
    pristine: tuple[Path, int, dict[str, list[int]]],
) -> None:
    for options in ((), ("--full",)):
        code, output = _check(pristine[0], *options)
        assert code == 0, output
        check = "integrity_check" if options else "quick_check"
        assert f"OK: SQLite's {check} found no damage" in output


def test_swapped_pages_were_ok_to_the_balances_and_are_damage_now(
    pristine: tuple[Path, int, dict[str, list[int]]], tmp_path: Path
) -> None:
    """Two pages of the event log swapped: every balance still adds up (the old check said
    OK), but the rows are out of order, as SQLite says."""

    def swap(data: bytearray, size: int, pages: dict[str, list[int]]) -> None:
        a, b = pages["events"][3], pages["events"][10]
        data[_page(size, a)], data[_page(size, b)] = data[_page(size, b)], data[_page(size, a)]

    path = _damaged(pristine, tmp_path, swap)
    with Ledger.open(path, read_only=True) as ledger:
        assert ledger._read(_balances_only) == []
    code, output = _check(path)
    assert code == 1
    assert output.startswith("DAMAGED: SQLite's own check")
    assert "out of order" in output and "Restore the ledger from a backup" in output
    data = json.loads(_check(path, "--json")[1])
    assert data["ok"] is False and data["damaged"] is True
    assert data["storage_check"] == "quick_check"


def test_a_row_that_no_longer_matches_its_index_needs_full(
    pristine: tuple[Path, int, dict[str, list[int]]], tmp_path: Path
) -> None:
    """One byte of a hold's key changed in the table: every page is well formed (quick_check
    passes, and so do the balances), but the key is missing from its UNIQUE index."""

    def one_byte(data: bytearray, size: int, pages: dict[str, list[int]]) -> None:
        number = pages["holds"][2]
        at = bytes(data[_page(size, number)]).index(b"job-0")
        data[(number - 1) * size + at + 2] = ord("x")

    path = _damaged(pristine, tmp_path, one_byte)
    code, output = _check(path)
    assert code == 0, output  # quick_check does not match indexes to tables
    code, output = _check(path, "--full")
    assert code == 1
    assert "integrity_check" in output and "missing from index" in output


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("garbage", "malformed"),
        ("zeroed", "malformed"),
        ("truncated", "malformed"),
        ("page count", "malformed"),
    ],
)
def test_broken_pages_are_reported_with_sqlites_words(
    pristine: tuple[Path, int, dict[str, list[int]]], tmp_path: Path, kind: str, expected: str
) -> None:
    def damage(data: bytearray, size: int, pages: dict[str, list[int]]) -> None:
        leaf = pages["holds"][len(pages["holds"]) // 2]
        if kind == "garbage":
            data[_page(size, leaf)] = random.Random(7).randbytes(size)
        elif kind == "zeroed":
            data[_page(size, leaf)] = bytes(size)
        elif kind == "truncated":
            del data[len(data) - 5 * size :]
        else:  # the header's page count, far past the file's end
            data[28:32] = (10**6).to_bytes(4, "big")

    code, output = _check(_damaged(pristine, tmp_path, damage))
    assert code == 1, output
    assert expected in output and "Traceback" not in output
    assert "OK" not in output


def test_every_file_sqlite_finds_damaged_fails_the_check(
    pristine: tuple[Path, int, dict[str, list[int]]], tmp_path: Path
) -> None:
    """40 random damages (a page overwritten, zeroed, copied over another, or a few bytes
    flipped): whenever plain SQLite's quick_check (integrity_check) finds one, ``ledger
    check`` (``--full``) exits 1, never OK."""
    rng = random.Random(13)
    found = 0
    for round_ in range(40):
        how = round_ % 4

        def damage(data: bytearray, size: int, pages: dict[str, list[int]], how: int = how) -> None:
            number = rng.randrange(2, len(data) // size + 1)
            if how == 0:
                data[_page(size, number)] = rng.randbytes(size)
            elif how == 1:
                data[_page(size, number)] = bytes(size)
            elif how == 2:
                other = rng.randrange(2, len(data) // size + 1)
                data[_page(size, number)] = data[_page(size, other)]
            else:
                for _ in range(4):
                    data[(number - 1) * size + rng.randrange(size)] = rng.randrange(256)

        path = _damaged(pristine, tmp_path, damage)
        for pragma, options in (("quick_check", ()), ("integrity_check", ("--full",))):
            if _sqlite_says(path, pragma):
                found += 1
                code, output = _check(path, *options)
                assert code == 1, (round_, pragma, output)
                assert "OK" not in output
        shutil.rmtree(tmp_path / "damaged.db", ignore_errors=True)
    assert found >= 20  # most damages are real ones: the test looked at enough of them
