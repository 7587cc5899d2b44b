"""``klingcost estimate`` (one body or a JSON Lines batch) and ``klingcost prices``."""

from __future__ import annotations

import json
import sys
from typing import IO, Any

import click

from klingcost.batch import BatchEstimate, BatchTotals, error_dict, estimate_batch, estimate_job
from klingcost.cli._common import (
    EXIT_CODES_HELP,
    EXIT_INVALID,
    echo_json,
    flag,
    json_option,
    pricing_option,
    read_input,
)
from klingcost.cli._input import BATCH, single_document
from klingcost.cli._output import Column, format_option, print_records
from klingcost.money import format_amount
from klingcost.price_table import price_table
from klingcost.pricing import Estimate
from klingcost.request import ENDPOINTS, normalize_endpoint
from klingcost.sheet import load_sheet

provider_option = click.option(
    "--provider",
    metavar="NAME",
    help="Provider profile that turns units into cost (default: the sheet's, openai-hk).",
)


@click.command("estimate", epilog=EXIT_CODES_HELP)
@click.argument("source", type=click.File("r", encoding="utf-8"), metavar="FILE|-")
@click.option(
    "--endpoint",
    "-e",
    metavar="E",
    help="Endpoint of bodies that do not name one: "
    + ", ".join(ENDPOINTS)
    + " (or text2video...).",
)
@provider_option
@pricing_option
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse every field klingcost does not know (by default one that cannot change the "
    "price is priced as if absent, with a warning).",
)
@json_option
def estimate_command(
    source: IO[str],
    endpoint: str | None,
    provider: str | None,
    pricing_path: str | None,
    strict: bool,
    as_json: bool,
) -> None:
    """Price the JSON body you would POST, before spending anything.

    FILE holds one JSON body, or a JSON Lines batch of them, one per line. A body's endpoint
    comes from --endpoint, an "endpoint" field, or {"endpoint": ..., "body": ...}. A bad
    line is reported by its number and the others are still priced (the exit code is then 2).
    A field klingcost does not know is priced as if absent and named in a warning (on stderr,
    and in "warnings" with --json) when it cannot change the price; --strict refuses it.

    \b
      klingcost estimate -e text2video body.json
      klingcost estimate batch.jsonl --json
    """
    sheet = load_sheet(pricing_path)
    default_endpoint = normalize_endpoint(endpoint) if endpoint else None
    text = read_input(source)
    single = single_document(text)
    if single is not BATCH:
        result = estimate_job(
            single, endpoint=default_endpoint, sheet=sheet, provider=provider, strict=strict
        )
        if as_json:
            echo_json(result.to_dict())
        else:
            for warning in result.warnings:
                click.echo(f"warning: {warning}", err=True)
            click.echo(render_estimate(result))
        return
    batch = estimate_batch(
        text.splitlines(), endpoint=default_endpoint, sheet=sheet, provider=provider, strict=strict
    )
    totals = _print_batch(batch, as_json)
    if totals.errors:
        sys.exit(EXIT_INVALID)


def _print_batch(batch: BatchEstimate, as_json: bool) -> BatchTotals:
    """Each line's row (or why it has none) as the batch prices it, then the totals."""
    out = sys.stdout
    # A row is rendered once per job class (it shows nothing else), found first by the
    # result's identity: the batch hands a repeated line the same result object.
    rows: dict[int, str] = {}
    by_job: dict[tuple[Any, ...], str] = {}
    if as_json:
        out.write('{"results": [\n')
    else:
        out.write(
            f"{'line':>6}  {'endpoint':<20} {'model':<18} {'mode':<4} {'sec':>3} {'n':>2} "
            f"{'units':>8} {'pack':<5} {'cost':>12}\n"
        )
    separator = ""
    for line in batch:
        result = line.estimate
        if result is not None:
            if result.warnings and not as_json:
                for warning in result.warnings:
                    sys.stderr.write(f"line {line.number}: warning: {warning}\n")
            row = rows.get(id(result))
            if row is None:
                key = (result.request.job, result.cost.provider, result.warnings)
                row = by_job.get(key)
                if row is None:
                    row = by_job[key] = (
                        json.dumps(_row_dict(result)) if as_json else _row_text(result)
                    )
                rows[id(result)] = row
            if as_json:
                out.write(f'{separator}{{"line": {line.number}, "estimate": {row}}}')
            else:
                out.write(f"{line.number:>6}  {row}\n")
        else:
            error = error_dict(line.error)
            if as_json:
                out.write(separator + json.dumps({"line": line.number, "error": error}))
            else:
                said = error["message"]
                if "option" in error:
                    said = f"{flag(error['option'])}: {said}"
                out.write(f"{line.number:>6}  invalid: {said}\n")
        separator = ",\n"
    totals = batch.totals()
    summary = totals.to_dict()
    if as_json:
        out.write('\n], "totals": ' + json.dumps(summary) + "}\n")
    else:
        units = ", ".join(f"{v} {k} units" for k, v in summary["units"].items()) or "no units"
        out.write(
            f"total: {summary['priced']} priced, {totals.errors} invalid; {units}; "
            f"{summary['cost']} {totals.currency or ''}\n".replace(" \n", "\n")
        )
    out.flush()
    return totals


def _row_dict(result: Estimate) -> dict[str, Any]:
    data = result.to_dict()
    del data["breakdown"]
    return data


def _row_text(result: Estimate) -> str:
    request = result.request
    return (
        f"{request.endpoint:<20} {request.model:<18} {request.mode or '-':<4} "
        f"{request.duration or '-':>3} {request.n:>2} {format_amount(result.units):>8} "
        f"{result.pack:<5} {format_amount(result.cost.amount):>12}"
    )


def render_estimate(result: Estimate) -> str:
    """A readable breakdown: each rule, its factor and source, and the total."""
    request = result.request
    cost = result.cost
    head = (
        f"{request.endpoint}  {request.model}  mode {request.mode or '(none)'}"
        + (f"  {request.duration} s" if request.duration else "")
        + (f"  n {request.n}" if request.endpoint == "images/generations" else "")
        + ("  sound on" if request.sound else "")
        + ("  with voices" if request.voice else "")
        + ("  video reference" if request.video_reference else "")
        + (f"  resolution {request.resolution}" if request.resolution else "")
    )
    lines = [head]
    width = max(len(step.rule) for step in result.breakdown)
    for index, step in enumerate(result.breakdown):
        sign = " " if index == 0 else "x"
        lines.append(
            f"  {sign} {step.rule:<{width}}  {format_amount(step.factor):>6}  [{step.source}]"
        )
    lines.append(f"  = {format_amount(result.units)} {result.pack} units")
    rate = format_amount(cost.per_unit)
    lines.append(f"  x {rate} {cost.currency} per unit [{cost.source}, {cost.provider}]")
    lines.append(f"  = {format_amount(cost.amount)} {cost.currency} (rounded up)")
    return "\n".join(lines)


# --- klingcost prices ---------------------------------------------------------------------


@click.command("prices", epilog=EXIT_CODES_HELP)
@provider_option
@pricing_option
@format_option()
def prices_command(provider: str | None, pricing_path: str | None, fmt: str) -> None:
    """Print the price sheet: model x mode x duration -> units and cost."""
    sheet = load_sheet(pricing_path)
    rows = list(price_table(sheet, provider))
    if fmt == "json":  # with the sheet's origin, as it always was
        echo_json({"origin": sheet.origin, "rows": rows})
        return
    if fmt != "table":
        print_records(rows, PRICE_COLUMNS, fmt)
        return
    currency = rows[0]["currency"] if rows else ""
    header = (
        f"{'endpoint':<24} {'model':<18} {'mode':<5} {'sec':>3} {'options':<18} "
        f"{'units':>6} {'pack':<5} {currency:>10}"
    )
    click.echo(f"price sheet: {sheet.origin}")
    click.echo(header)
    for row in rows:
        click.echo(
            f"{row['endpoint']:<24} {row['model']:<18} {row['mode'] or '-':<5} "
            f"{row['duration'] or '-':>3} {row['options']:<18} {row['units']:>6} {row['pack']:<5} "
            f"{row['cost']:>10}"
        )


#: The columns of ``prices`` in csv, md and html: every field of a row.
PRICE_COLUMNS: list[str | Column] = [
    "endpoint",
    "model",
    "mode",
    Column("duration", right=True),
    "options",
    Column("units", right=True),
    "pack",
    Column("cost", right=True),
    "currency",
]
