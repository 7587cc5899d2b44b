"""Write docs/cli.md, the command line reference, from the click commands' own help.

    python scripts/cli_reference.py          # rewrite docs/cli.md
    python scripts/cli_reference.py --check  # exit 1 if docs/cli.md is not current

tests/test_docs.py runs the check, so the reference can never drift from ``--help``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

from klingcost.cli import main

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "cli.md"
WIDTH = 100  # fixed, so the text does not depend on the terminal that ran the script

INTRO = """\
# Command line reference

Generated from each command's `--help` by `scripts/cli_reference.py` (a test keeps it current;
after changing a command, run `python scripts/cli_reference.py`). The guides in this folder
explain the commands with examples; this page lists every option.
"""


def _contexts(
    command: click.Command, parent: click.Context | None, name: str
) -> Iterator[click.Context]:
    ctx = click.Context(
        command, info_name=name, parent=parent, terminal_width=WIDTH, max_content_width=WIDTH
    )
    yield ctx
    if isinstance(command, click.Group):
        for sub in sorted(command.list_commands(ctx)):
            child = command.get_command(ctx, sub)
            if child is not None and not child.hidden:
                yield from _contexts(child, ctx, sub)


def render() -> str:
    """The whole reference page."""
    parts = [INTRO]
    for ctx in _contexts(main, None, "klingcost"):
        parts.append(f"\n## `{ctx.command_path}`\n\n```text\n{ctx.get_help()}\n```\n")
    return "".join(parts)


def cli(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        if REFERENCE.read_text(encoding="utf-8") != text:
            print(f"{REFERENCE} is stale: run python scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
