"""The README's examples run as written, in order, and print what the README shows.

Each `$ klingcost ...` line of the README runs in one shell environment (a fresh
KLINGCOST_HOME, the examples folder beside it); `klingcost fake-server ... &` starts the fake
API and its `export` lines are applied, as a reader would paste them. Every output line the
README shows under a command must appear in what it printed (task ids aside).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TASK_ID = re.compile(r"\b\d{15,}\b")


@dataclass
class Step:
    command: str
    shown: list[str] = field(default_factory=list)


def readme_steps(text: str) -> list[Step]:
    """The `$ ` commands of the README's indented blocks, each with the lines shown under it."""
    steps: list[Step] = []
    current: Step | None = None  # the command whose output the block shows next
    for line in text.splitlines():
        if line.startswith("    $ "):
            command = line[6:].split("  #")[0].strip()  # a comment after two spaces is prose
            current = Step(command)
            steps.append(current)
        elif line.startswith("    ") and current is not None and line.strip():
            current.shown.append(line[4:].rstrip())
        elif line.strip():  # prose: the block ended
            current = None
    return [s for s in steps if s.command.startswith("klingcost ")]


def _normal(text: str) -> str:
    return TASK_ID.sub("<task>", text)


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[dict[str, str]]:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {
        **os.environ,
        "KLINGCOST_HOME": str(tmp_path / "home"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("KLINGCOST_LEDGER", "KLINGCOST_PRICING", "KLINGCOST_HOOK_URL"):
        env.pop(name, None)
    yield env


def test_the_readme_examples_run_in_order(shell: dict[str, str], tmp_path: Path) -> None:
    steps = readme_steps((ROOT / "README.md").read_text(encoding="utf-8"))
    assert [s.command.split()[1] for s in steps][:3] == ["estimate", "fake-server", "budget"]
    servers: list[subprocess.Popen[str]] = []
    try:
        for step in steps:
            if step.command.endswith("&"):
                server = subprocess.Popen(
                    step.command.rstrip("& ").split(),
                    cwd=tmp_path,
                    env=shell,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
                servers.append(server)
                assert server.stdout is not None
                for line in server.stdout:  # the exports, as a reader pastes them
                    if m := re.fullmatch(r"\s*export (\w+)=(\S+)\s*", line):
                        shell[m[1]] = m[2]
                        if m[1] == "KLINGCOST_API_KEY":
                            break
                continue
            ran = subprocess.run(
                step.command,
                shell=True,
                cwd=tmp_path,
                env=shell,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert ran.returncode == 0, (step.command, ran.stdout, ran.stderr)
            printed = _normal(ran.stdout + ran.stderr)
            for line in step.shown:
                assert _normal(line) in printed, (step.command, line, printed)
    finally:
        for server in servers:
            server.terminate()
            server.communicate(timeout=10)  # reads and closes its stdout
    assert (tmp_path / "spending.csv").read_text(encoding="utf-8").startswith("kind,team,")
