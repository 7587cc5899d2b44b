"""The examples of the README and the guides run as written, in order, and print what they show.

Each page's `$ ...klingcost ...` lines run in one shell environment of their own (a fresh
KLINGCOST_HOME, the examples folder beside it), as a reader would type them:
- `export NAME=VALUE` changes the environment of the lines after it;
- `klingcost fake-server ... &` starts the fake API, and its `export` lines are applied, as a
  reader pastes them (a page that needs the API without starting it gets one the same way);
- other lines ending in `&` run together, and the next line waits for them;
- a block whose first line is `# NAME.yaml` (or .json) is a file the reader saves as NAME;
- `# exit N` after a command says it ends with exit code N (an error the page shows);
- every output line a page shows under a command must appear in what it printed (task ids
  aside).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import fresh_postgres_url

ROOT = Path(__file__).resolve().parent.parent
TASK_ID = re.compile(r"\b\d{15,}\b")
COMMAND = re.compile(r"^(?:\w+=\S+\s+)*(?:klingcost|export|echo) ")
SAVED_FILE = re.compile(r"# ([\w.-]+\.(?:yaml|json))\b")
FAKE = "klingcost fake-server --port 0 --key sk-test"


@dataclass
class Step:
    command: str
    shown: list[str] = field(default_factory=list)
    exit_code: int = 0
    saves: str | None = None  # the file name of a block the reader saves (command unused)


def page_steps(text: str) -> list[Step]:
    """The `$ ` commands of a page's indented blocks, each with the lines shown under it."""
    steps: list[Step] = []
    current: Step | None = None  # the command whose output the block shows next
    saving: Step | None = None  # a file block being read
    for line in text.splitlines():
        if saving is not None:
            if line.startswith("    ") and line.strip():
                saving.shown.append(line[4:])
                continue
            saving = None
        if (m := SAVED_FILE.match(line.strip())) and line.startswith("    # "):
            saving = Step("", saves=m[1])
            steps.append(saving)
            current = None
        elif line.startswith("    $ "):
            command, _, comment = line[6:].partition("  #")  # a comment after two spaces
            current = Step(command.strip()) if COMMAND.match(command.strip()) else None
            if current is not None:
                if m := re.search(r"\bexit (\d)\b", comment):
                    current.exit_code = int(m[1])
                steps.append(current)
        elif line.startswith("    ") and current is not None and line.strip():
            current.shown.append(line[4:].rstrip())
        elif line.strip():  # prose: the block ended
            current = None
    return steps


#: Periods and days depend on the day the test runs: 2026-12-03, 2026-12, 2026-W49.
PERIOD = re.compile(r"\b\d{4}-(?:W\d{2}|\d{2}-\d{2}|\d{2})\b")


def _shows(printed: str, line: str) -> bool:
    """Whether ``printed`` has ``line``; a "..." in it stands for any text within one line."""
    if "..." not in line:
        return line in printed
    pattern = ".*?".join(re.escape(part) for part in line.split("..."))
    return re.search(pattern, printed) is not None


def _normal(text: str) -> str:
    return PERIOD.sub("<period>", TASK_ID.sub("<task>", text))


@contextmanager
def _server(command: str, cwd: Path, env: dict[str, str]) -> Iterator[None]:
    """Start ``command`` (the fake API) and apply the `export` lines it prints to ``env``."""
    server = subprocess.Popen(
        command.split(), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if m := re.fullmatch(r"\s*export (\w+)=(\S+)\s*", line):
                env[m[1]] = m[2]
                if m[1] == "KLINGCOST_API_KEY":
                    break
        yield
    finally:
        server.terminate()
        server.communicate(timeout=10)  # reads and closes its stdout


#: Commands that serve until Ctrl-C, as a reader runs them in a terminal of their own.
SERVERS = (["klingcost", "ui"], ["klingcost", "proxy"], ["klingcost", "hooks", "serve"])


def _serves(command: str, cwd: Path, env: dict[str, str]) -> None:
    """``command`` starts and says where it listens; then it is stopped with Ctrl-C."""
    server = subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert "http://" in first, (command, first, server.poll())
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=20)


def _run(script: str, cwd: Path, env: dict[str, str], exit_code: int = 0) -> str:
    ran = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip
    assert ran.returncode == exit_code, (script, ran.stdout, ran.stderr)
    return _normal(ran.stdout + ran.stderr)


def _without(text: str, heading: str) -> str:
    """``text`` without the section under ``heading`` (one another test runs)."""
    if heading not in text:
        return text
    before, after = text.split(heading, 1)
    rest = after.split("\n## ", 1)
    return before + ("\n## " + rest[1] if len(rest) == 2 else "")


def run_page(page: str, tmp_path: Path, overrides: dict[str, str] | None = None) -> None:
    # The README's proxy section has a test of its own (test_proxy_readme.py), with curl.
    text = _without((ROOT / page).read_text(encoding="utf-8"), "## Proxy:")
    steps = page_steps(text)
    assert steps, f"{page} has no commands"
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {
        **os.environ,
        "KLINGCOST_HOME": str(tmp_path / "home"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("KLINGCOST_LEDGER", "KLINGCOST_PRICING", "KLINGCOST_HOOK_URL", "KLINGCOST_DEBUG"):
        env.pop(name, None)
    background: list[str] = []
    with ExitStack() as servers:
        if not any(s.command.startswith("klingcost fake-server") for s in steps):
            servers.enter_context(_server(FAKE, tmp_path, env))  # "with the fake API running"
        for step in steps:
            if step.saves is not None:
                (tmp_path / step.saves).write_text("\n".join(step.shown) + "\n", encoding="utf-8")
                continue
            command = step.command.replace("/tmp/", f"{tmp_path}/")
            if m := re.fullmatch(r"export (\w+)=(.*)", command):
                name = m[1]
                value = (overrides or {}).get(name) or m[2].strip("'\"")
                env[name] = os.path.expandvars(value)
                continue
            if command.startswith("klingcost fake-server") and command.endswith("&"):
                servers.enter_context(_server(command.rstrip("& "), tmp_path, env))
                continue
            if command.endswith("&"):
                background.append(command.rstrip("& "))
                continue
            if command.split()[:2] in SERVERS or command.split()[:3] in SERVERS:
                _serves(command, tmp_path, env)  # runs until Ctrl-C: it starts, and stops
                continue
            if background:  # the lines sent to the background, then a wait for each
                jobs = "".join(f"{c} & p{i}=$!; " for i, c in enumerate(background))
                waits = " && ".join(f"wait $p{i}" for i in range(len(background)))
                _run(jobs + waits, tmp_path, env)
                background.clear()
            printed = _run(command, tmp_path, env, step.exit_code)
            for line in step.shown:
                assert _shows(printed, _normal(line)), (page, command, line, printed)


def test_the_readme_examples_run_in_order(tmp_path: Path) -> None:
    run_page("README.md", tmp_path)
    assert (tmp_path / "spending.csv").read_text(encoding="utf-8").startswith("kind,team,")


def test_the_reports_guide_runs_in_order(tmp_path: Path) -> None:
    run_page("docs/reports.md", tmp_path)
    assert "amount: '16000'" in (tmp_path / "credits.yaml").read_text(encoding="utf-8")


def test_the_postgresql_guide_runs_in_order(tmp_path: Path) -> None:
    with fresh_postgres_url() as url:
        run_page("docs/postgresql.md", tmp_path, {"KLINGCOST_LEDGER": url})


def test_the_pricing_guide_runs_in_order(tmp_path: Path) -> None:
    run_page("docs/pricing.md", tmp_path)


def test_the_budgets_guide_runs_in_order(tmp_path: Path) -> None:
    run_page("docs/budgets.md", tmp_path)


def test_the_guard_guide_runs_in_order(tmp_path: Path) -> None:
    run_page("docs/guard.md", tmp_path)


@pytest.mark.parametrize("page", ["docs/keys.md", "docs/ui.md", "docs/conventions.md"])
def test_the_other_guides_run_in_order(page: str, tmp_path: Path) -> None:
    # docs/alerts.md is left out: its commands reach Slack and a webhook of the reader's own
    # (tests/test_cli_alerts.py runs each against a receiver on loopback).
    run_page(page, tmp_path)
