"""One output convention for every command that prints records (as sqlite-utils has).

A command takes ``--format table|json|jsonl|csv`` (and ``md``, ``html`` where they fit) with
``--json`` kept as the short form of ``--format json``, through :func:`format_option`, and
prints through :func:`print_records`::

    @click.command()
    @format_option()                       # adds --format and --json; passes fmt="table"|...
    def keys_list(fmt: str) -> None:
        records = [{"id": 1, "team": "acme", "spent": "12.50"}]
        print_records(records, ["id", "team", Column("spent", right=True)], fmt,
                      empty="no keys yet")

What each format prints:

- ``table``: an aligned text table of ``columns`` for a person (None shows as ``-``);
- ``json``: the records as given, whole (nested values too), as one indented JSON list;
- ``jsonl``: the same records, one compact JSON object per line (for ``jq`` and streams);
- ``csv``: ``columns`` under a header row, cells a spreadsheet opens safely (a text cell that
  starts like a formula gets a ``'``, as ``report`` writes them);
- ``md``: a GitHub Markdown table of ``columns``; ``html``: one small self-contained page.

Money is never a float: a float anywhere in a record is a TypeError (a bug in the caller),
so amounts reach every format as the exact decimal strings the ledger formats.
"""

from __future__ import annotations

import csv
import functools
import html
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, TypeVar, cast

import click

F = TypeVar("F", bound=Callable[..., Any])

#: Every format there is; a command offers the ones that fit it.
FORMATS: tuple[str, ...] = ("table", "json", "jsonl", "csv", "md", "html")
#: What a command that prints plain records offers by default.
RECORD_FORMATS: tuple[str, ...] = ("table", "json", "jsonl", "csv", "md")

Record = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the table, CSV, Markdown and HTML outputs (JSON prints whole records).

    ``name`` is the header and, unless ``value`` is given, the record's key; ``value`` picks
    or formats the cell from the whole record; ``right`` aligns it right (amounts, counts)."""

    name: str
    value: Callable[[Record], Any] | None = None
    right: bool = False

    def cell(self, record: Record) -> Any:
        return self.value(record) if self.value is not None else record.get(self.name)


def format_option(
    formats: Sequence[str] = RECORD_FORMATS, default: str = "table", *, help: str | None = None
) -> Callable[[F], F]:
    """``--format`` (one of ``formats``) and ``--json`` (short for ``--format json``).

    The command receives one keyword argument, ``fmt``, the chosen format's name. Giving
    ``--json`` with another ``--format`` is refused (exit 2), naming both."""
    unknown = set(formats) - set(FORMATS)
    if unknown or default not in formats:
        raise ValueError(f"unknown format(s) {sorted(unknown)} or default {default!r}")

    def decorator(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, fmt: str | None, as_json: bool, **kwargs: Any) -> Any:
            if as_json:
                if fmt not in (None, "json"):
                    raise click.BadParameter(
                        f"--json is short for --format json, and --format {fmt} was given "
                        "too: give one of them",
                        param_hint="--json",
                    )
                fmt = "json"
            return func(*args, fmt=(fmt or default).lower(), **kwargs)

        # Added after wrapping: functools.wraps copied the options already declared below us.
        with_json = click.option(
            "--json", "as_json", is_flag=True, help="Short for --format json."
        )(wrapper)
        return cast(
            F,
            click.option(
                "--format",
                "fmt",
                type=click.Choice(list(formats), case_sensitive=False),
                default=None,
                help=help
                or f"Output format (default {default}); json keeps exact decimal strings.",
            )(with_json),
        )

    return decorator


def print_records(
    records: Sequence[Record],
    columns: Sequence[str | Column],
    fmt: str,
    *,
    empty: str | None = None,
    title: str = "klingcost",
    out: IO[str] | None = None,
) -> None:
    """Print ``records`` in ``fmt`` (see the module's docstring).

    ``empty`` is what a table says when there are no records (the other formats print an
    empty list, no lines, or a header alone, so a script never parses a sentence)."""
    stream = out if out is not None else sys.stdout
    for record in records:
        _refuse_floats(record)
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    if fmt == "json":
        stream.write(json.dumps(list(map(dict, records)), indent=2, ensure_ascii=False) + "\n")
    elif fmt == "jsonl":
        for record in records:
            stream.write(json.dumps(dict(record), ensure_ascii=False) + "\n")
    elif fmt == "csv":
        write_csv(records, cols, stream)
    elif fmt == "md":
        stream.write(render_markdown(records, cols))
    elif fmt == "html":
        stream.write(render_html(records, cols, title=title))
    elif fmt == "table":
        if not records and empty is not None:
            stream.write(empty + "\n")
        else:
            stream.write(render_table(records, cols) + "\n")
    else:
        raise ValueError(f"unknown format {fmt!r}")
    stream.flush()


def text(value: Any) -> str:
    """A cell as a person reads it: None is ``-``, nested data is compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def render_table(records: Sequence[Record], columns: Sequence[Column]) -> str:
    """An aligned text table; a header, then one line per record."""
    body = [[c.name for c in columns]]
    body += [[text(c.cell(r)).replace("\n", " ") for c in columns] for r in records]
    widths = [max(len(row[i]) for row in body) for i in range(len(columns))]
    lines = []
    for row in body:
        cells = [
            cell.rjust(widths[i]) if columns[i].right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def write_csv(records: Sequence[Record], columns: Sequence[Column], out: IO[str]) -> None:
    """A header row, then one row per record; None is an empty cell, nested data compact
    JSON, and a text cell a spreadsheet would run as a formula starts with ``'``."""
    from klingcost.display import csv_cell  # the one rule report's CSV follows too

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.name for c in columns])
    for record in records:
        row = []
        for column in columns:
            value = column.cell(record)
            if value is None:
                row.append("")
            elif isinstance(value, bool):
                row.append("true" if value else "false")
            elif isinstance(value, Mapping | list | tuple):
                row.append(csv_cell(json.dumps(value, ensure_ascii=False)))
            else:
                row.append(csv_cell(value if isinstance(value, str) else str(value)))
        writer.writerow(row)


def _md(cell: str) -> str:
    return cell.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(records: Sequence[Record], columns: Sequence[Column]) -> str:
    """A GitHub-flavoured Markdown table (right-aligned columns marked ``---:``)."""
    lines = ["| " + " | ".join(_md(c.name) for c in columns) + " |"]
    lines.append("|" + "|".join("---:" if c.right else "---" for c in columns) + "|")
    for record in records:
        lines.append("| " + " | ".join(_md(text(c.cell(record))) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def render_html(records: Sequence[Record], columns: Sequence[Column], *, title: str) -> str:
    """One self-contained page holding the table; every cell escaped."""
    head = "".join(f"<th>{html.escape(c.name)}</th>" for c in columns)
    rows = []
    for record in records:
        cells = "".join(
            f"<td{' class=r' if c.right else ''}>{html.escape(text(c.cell(record)))}</td>"
            for c in columns
        )
        rows.append(f"<tr>{cells}</tr>")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:1rem}table{border-collapse:collapse}"
        "th,td{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}"
        ".r{text-align:right;font-variant-numeric:tabular-nums}</style></head><body>\n"
        f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows) + "\n"
        "</tbody></table>\n</body></html>\n"
    )


def _refuse_floats(value: Any) -> None:
    """Amounts are exact decimal strings or integers; a float is a bug, caught here."""
    if isinstance(value, float):
        raise TypeError(f"a float ({value!r}) reached the output: format amounts as strings")
    if isinstance(value, Mapping):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_floats(item)
