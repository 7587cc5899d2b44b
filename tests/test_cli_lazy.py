"""The top-level CLI loads a command's module only when that command runs (issue 14 item 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from klingcost.cli import COMMANDS, LazyGroup, load_command, main

# What `klingcost --help` must not load: each costs tens of ms and none is needed to list.
HEAVY = ("pydantic", "httpx", "sqlite3", "asyncio", "yaml", "klingcost.ledger")


def _modules_after(argv: list[str], tmp_path: Path) -> set[str]:
    """The modules a fresh `klingcost ARGV` process has imported when it exits."""
    out = tmp_path / "modules.json"
    code = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: open({str(out)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n"
        "from klingcost.cli import main\n"
        f"main({argv!r}, prog_name='klingcost')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KLINGCOST_PRICING"}
    subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, env=env, timeout=60
    )
    return set(json.loads(out.read_text()))


def _loaded(modules: set[str], name: str) -> bool:
    return name in modules or any(m.startswith(name + ".") for m in modules)


def test_top_level_help_imports_no_command_and_nothing_heavy(tmp_path: Path) -> None:
    modules = _modules_after(["--help"], tmp_path)
    assert "click" in modules  # the probe saw the process
    for heavy in HEAVY:
        assert not _loaded(modules, heavy), f"klingcost --help imported {heavy}"
    commands = {m for m in modules if m.startswith("klingcost.cli.") and m.endswith("_cmd")}
    assert commands == set()


def test_estimate_loads_neither_the_ledger_nor_http_nor_yaml(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text(
        json.dumps({"endpoint": "text2video", "body": {"prompt": "a ship", "duration": 5}})
    )
    modules = _modules_after(["estimate", str(body)], tmp_path)
    assert "klingcost.cli.estimate_cmd" in modules
    assert "klingcost.pricing" in modules
    # yaml: the bundled sheet is read from its frozen JSON (see test_sheet.py)
    # pydantic: a body of plain fields is read without it (klingcost.request.plain)
    for heavy in ("httpx", "sqlite3", "asyncio", "yaml", "klingcost.ledger", "pydantic"):
        assert not _loaded(modules, heavy), f"klingcost estimate imported {heavy}"
    for other in ("submit", "sync", "hooks", "budget", "holds", "ledger", "report"):
        assert f"klingcost.cli.{other}_cmd" not in modules


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_in_the_table_loads_with_its_own_short_help(name: str) -> None:
    command = load_command(name)
    assert isinstance(command, click.Command)
    assert command.name == name
    # The table's short help is the command's own (its first sentence), word for word.
    assert COMMANDS[name][1] == command.get_short_help_str(limit=10_000)


def test_help_lists_every_command_as_if_all_were_loaded() -> None:
    lazy = CliRunner().invoke(LazyGroup(name="klingcost", help=main.help), ["--help"])
    eager = click.Group(name="klingcost", help=main.help)
    for name in COMMANDS:
        eager.add_command(load_command(name), name)
    expected = CliRunner().invoke(eager, ["--help"])
    assert lazy.exit_code == 0 and expected.exit_code == 0
    assert lazy.output == expected.output
    for name in COMMANDS:
        assert f"\n  {name} " in lazy.output


def test_an_unknown_command_is_exit_2_naming_it() -> None:
    result = CliRunner().invoke(main, ["estimat"])
    assert result.exit_code == 2
    assert "No such command 'estimat'" in result.output
