"""``klingcost estimate`` (one body or a JSON Lines batch) and ``klingcost prices``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import click

from klingcost.batch import BatchTotals, estimate_batch
from klingcost.cli._common import (
    EXIT_CODES_HELP,
    EXIT_INVALID,
    echo_json,
    json_option,
    pricing_option,
    read_input,
    split_job,
)
from klingcost.cli._input import BATCH, single_document
from klingcost.cli._output import Column, format_option, print_records
from klingcost.errors import _MISSING, KlingcostError, RequestValidationError
from klingcost.money import format_amount
from klingcost.pricing import Estimate, estimate
from klingcost.request import ENDPOINTS, normalize_endpoint
from klingcost.sheet import PriceSheet, load_sheet

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
    single = _single_document(text)
    if single is not BATCH:
        line = _Line(1, single)
        result = _estimate_line(line, default_endpoint, sheet, provider, strict)
        if isinstance(result, KlingcostError):
            raise result
        if as_json:
            echo_json(result.to_dict())
        else:
            for warning in result.warnings:
                click.echo(f"warning: {warning}", err=True)
            click.echo(render_estimate(result))
        return
    totals = _run_batch(text, default_endpoint, sheet, provider, as_json, strict)
    if totals.errors:
        sys.exit(EXIT_INVALID)


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    value: Any


def _single_document(text: str) -> Any:
    """The body when FILE is one JSON document; BATCH when it is a JSON Lines batch."""
    return single_document(text)


def _estimate_line(
    line: _Line,
    default_endpoint: str | None,
    sheet: PriceSheet,
    provider: str | None,
    strict: bool = False,
) -> Estimate | KlingcostError:
    try:
        endpoint, body = split_job(line.value, default_endpoint)
        return estimate(endpoint, body, sheet=sheet, provider=provider, strict=strict)
    except KlingcostError as exc:
        return exc


def _run_batch(
    text: str,
    endpoint: str | None,
    sheet: PriceSheet,
    provider: str | None,
    as_json: bool,
    strict: bool = False,
) -> BatchTotals:
    batch = estimate_batch(
        text.splitlines(), endpoint=endpoint, sheet=sheet, provider=provider, strict=strict
    )
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
            error = _error_dict(line.error)
            if as_json:
                out.write(separator + json.dumps({"line": line.number, "error": error}))
            else:
                out.write(f"{line.number:>6}  invalid: {error['message']}\n")
        separator = ",\n"
    totals = batch.totals()
    summary: dict[str, Any] = {
        "lines": totals.lines,
        "priced": totals.priced,
        "errors": totals.errors,
        "units": {pack: format_amount(units) for pack, units in sorted(totals.units.items())},
        "cost": format_amount(totals.cost),
        "currency": totals.currency or None,
    }
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


def _error_dict(error: KlingcostError | str | None) -> dict[str, Any]:
    if isinstance(error, str | None):  # a line that is no JSON: its message
        return {"message": error or "invalid"}
    if isinstance(error, RequestValidationError):
        return {
            "message": "; ".join(str(p) for p in error.problems),
            "problems": [
                {
                    "field": p.field,
                    "given": None if p.given is _MISSING else _jsonable(p.given),
                    "allowed": p.allowed,
                    "message": p.message,
                }
                for p in error.problems
            ],
        }
    return {"message": str(error)}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


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


def price_table(sheet: PriceSheet, provider: str | None = None) -> Iterator[dict[str, Any]]:
    """Every priced combination, priced by the cost function itself (so the table is the truth)."""

    def row(endpoint: str, body: dict[str, Any], options: str) -> dict[str, Any]:
        result = estimate(endpoint, body, sheet=sheet, provider=provider)
        return {
            "endpoint": result.endpoint,
            "model": result.model,
            "mode": result.request.mode,
            "duration": result.request.duration,
            "options": options,
            "units": format_amount(result.units),
            "pack": result.pack,
            "cost": format_amount(result.cost.amount),
            "currency": result.cost.currency,
        }

    video = [{"video_url": "https://example.com/v.mp4"}]
    voices = [{"voice_id": "voice-1"}]
    clips = sheet.models["videos/text2video"]
    for model, modes in sheet.video.models.items():
        if model not in clips or model in sheet.per_second:
            continue
        for mode in modes:
            for seconds in sheet.video.durations:
                body: dict[str, Any] = {"model_name": model, "prompt": "p", "duration": seconds}
                if mode != "flat":
                    body["mode"] = mode
                yield row("videos/text2video", body, "")
                if mode in clips[model].sound_modes:
                    yield row("videos/text2video", {**body, "sound": "on"}, "sound on")
                    if model in sheet.video.voice:
                        with_voices = {**body, "sound": "on", "voice_list": voices}
                        yield row("videos/text2video", with_voices, "sound on, voices")
    # Multi-image to video: each model the catalogue lists there (kling-v1-6), silent.
    images = [{"image": "https://example.com/1.png"}, {"image": "https://example.com/2.png"}]
    for model, caps in sheet.models["videos/multi-image2video"].items():
        multi_seconds = {min(caps.durations), max(caps.durations)} | ({5, 10} & caps.durations)
        multi_modes: list[str | None] = [*sorted(caps.modes)] or [None]
        for multi_mode in multi_modes:
            for shown_seconds in sorted(multi_seconds):
                body = {"model_name": model, "prompt": "p", "image_list": images}
                body["duration"] = shown_seconds
                if multi_mode is not None:
                    body["mode"] = multi_mode
                yield row("videos/multi-image2video", body, "1 to 4 images")
    # Per-second models: each mode and option at the shortest, 5 s, 10 s and the longest.
    for endpoint in ("videos/text2video", "videos/omni-video"):
        for model, caps in sheet.models[endpoint].items():
            if model not in sheet.per_second:
                continue
            seconds_shown = sorted(
                {min(caps.durations), max(caps.durations)} | ({5, 10} & caps.durations)
            )
            for mode, rates in sheet.per_second[model].items():
                for shown in seconds_shown:
                    body = {"model_name": model, "prompt": "p", "mode": mode, "duration": shown}
                    yield row(endpoint, body, "")
                    if rates.sound is not None and mode in caps.sound_modes:
                        yield row(endpoint, {**body, "sound": "on"}, "sound on")
                    if rates.voice is not None and endpoint != "videos/omni-video":
                        with_voices = {**body, "sound": "on", "voice_list": voices}
                        yield row(endpoint, with_voices, "sound on, voices")
                    if rates.video is not None and endpoint == "videos/omni-video":
                        yield row(endpoint, {**body, "video_list": video}, "video reference")
    for model in sheet.omni:
        o1 = sheet.models["videos/omni-video"].get(model)
        if o1 is None or model in sheet.per_second:
            continue
        for mode in ("std", "pro"):
            for o1_seconds in sorted({min(o1.durations), 5, 10} & o1.durations):
                body = {"model_name": model, "prompt": "p", "mode": mode, "duration": o1_seconds}
                yield row("videos/omni-video", body, "")
                yield row("videos/omni-video", {**body, "video_list": video}, "video reference")
    for model, image in sheet.images.items():
        if model not in sheet.models["images/generations"]:
            continue
        yield row("images/generations", {"model_name": model, "prompt": "p"}, "per image")
        reference = {"model_name": model, "prompt": "p", "image": "https://example.com/i.png"}
        yield row("images/generations", reference, "reference image")
        for resolution, size in image.resolutions.items():
            if size.factor != 1:
                sized = {"model_name": model, "prompt": "p", "resolution": resolution}
                yield row("images/generations", sized, f"{resolution}, per image")
