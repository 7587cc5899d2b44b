"""The documentation matches the tool: every command has help and is in the README, and CI
runs exactly the README's test command."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from klingcost.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
#: The pages a person reads to learn a command (the generated reference does not count).
GUIDES = {
    page.name: page.read_text(encoding="utf-8")
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    if page.name != "cli.md"
}


def _commands(group: click.Group, prefix: str = "klingcost") -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)  # list_commands/get_command: the top group loads them lazily
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from _commands(command, path)


COMMANDS = list(_commands(main))


def test_the_cli_has_the_commands_the_issues_name() -> None:
    paths = {path for path, _ in COMMANDS}
    expected = {
        "klingcost estimate",
        "klingcost prices",
        "klingcost budget set",
        "klingcost budget show",
        "klingcost budget list",
        "klingcost holds",
        "klingcost holds void",
        "klingcost ledger check",
        "klingcost submit",
        "klingcost sync",
        "klingcost hooks serve",
        "klingcost fake-server",
        "klingcost demo",
    }
    assert expected <= paths, expected - paths


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_command_has_help_and_is_documented(path: str, command: click.Command) -> None:
    assert command.help and command.help.strip(), f"{path} has no help text"
    result = CliRunner().invoke(main, [*path.split()[1:], "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert any(f"`{path}" in text or f"$ {path}" in text for text in GUIDES.values()), (
        f"{path} is in no guide (README.md or docs/*.md): say there what it is for"
    )


def test_every_option_has_help() -> None:
    for path, command in COMMANDS:
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"{path} {param.opts} has no help"


def test_exit_codes_are_documented_in_help_and_readme() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert "0 ok, 1 error, 2 invalid input, 3 refused by a budget" in result.output
    assert "**Exit codes:** 0 ok; 1 error" in README


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"^    (python3 -m venv \.venv .*)$", README, flags=re.M)
    assert len(commands) == 2, commands  # exactly two commands for a newcomer
    demo, tests = commands
    assert demo.endswith("klingcost demo")
    assert tests.endswith("pytest -q")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci


def test_the_cli_reference_is_generated_from_the_commands_help() -> None:
    ran = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    reference = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for path, _ in COMMANDS:
        assert f"## `{path}`" in reference, path


def test_the_readme_stays_short_and_links_every_guide() -> None:
    assert len(README.splitlines()) <= 150
    for page in sorted((ROOT / "docs").glob("*.md")):
        linked = f"](docs/{page.name})" in README
        assert linked or any(f"]({page.name})" in text for text in GUIDES.values()), page.name
