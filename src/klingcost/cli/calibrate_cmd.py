"""``klingcost calibrate`` and ``klingcost import-usage``: learn what Kling and the provider
really charge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from klingcost.cli._common import (
    EXIT_CODES_HELP,
    echo_json,
    json_option,
    ledger_option,
    open_read_only,
    pricing_option,
)

if TYPE_CHECKING:
    from klingcost.ledger import Ledger


def _open(path: str | None, *, create: bool = False) -> Ledger:
    """The ledger for import-usage, which writes (report, reconcile and calibrate only read:
    they use open_read_only)."""
    from klingcost.ledger import Ledger

    return Ledger.open(path, create=create)


# --- calibrate ----------------------------------------------------------------------------


@click.command("calibrate", epilog=EXIT_CODES_HELP)
@click.option(
    "--min-samples",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="K",
    help="Ignore job classes with fewer trusted charges than K.",
)
@click.option(
    "--write",
    "write_path",
    metavar="FILE",
    help="Write the proposed overlay to FILE (load it with --pricing FILE).",
)
@ledger_option
@pricing_option
@json_option
def calibrate_command(
    min_samples: int,
    write_path: str | None,
    ledger_path: str | None,
    pricing_path: str | None,
    as_json: bool,
) -> None:
    """Learn the units Kling really charges per job class from settled tasks; fit the seed's
    multipliers (10 s, pro mode, model tier, sound, video reference) to them; propose a
    price-sheet overlay for what the sheet gets wrong.

    \b
      klingcost calibrate
      klingcost calibrate --min-samples 10 --write observed.yaml
      klingcost estimate -e text2video body.json --pricing observed.yaml
    """
    from klingcost.calibration import calibrate
    from klingcost.sheet import load_sheet

    sheet = load_sheet(pricing_path)
    _check_write(write_path)
    with open_read_only(ledger_path) as ledger:
        result = calibrate(ledger, min_samples=min_samples, sheet=sheet)
    written = write_path if write_path and result.overlay else None
    if written:
        from klingcost.calibration import write_overlay

        header = "Proposed by `klingcost calibrate` from the charges Kling reported."
        write_overlay(result.overlay, written, header=header)
    if as_json:
        echo_json({**result.to_dict(), "written": written})
        return
    click.echo(_render_calibration(result, min_samples))
    if write_path:
        if result.overlay:
            click.echo(f"\nwrote the overlay ({result.changes} entries) to {write_path}")
        elif result.observed and not result.not_reproduced:
            click.echo(
                f"\n{write_path} was not written: the sheet already prices every observed class"
                f" at what Kling charged, so no overlay is needed (do not pass --pricing"
                f" {write_path})"
            )
        else:
            reason = "no overlay could be fitted" if result.observed else "nothing to learn from"
            click.echo(f"\n{write_path} was not written: {reason}")


def _check_write(write_path: str | None) -> None:
    """Refuse a --write FILE whose folder is missing or read-only before any work is done."""
    from klingcost.calibration import CalibrationError, check_write_target

    if write_path:
        try:
            check_write_target(write_path)
        except CalibrationError as exc:
            raise click.BadParameter(str(exc), param_hint="--write") from None


def _render_calibration(result: Any, min_samples: int) -> str:
    from klingcost.money import format_amount

    if not result.observed:
        lines = ["no trusted charges to learn from yet (settled tasks with a final_unit_deduction)"]
        if result.trusted:
            lines = [
                f"{result.trusted} trusted charge{'s' if result.trusted != 1 else ''}, but no"
                f" job class has {min_samples} or more (lower --min-samples)"
            ]
        if result.skipped:
            lines.append("below --min-samples: " + "; ".join(result.skipped))
        return "\n".join(lines)
    lines = ["Units charged per job class (the most common charge; tasks that agree / all):"]
    width = max(len(o.job.label) for o in result.observed)
    for o in result.observed:
        sheet = "?" if o.sheet_units is None else format_amount(o.sheet_units)
        mark = "" if o.agrees_with_sheet else "   <- sheet says " + sheet
        units = format_amount(o.units)
        lines.append(f"  {o.job.label:<{width}}  {units:>7} units  {o.support}/{o.tasks}{mark}")
    if result.multipliers:
        lines += ["", "Multipliers fitted (fitted / sheet, tasks supporting, pairs):"]
        for m in result.multipliers:
            sheet = "-" if m.sheet is None else format_amount(m.sheet)
            note = "" if m.consistent else "  (pairs disagree)"
            basis = "" if m.basis == "pairs" else f"  (against the {m.basis})"
            flag = "  <- changed" if m.changed else ""
            lines.append(
                f"  {m.name:<16} {m.scope:<18} x{format_amount(m.fitted)} / x{sheet}"
                f"  {m.support} tasks, {m.pairs} pair(s){basis}{note}{flag}"
            )
    lines.append("")
    if result.overlay:
        lines.append(f"Proposed overlay: {result.changes} entries (write it with --write FILE).")
        lines.append(
            f"With it, {len(result.reproduced)} of {len(result.observed)} observed classes"
            " are priced at what Kling charged."
        )
    elif not result.not_reproduced:
        lines.append("The sheet prices every observed class at what Kling charged.")
    for label in result.not_reproduced:
        lines.append(f"  not reproduced: {label}")
    for note in result.notes:
        lines.append(f"note: {note}")
    if result.skipped:
        lines.append("below --min-samples: " + "; ".join(result.skipped))
    return "\n".join(lines)


# --- import-usage -------------------------------------------------------------------------


@click.command("import-usage", epilog=EXIT_CODES_HELP)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--write",
    "write_path",
    metavar="FILE",
    help="Write an overlay with the credits per unit observed to FILE.",
)
@click.option(
    "--newest-first",
    is_flag=True,
    help="The file lists the newest row first (used only when rows carry no time).",
)
@click.option(
    "--provider",
    default="openai-hk",
    show_default=True,
    help="The provider profile of the sheet the log belongs to.",
)
@ledger_option
@pricing_option
@json_option
def import_usage_command(
    file: str,
    write_path: str | None,
    newest_first: bool,
    provider: str,
    ledger_path: str | None,
    pricing_path: str | None,
    as_json: bool,
) -> None:
    """Load openai-hk's usage log (JSON, {"data": [...]} or JSON Lines; rows with fen, yufen,
    model, reqid) and learn the credits per unit the provider really charges.

    Rows are kept in the ledger once each (by reqid), so pages of the log can be imported one
    after another. A row is matched to the hold whose task id or key equals its reqid, else to
    the settled holds of the same model, newest with newest.

    \b
      klingcost import-usage log-page-1.json
      klingcost import-usage log.jsonl --write credits.yaml
    """
    from klingcost.calibration import import_usage
    from klingcost.sheet import load_sheet

    sheet = load_sheet(pricing_path)
    _check_write(write_path)
    # import-usage keeps rows, so it may start a ledger. The overlay is written by
    # import_usage itself, before the rows are committed: a failure keeps neither.
    with _open(ledger_path, create=True) as ledger:
        result = import_usage(
            ledger,
            file,
            newest_first=newest_first,
            provider=provider,
            sheet=sheet,
            write=write_path,
            header="Proposed by `klingcost import-usage` from the provider's usage log.",
        )
    if as_json:
        written = write_path if write_path and result.overlay else None
        echo_json({**result.to_dict(), "written": written})
        return
    from klingcost.money import format_amount

    click.echo(
        f"read {result.read} rows ({result.new} new); matched by id: {result.matched_by_id},"
        f" by model and order: {result.matched_by_order}; unmatched: {len(result.unmatched)}"
    )
    for rate in result.rates:
        sheet_text = "-" if rate.sheet is None else format_amount(rate.sheet)
        spread = "" if len(rate.distinct) == 1 else f" ({len(rate.distinct)} distinct values)"
        click.echo(
            f"{rate.pack}: {format_amount(rate.per_unit)} credits per unit over {rate.rows} rows"
            f"{spread}; the sheet says {sheet_text}"
        )
    if not result.rates:
        click.echo("no row matched a settled hold yet: nothing learned")
    if write_path:
        if result.overlay:
            click.echo(f"wrote the overlay to {write_path}")
        else:
            click.echo("the sheet's credits per unit match: no overlay written")
