"""A spending report written out: CSV and JSON (every column, plain decimals), an aligned
table for a terminal and Markdown (the columns a person reads, digits grouped)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import IO

from klingcost.display import csv_cell, group_digits
from klingcost.reports.model import DIMENSIONS, TIME_KEYS, Report

_FORECAST_HEADERS = ["budget", "burn rate/day", "runs out", "method"]


def refusals_text(report: Report) -> str:
    """One line for the table: ``refused: 3 (acme: budget 2, concurrency 1)``; '' if none."""
    if not report.refusals:
        return ""
    teams: dict[str, list[str]] = {}
    for team, reason, count in report.refusals:
        teams.setdefault(team, []).append(f"{reason} {count}")
    total = sum(count for _, _, count in report.refusals)
    parts = "; ".join(f"{team}: {', '.join(reasons)}" for team, reasons in teams.items())
    return f"refused: {total} ({parts}); `klingcost holds --refused` lists them"


def _cells(report: Report) -> Iterator[dict[str, str | int | None]]:
    for row in (*report.rows, *report.totals):
        yield row.to_dict()


def write_csv(report: Report, out: IO[str]) -> None:
    """The report as CSV under :data:`COLUMNS`, totals last (``kind`` = ``total``); text a
    spreadsheet would run as a formula is neutralised (:func:`csv_cell`)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(report.columns)
    for cells in _cells(report):
        writer.writerow(["" if cells[c] is None else csv_cell(cells[c]) for c in report.columns])


def write_json(report: Report, out: IO[str]) -> None:
    json.dump(report.to_dict(), out, indent=2, ensure_ascii=False)
    out.write("\n")


#: Columns a person reads in a table (the CSV and JSON carry them all).
_SHOWN = ("tasks", "settled", "open", "estimated", "charged", "held", "variance")
_BUDGET_SHOWN = ("budget_used", "budget_limit", "budget_share")


def table_columns(report: Report) -> list[str]:
    keys: list[str] = [k for k in DIMENSIONS if k in report.by]
    if any(k in TIME_KEYS for k in report.by):
        keys.append("period")
    if len({row.currency for row in report.totals}) > 1:
        keys.append("currency")
    shown = [*keys, *_SHOWN]
    if "team" in report.by:
        shown += _BUDGET_SHOWN
    return shown


_AMOUNTS = frozenset({"estimated", "charged", "held", "variance", "budget_used", "budget_limit"})


def text_cells(report: Report, columns: Sequence[str]) -> list[list[str]]:
    """The report's rows as display strings (digits grouped, shares as percentages)."""
    lines = []
    for cells in _cells(report):
        line = [
            ""
            if cells[c] is None
            else group_digits(str(cells[c]))
            if c in _AMOUNTS
            else str(cells[c])
            for c in columns
        ]
        if cells["kind"] == "total":
            line[0] = f"total ({cells['currency']})"
        if "budget_share" in columns and cells["budget_share"] is not None:
            i = list(columns).index("budget_share")
            line[i] = _percent(str(cells["budget_share"]))
        lines.append(line)
    return lines


def _percent(share: str) -> str:
    scaled = Fraction(share) * 100
    whole = round(scaled * 10)
    return f"{whole // 10}.{whole % 10}%"


_NUMERIC = {"tasks", "settled", "open", "voided", *_SHOWN, *_BUDGET_SHOWN}


def render_table(report: Report) -> str:
    """An aligned text table for a terminal, then each budget's forecast."""
    columns = table_columns(report)
    lines = text_cells(report, columns)
    refused = refusals_text(report)
    if not report.rows:
        return "no spending in this window" + (f"\n{refused}" if refused else "")
    headers = [c.replace("budget_", "budget ") for c in columns]
    body = [headers, *lines]
    widths = [max(len(r[i]) for r in body) for i in range(len(columns))]
    out = []
    for n, line in enumerate(body):
        cells = [
            cell.rjust(widths[i]) if columns[i] in _NUMERIC else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    if refused:
        out.append(refused)
    return "\n".join(out) + _forecast_table(report)


def _forecast_table(report: Report) -> str:
    if not report.forecasts:
        return ""
    body = [_FORECAST_HEADERS, *(f.cells() for f in report.forecasts)]
    widths = [max(len(row[i]) for row in body) for i in range(3)]
    lines = [
        "  ".join(
            [
                *(row[i].rjust(w) if i == 1 else row[i].ljust(w) for i, w in enumerate(widths)),
                row[3],
            ]
        )
        for row in body
    ]
    return "\n\nforecast (at today's burn rate)\n" + "\n".join(lines)


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def write_markdown(report: Report, out: IO[str]) -> None:
    """A GitHub-flavoured Markdown table (amounts right-aligned)."""
    columns = table_columns(report)
    out.write("| " + " | ".join(columns) + " |\n")
    out.write("|" + "|".join("---:" if c in _NUMERIC else "---" for c in columns) + "|\n")
    for line in text_cells(report, columns):
        out.write("| " + " | ".join(_md_escape(cell) for cell in line) + " |\n")
    if report.forecasts:
        out.write("\n**Forecast** (at today's burn rate)\n\n")
        out.write("| " + " | ".join(_FORECAST_HEADERS) + " |\n|---|---:|---|---|\n")
        for forecast in report.forecasts:
            out.write("| " + " | ".join(_md_escape(c) for c in forecast.cells()) + " |\n")


__all__ = [
    "refusals_text",
    "render_table",
    "table_columns",
    "text_cells",
    "write_csv",
    "write_json",
    "write_markdown",
]
