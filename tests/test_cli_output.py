"""The shared output convention: --format table|json|jsonl|csv|md|html and --json."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import click
import pytest
from click.testing import CliRunner

from klingcost.cli._output import Column, format_option, print_records

RECORDS: list[dict[str, Any]] = [
    {"id": 1, "team": "acme", "spent": "1234.50", "meta": {"model": "kling-v2"}},
    {"id": 22, "team": "=HYPERLINK(1)", "spent": "-5", "meta": None},
]
COLUMNS = ["id", "team", Column("spent", right=True)]


@click.command()
@format_option(("table", "json", "jsonl", "csv", "md", "html"))
def show(fmt: str) -> None:
    """Print two records."""
    print_records(RECORDS, COLUMNS, fmt, empty="nothing")


def run(*args: str) -> Any:
    return CliRunner().invoke(show, list(args))


def test_json_is_short_for_format_json_and_keeps_exact_strings() -> None:
    short, long = run("--json"), run("--format", "json")
    assert short.exit_code == long.exit_code == 0
    assert short.output == long.output
    assert json.loads(short.output) == RECORDS  # whole records, nested data, strings kept


def test_json_with_another_format_is_refused() -> None:
    result = run("--json", "--format", "csv")
    assert result.exit_code == 2
    assert "--json is short for --format json" in result.output
    assert "--format csv" in result.output


def test_jsonl_is_one_object_per_line() -> None:
    result = run("--format", "jsonl")
    assert [json.loads(line) for line in result.output.splitlines()] == RECORDS


def test_csv_loads_and_neutralises_formulas() -> None:
    result = run("--format", "CSV")  # any case
    assert result.exit_code == 0
    rows = list(csv.reader(io.StringIO(result.output)))
    assert rows == [
        ["id", "team", "spent"],
        ["1", "acme", "1234.50"],
        ["22", "'=HYPERLINK(1)", "-5"],
    ]


def test_table_aligns_amounts_right_and_says_empty() -> None:
    lines = run().output.splitlines()
    assert lines[0].split() == ["id", "team", "spent"]
    assert lines[1].endswith("1234.50") and lines[2].endswith("     -5")
    out = io.StringIO()
    print_records([], COLUMNS, "table", empty="no keys yet", out=out)
    assert out.getvalue() == "no keys yet\n"
    out = io.StringIO()
    print_records([], COLUMNS, "json", empty="no keys yet", out=out)
    assert out.getvalue() == "[]\n"


def test_md_and_html_escape_cells() -> None:
    md = run("--format", "md").output.splitlines()
    assert md[:2] == ["| id | team | spent |", "|---|---|---:|"]
    page = run("--format", "html").output
    assert "<td>acme</td>" in page and "<td class=r>1234.50</td>" in page
    out = io.StringIO()
    print_records([{"team": "<b>x</b>"}], ["team"], "html", out=out)
    assert "&lt;b&gt;x&lt;/b&gt;" in out.getvalue() and "<b>x" not in out.getvalue()


def test_a_float_never_reaches_the_output() -> None:
    with pytest.raises(TypeError, match="float"):
        print_records([{"spent": 0.1}], ["spent"], "json", out=io.StringIO())


def test_help_names_both_options() -> None:
    result = run("--help")
    assert "--format [table|json|jsonl|csv|md|html]" in result.output
    assert "Short for --format json." in result.output
