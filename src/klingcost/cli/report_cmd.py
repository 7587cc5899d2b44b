"""``klingcost report`` and ``klingcost reconcile``: what was spent, and how well it was
estimated."""

from __future__ import annotations

import calendar
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import IO, Any

import click

from klingcost.cli._common import (
    EXIT_CODES_HELP,
    EXIT_ERROR,
    echo_json,
    flag,
    ledger_option,
    open_read_only,
)
from klingcost.cli._output import Column, format_option, print_records

_DATE = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?$")


def _day(value: str | None, *, end: bool, name: str) -> date | None:
    """``2026-11-25``; or a month ``2026-11`` (its first day, or its last with ``end``)."""
    if value is None:
        return None
    match = _DATE.match(value.strip())
    try:
        if match is None:
            raise ValueError("not a date")
        year, month = int(match[1]), int(match[2])
        if match[3] is not None:
            return date(year, month, int(match[3]))
        last = calendar.monthrange(year, month)[1]
        return date(year, month, last if end else 1)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date: write 2026-11-25 (a UTC day) or 2026-11 (a month)",
            param_hint=name,
        ) from None


def _window(since: str | None, until: str | None) -> tuple[date | None, date | None]:
    """``--since`` and ``--until`` as days; an ``--until`` before ``--since`` is refused."""
    first = _day(since, end=False, name="--since")
    last = _day(until, end=True, name="--until")
    if first is not None and last is not None and last < first:
        raise click.BadParameter(f"{until} is before --since {since}", param_hint="--until")
    return first, last


@contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if path is None or path == "-":
        yield sys.stdout
        return
    try:
        handle = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc}") from None
    with handle:
        yield handle


# --- report -------------------------------------------------------------------------------


@click.command("report", epilog=EXIT_CODES_HELP)
@click.option("--team", metavar="NAME", help="Only this team's holds.")
@click.option("--since", metavar="DATE", help="First UTC day (2026-11-01, or a month: 2026-11).")
@click.option("--until", metavar="DATE", help="Last UTC day, inclusive (2026-11-30 or 2026-11).")
@click.option(
    "--by",
    default="team",
    show_default=True,
    metavar="KEYS",
    help="Group by any of team, model, mode, endpoint, pack and one of day, week, month,"
    " joined by commas.",
)
@format_option(
    ("table", "csv", "json", "jsonl", "md", "html"),
    help="table for a terminal; csv, json and jsonl keep stable column names; html is one"
    " self-contained page with a chart. --json is short for --format json.",
)
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of standard output.")
@click.option(
    "--tasks",
    is_flag=True,
    help="One row per task instead of groups (csv or json; streamed, for any ledger size).",
)
@ledger_option
def report_command(
    team: str | None,
    since: str | None,
    until: str | None,
    by: str,
    fmt: str,
    output: str | None,
    tasks: bool,
    ledger_path: str | None,
) -> None:
    """Spending per group: tasks, estimated, charged, still held, variance and the share of
    each team's budget used; with totals.

    \b
      klingcost report --by team,month
      klingcost report --team video --since 2026-11 --by model,day --format csv -o nov.csv
      klingcost report --format html -o report.html
      klingcost report --tasks --format csv -o tasks.csv

    Days are UTC days of the reservation. The budget columns show each team's budget in its
    current period. Column names of csv and json are stable (see the README).
    """
    from klingcost import reports

    first, last = _window(since, until)
    try:
        keys = reports.parse_group_by(by)
    except reports.ReportError as exc:
        raise click.BadParameter(str(exc), param_hint=flag(exc.option or "by")) from None
    if tasks and fmt not in ("csv", "json", "jsonl"):
        raise click.BadParameter("--tasks writes csv, json or jsonl", param_hint="--format")
    with open_read_only(ledger_path) as ledger:
        try:
            below = [] if team is None else reports.budgets_below(ledger, team)
        except reports.ReportError as exc:
            raise click.BadParameter(str(exc), param_hint=flag(exc.option or "team")) from None
        if tasks:
            with _output(output) as out:
                if fmt == "csv":
                    count = reports.export_tasks_csv(
                        ledger, out, since=first, until=last, team=team
                    )
                else:
                    rows = reports.task_rows(ledger, since=first, until=last, team=team)
                    count = reports.export_tasks_json(rows, out, lines=fmt == "jsonl")
            _done(output)
            if count == 0 and below:
                click.echo(_only_below(team, below, first, last), err=True)
            return
        report = reports.spending_report(ledger, by=keys, since=first, until=last, team=team)
        page = None
        if fmt == "html":
            from klingcost.reports.html import html_report

            page = html_report(ledger, report)
    with _output(output) as out:
        if page is not None:
            out.write(page)
        elif fmt == "csv":
            reports.write_csv(report, out)
        elif fmt == "json":
            reports.write_json(report, out)
        elif fmt == "jsonl":  # one row per line, totals last (kind "total"), as the CSV
            for row in (*report.rows, *report.totals):
                out.write(json.dumps(row.to_dict(), ensure_ascii=False) + "\n")
        elif fmt == "md":
            reports.write_markdown(report, out)
        elif not report.rows and below:
            out.write(_only_below(team, below, first, last) + "\n")
        else:
            out.write(reports.render_table(report) + "\n")
    _done(output)
    if fmt != "table" and not report.rows and below:
        click.echo(_only_below(team, below, first, last), err=True)


def _only_below(team: str | None, below: list[str], first: date | None, last: date | None) -> str:
    """What a report of a team with no holds of its own says: the budgets below it spend."""
    window = " in this window" if first or last else ""
    return f"{team} has no holds of its own{window}; its budgets below: {', '.join(below)}"


def _done(output: str | None) -> None:
    if output and output != "-":
        click.echo(f"wrote {output}", err=True)


# --- reconcile ----------------------------------------------------------------------------


def _tolerance(ctx: click.Context, param: click.Parameter, value: str) -> Any:
    from klingcost.reconcile import parse_tolerance

    try:
        return parse_tolerance(value)
    except (TypeError, ValueError):
        raise click.BadParameter(
            f"{value!r} is not a tolerance (write 0.05, 5% or 1/20; 0 or more)"
        ) from None


@click.command("reconcile", epilog=EXIT_CODES_HELP)
@click.option("--since", metavar="DATE", help="First UTC day (2026-11-01, or 2026-11).")
@click.option("--until", metavar="DATE", help="Last UTC day, inclusive.")
@click.option(
    "--tolerance",
    default="0",
    show_default=True,
    metavar="X",
    callback=_tolerance,
    help="Drift allowed per job class, as a share of the estimate: 0.05, 5% or 1/20.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 1 when any job class drifts beyond the tolerance, a budget is over its limit,"
    " or a deduction was not booked as implausible (for cron and CI).",
)
@click.option(
    "--limit",
    default=5,
    show_default=True,
    type=click.IntRange(min=0),
    help="Tasks listed per job class (flagged first, then the largest variance).",
)
@ledger_option
@format_option()
def reconcile_command(
    since: str | None,
    until: str | None,
    tolerance: Any,
    strict: bool,
    limit: int,
    ledger_path: str | None,
    fmt: str,
) -> None:
    """Estimated against charged units per job class (endpoint, model, mode, duration, sound,
    video reference, n): count, agreement rate, drift, largest variance, the tasks that
    disagree, and charges that look wrong: missing, zero, absurd, or a failed task charged.

    \b
      klingcost reconcile --since 2026-11
      klingcost reconcile --strict --tolerance 2% --json     # from cron: exit 1 on drift
    """
    from klingcost.reconcile import reconcile

    first, last = _window(since, until)
    with open_read_only(ledger_path) as ledger:
        result = reconcile(ledger, since=first, until=last, tolerance=tolerance, limit=limit)
    if fmt == "json":  # the whole reconciliation, window and totals too, as it always was
        echo_json(result.to_dict())
    elif fmt == "table":
        click.echo(_render_reconciliation(result))
    else:  # one record per job class
        classes = result.to_dict()["classes"]
        print_records(classes, RECONCILE_COLUMNS, fmt)
    if strict and result.strict_problems():
        if result.drifting:
            labels = ", ".join(c.job.label for c in result.drifting)
            click.echo(
                f"Error: {len(result.drifting)} job class(es) drift beyond the tolerance of "
                f"{_pct(result.tolerance)}: {labels}",
                err=True,
            )
        for problem in result.strict_problems()[1 if result.drifting else 0 :]:
            click.echo(f"Error: {problem}", err=True)
        sys.exit(EXIT_ERROR)


#: The columns of ``reconcile`` in csv and md (jsonl has every field of a job class).
RECONCILE_COLUMNS: list[str | Column] = [
    "label",
    Column("settled", right=True),
    Column("compared", right=True),
    Column("agreeing", right=True),
    Column("agreement_rate", right=True),
    Column("drift", right=True),
    Column("estimated_units", right=True),
    Column("charged_units", right=True),
    Column("largest_variance_units", right=True),
    "beyond_tolerance",
    Column("flags", lambda r: ", ".join(f"{k} {v}" for k, v in r["flags"].items() if v)),
]


def _pct(share: Any) -> str:
    """A ratio as a percentage with 2 places, rounded half to even (``66.67%``): the JSON's
    4-place ratio, times 100."""
    from klingcost.display import percent_text

    return percent_text(share)


def _render_reconciliation(result: Any) -> str:
    from klingcost.money import UNIT_EXPONENT, format_minor

    if not result.classes:
        return "nothing settled in this window: no charges to reconcile"
    headers = ["job class", "settled", "compared", "agree", "drift", "largest var", "flags"]
    rows = []
    for c in result.classes:
        rate = c.agreement_rate
        drift = c.drift
        flags = ", ".join(f"{k} {v}" for k, v in c.flags.items() if v) or "-"
        rows.append(
            [
                ("! " if c.beyond(result.tolerance) else "  ") + c.job.label,
                str(c.settled),
                str(c.compared),
                "-" if rate is None else _pct(rate),
                "-" if drift is None else ("+" if drift > 0 else "") + _pct(drift),
                format_minor(c.largest_variance_units_milli, UNIT_EXPONENT),
                flags,
            ]
        )
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(widths[i + 1]) for i, cell in enumerate(row[1:-1])
        ]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    listed = [c for c in result.classes if c.tasks]
    for c in listed:
        lines.append("")
        lines.append(f"{c.job.label}: {c.disagreeing} task(s) disagree or are flagged")
        for t in c.tasks:
            lines.append(
                f"  hold {t.hold_id} task {t.task_id or '-'} ({t.team}, {t.reserved_at[:19]}):"
                f" estimated {format_minor(t.estimated_units_milli, UNIT_EXPONENT)},"
                f" charged {format_minor(t.charged_units_milli, UNIT_EXPONENT)}"
                f" (final_unit_deduction {t.raw_deduction!r})"
                + (f" [{', '.join(t.flags)}]" if t.flags else "")
            )
    totals = ", ".join(f"{k} {v}" for k, v in result.flag_totals.items() if v)
    lines.append("")
    lines.append(
        f"{len(result.classes)} job class(es); tolerance {_pct(result.tolerance)};"
        f" {len(result.drifting)} beyond it; flagged: {totals or 'none'}"
    )
    return "\n".join(lines)
