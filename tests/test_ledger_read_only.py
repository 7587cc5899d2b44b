"""A read-only ledger can be read (issue 13, item 18).

``budget list``, ``budget show``, ``holds``, ``ledger check``, ``report`` and ``reconcile``
failed on a read-only file with "attempt to write a readonly database". They now open the
ledger read-only (SQLite ``mode=ro``; ``immutable=1`` when the directory cannot take the WAL's
index and there is no log to read). The commands run in a separate process as an ordinary user:
as root, that is ``nobody`` (root writes through chmod); otherwise the test's own user.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from klingcost.budgets import HoldAmounts
from klingcost.errors import LedgerError
from klingcost.ledger import Ledger

AMOUNTS = HoldAmounts(units_milli=7000, pack="video", cost_minor=105_000, currency="credits")
READERS = (
    ["budget", "list"],
    ["budget", "show", "team", "--json"],
    ["holds", "--json"],
    ["ledger", "check"],
    ["report", "--by", "team"],
    ["report", "--tasks", "--format", "csv"],  # streams from a second, snapshot connection
    ["reconcile"],
)
#: Runs each command in one process with click's runner; prints what each did, as JSON.
_RUN = """
import json, sys
from click.testing import CliRunner
from klingcost.cli import main
ledger, commands = sys.argv[1], json.loads(sys.argv[2])
out = []
for args in commands:
    r = CliRunner().invoke(main, [*args, "--ledger", ledger])
    out.append([r.exit_code, r.output])
print(json.dumps(out))
"""


def _as_reader(ledger: Path, commands: list[list[str]]) -> list[tuple[int, str]]:
    """The commands' exit codes and output, run by a user who cannot write the ledger."""
    drop = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("as root, the test needs setpriv(1) to read as nobody")
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        # A checkout inside a private folder (mktemp -d is 0700) is out of nobody's reach.
        probe = [*drop, sys.executable, "-c", "import klingcost.cli"]
        if subprocess.run(probe, capture_output=True, cwd="/", timeout=60).returncode != 0:
            pytest.skip("nobody cannot run this checkout's Python (a private parent folder)")
    env = {**os.environ, "HOME": str(ledger.parent), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("KLINGCOST_LEDGER", None)
    done = subprocess.run(
        [*drop, sys.executable, "-c", _RUN, str(ledger), json.dumps(commands)],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [(code, output) for code, output in json.loads(done.stdout)]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the reader can reach (pytest's tmp_path is private to its owner)."""
    base = Path(tempfile.mkdtemp(prefix="klingcost-ro-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for path in (base, *base.rglob("*")):
            with contextlib.suppress(OSError):
                path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(base, ignore_errors=True)


def _ledger(directory: Path) -> Path:
    path = directory / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("team", limit=10**6)
        hold = ledger.reserve("team", AMOUNTS, key="a", meta={"model": "kling-v1-5"})
        ledger.attach(hold.id, "task-1")
        ledger.settle(hold.id, units_milli=7000, cost_minor=105_000, raw_deduction="7")
        ledger.reserve("team", AMOUNTS, key="b")
    return path


def _assert_every_reader_works(results: list[tuple[int, str]]) -> None:
    for args, (code, output) in zip(READERS, results, strict=True):
        assert code == 0, (args, output)
        assert "readonly" not in output and "Error" not in output, (args, output)
    assert json.loads(results[1][1])["held_minor"] == 105_000
    assert [h["key"] for h in json.loads(results[2][1])] == ["a", "b"]
    assert "OK: SQLite's quick_check found no damage" in results[3][1]


def test_a_read_only_file_in_a_writable_directory(shared_dir: Path) -> None:
    path = _ledger(shared_dir)
    path.chmod(0o444)
    shared_dir.chmod(0o777)  # the reader may make the -shm beside it
    before = path.read_bytes()
    _assert_every_reader_works(_as_reader(path, [list(a) for a in READERS]))
    assert path.read_bytes() == before


def test_a_read_only_file_in_a_read_only_directory(shared_dir: Path) -> None:
    """No -shm can be made and there is no -wal: the file is read as immutable."""
    directory = shared_dir / "ro"
    directory.mkdir()
    path = _ledger(directory)
    assert not Path(f"{path}-wal").exists()  # the last close folded the log into the file
    path.chmod(0o444)
    directory.chmod(0o555)
    _assert_every_reader_works(_as_reader(path, [list(a) for a in READERS]))
    assert sorted(p.name for p in directory.iterdir()) == ["ledger.db"]


def test_a_reader_sees_what_a_live_writer_has_not_checkpointed(shared_dir: Path) -> None:
    """The writer keeps the ledger open, its last hold only in the -wal: the reader, who may
    not write the -shm, still reads through it (never the stale file alone)."""
    directory = shared_dir / "live"
    directory.mkdir()
    path = _ledger(directory)
    with Ledger.open(path) as writer:
        writer.reserve("team", AMOUNTS, key="c")
        assert Path(f"{path}-wal").stat().st_size > 0
        path.chmod(0o444)
        directory.chmod(0o555)
        [(code, output)] = _as_reader(path, [["budget", "show", "team", "--json"]])
        assert code == 0, output
        assert json.loads(output)["held_minor"] == 2 * 105_000


def test_a_log_that_cannot_be_read_is_refused_not_skipped(shared_dir: Path) -> None:
    """A -wal with transactions and no -shm, in a directory the reader cannot write: reading
    the file alone would miss them, so the reader is told what to do instead."""
    directory = shared_dir / "crashed"
    directory.mkdir()
    path = _ledger(directory)
    crash = (  # a writer that dies without closing: its log stays
        "import os, sys\nfrom klingcost.ledger import Ledger\nfrom klingcost.budgets import "
        "HoldAmounts\nl = Ledger.open(sys.argv[1])\nl.reserve('team', HoldAmounts(7000, "
        "'video', 105000, 'credits'), key='c')\nos._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", crash, str(path)], check=True)
    assert Path(f"{path}-wal").stat().st_size > 0
    Path(f"{path}-shm").unlink()
    for name in ("ledger.db", "ledger.db-wal"):
        (directory / name).chmod(0o444)
    directory.chmod(0o555)
    [(code, output)] = _as_reader(path, [["budget", "list"]])
    assert code == 1
    assert "write-ahead log" in output and "holds transactions" in output
    assert "Traceback" not in output
    directory.chmod(0o755)  # the owner opens it once: the log is folded in, every hold counts
    with Ledger.open(path) as ledger:
        assert ledger.budget_status("team").held == 2 * 105_000


def test_a_read_only_ledger_refuses_every_write(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as ledger:
        ledger.set_budget("team", limit=10**6)
    with Ledger.open(ledger_url, read_only=True) as reader:
        assert reader.read_only
        assert reader.budget_status("team").limit == 10**6
        with pytest.raises(LedgerError, match="opened read-only: nothing was written"):
            reader.reserve("team", AMOUNTS)
        with pytest.raises(LedgerError, match="opened read-only: nothing was written"):
            reader.set_budget("team", limit=1)
    with Ledger.open(ledger_url) as ledger:
        assert ledger.budget_status("team").held == 0
        assert ledger.get_budget("team").limit == 10**6


def test_a_missing_ledger_is_not_created_by_a_reader(tmp_path: Path) -> None:
    from klingcost.errors import LedgerNotFound

    with pytest.raises(LedgerNotFound):
        Ledger.open(tmp_path / "typo.db", read_only=True)
    assert list(tmp_path.iterdir()) == []
