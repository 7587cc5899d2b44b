"""``klingcost sync``: settle every open task from what the API reports."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any

import click

from klingcost.cli._common import (
    EXIT_CODES_HELP,
    echo_json,
    json_option,
    ledger_option,
)
from klingcost.cli._remote import base_url_option, check_base_url, need_api_key

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from klingcost.alerts import DeliveryReport
    from klingcost.ledger import Ledger


@click.command("sync", epilog=EXIT_CODES_HELP)
@click.option("--team", "-t", help="Only this team's holds (default: every team).")
@click.option("--wait", is_flag=True, help="Repeat until no task is still running.")
@click.option(
    "--interval", type=float, default=5.0, show_default=True, help="Seconds between passes."
)
@click.option(
    "--timeout", type=float, default=900.0, show_default=True, help="Give up waiting after."
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=16,
    show_default=True,
    help="Task queries in flight at once.",
)
@click.option(
    "--not-found-answers",
    type=click.IntRange(2, 1000),
    default=3,
    show_default=True,
    help="A hold whose answer was lost is voided only after this many 'no such task' answers...",
)
@click.option(
    "--not-found-window",
    type=click.IntRange(0, 525_600),
    default=60,
    show_default=True,
    metavar="MINUTES",
    help="... the first and the last at least this many minutes apart.",
)
@base_url_option
@ledger_option
@json_option
def sync_command(
    team: str | None,
    wait: bool,
    interval: float,
    timeout: float,
    concurrency: int,
    not_found_answers: int,
    not_found_window: int,
    base_url: str | None,
    ledger_path: str | None,
    as_json: bool,
) -> None:
    """Settle every open task from what the API reports.

    Succeeded tasks are settled at final_unit_deduction, failed ones voided, and holds whose
    submission outcome was lost are resolved where the API can tell. Safe to interrupt and
    to run again. With --wait it repeats until no task is running; the counts add up over
    the passes, and tasks still running at --timeout make it exit 1.

    Task ids the API accepted but the ledger could not record (kept in the accepted-tasks
    journal beside the ledger) are attached first. A hold whose answer was lost is voided
    only when the API has said "no such task" at least --not-found-answers times over at
    least --not-found-window minutes; until then it stays counted, listed as awaiting evidence.
    """
    from datetime import timedelta

    from klingcost.api.client import AsyncKlingClient
    from klingcost.ledger import Ledger
    from klingcost.sync import settle_until_done

    need_api_key()
    base_url = check_base_url(base_url)
    evidence: dict[str, Any] = {
        "not_found_answers": not_found_answers,
        "not_found_window": timedelta(minutes=not_found_window),
    }

    show_progress = sys.stdout.isatty() and not as_json

    @contextlib.contextmanager
    def bar(total: int) -> Iterator[Callable[[int], None]]:
        with click.progressbar(length=total, label="syncing", file=sys.stderr) as shown:
            yield shown.update

    # --wait serves for as long as tasks run: its WAL checkpoints go to a thread.
    with (
        Ledger.open(ledger_path, create=False) as ledger,  # a typo must not read as "examined 0"
        ledger.background_checkpoints() if wait else contextlib.nullcontext(),
    ):
        if team is not None:
            ledger.get_budget(team)  # an unknown team is BudgetNotFound (exit 2), not "0 examined"
        report = settle_until_done(
            ledger,
            AsyncKlingClient(base_url=base_url),
            team=team,
            wait=wait,
            interval=interval,
            timeout=timeout,
            concurrency=concurrency,
            progress=bar if show_progress else None,
            **evidence,
        )
        alerts = _deliver_alerts(ledger)
    if as_json:
        echo_json({**report.to_dict(), "alerts": None if alerts is None else alerts.to_dict()})
    else:
        if alerts is not None and (alerts.attempts or alerts.forecasts):
            click.echo(alerts.describe())
        if report.replayed:
            click.echo(f"attached {report.replayed} task id(s) from the accepted-tasks journal")
        click.echo(
            f"examined {report.examined}: {report.settled} settled, {report.voided} voided, "
            f"{report.pending} still running, {len(report.unresolved)} unresolved, "
            f"{len(report.awaiting)} awaiting evidence, {len(report.errors)} errors"
        )
        for hold_id, reason in report.unresolved:
            click.echo(f"  hold {hold_id}: {reason}")
        for hold_id, reason in report.awaiting:
            click.echo(f"  hold {hold_id}: {reason}")
        for hold_id, error in report.errors:
            click.echo(f"  hold {hold_id}: {error}")
    if report.timed_out:
        click.echo(
            f"Error: {report.pending} task(s) still running after {timeout} s; "
            "run `klingcost sync` again later",
            err=True,
        )
    if report.errors or report.timed_out:
        sys.exit(1)


def _deliver_alerts(ledger: Ledger) -> DeliveryReport | None:
    """``sync`` also delivers the ledger's due alerts (never failing the sync for them)."""
    from klingcost.alerts import deliver_due
    from klingcost.errors import LedgerError

    try:
        return deliver_due(ledger)
    except LedgerError as exc:
        click.echo(f"warning: alerts not delivered: {exc}", err=True)
        return None
