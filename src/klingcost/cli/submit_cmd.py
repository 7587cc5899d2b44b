"""``klingcost submit``: one job, or a JSON Lines batch, through the budget guard."""

from __future__ import annotations

import json
import os
import sys
from typing import IO, TYPE_CHECKING, Any

import click

from klingcost import errors
from klingcost._json import JSONInputError, loads
from klingcost.cli._common import (
    EXIT_CODES_HELP,
    EXIT_ERROR,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_REFUSED,
    echo_json,
    error_message,
    fail,
    json_option,
    ledger_option,
    pricing_option,
    read_input,
    split_job,
)
from klingcost.cli._input import BATCH, single_document
from klingcost.cli._remote import base_url_option, check_base_url, need_api_key
from klingcost.money import format_amount, format_minor

if TYPE_CHECKING:
    from klingcost.guard import GuardedClient, Submission


@click.command("submit", epilog=EXIT_CODES_HELP)
@click.argument("source", type=click.File("r", encoding="utf-8"), metavar="FILE|-")
@click.option("--team", "-t", required=True, help="The budget the job is charged to.")
@click.option(
    "--endpoint",
    "-e",
    metavar="E",
    help='videos/text2video, text2video, ... (or an "endpoint" field in the job).',
)
@click.option("--wait", is_flag=True, help="Wait for the task to end and settle it.")
@click.option(
    "--key", metavar="KEY", help="Idempotency key: a retried submit with it sends nothing."
)
@click.option(
    "--hook-url",
    envvar="KLINGCOST_HOOK_URL",
    metavar="URL",
    help="notify_hook URL of `klingcost hooks serve` (env KLINGCOST_HOOK_URL).",
)
@click.option(
    "--external-ids/--no-external-ids",
    default=False,
    help="Send the hold's key as external_task_id, so sync can find a task whose answer was lost.",
)
@click.option("--provider", metavar="NAME", help="Provider profile (default: openai-hk).")
@click.option(
    "--interval", type=float, default=5.0, show_default=True, help="Seconds between polls."
)
@click.option(
    "--timeout", type=float, default=900.0, show_default=True, help="Give up waiting after."
)
@base_url_option
@ledger_option
@pricing_option
@json_option
def submit_command(
    source: IO[str],
    team: str,
    endpoint: str | None,
    wait: bool,
    key: str | None,
    hook_url: str | None,
    external_ids: bool,
    provider: str | None,
    interval: float,
    timeout: float,
    base_url: str | None,
    ledger_path: str | None,
    pricing_path: str | None,
    as_json: bool,
) -> None:
    """Submit one job through the budget guard.

    The job is priced, a hold for its cost is placed on TEAM and every budget above it, and
    only then is it sent (key from KLINGCOST_API_KEY). A job that does not fit is refused
    with exit code 3 and nothing is sent. FILE is the JSON body, its endpoint given by
    --endpoint, an "endpoint" field, or {"endpoint": ..., "body": ...}.

    With --wait the hold is settled from the task's charge. A task that failed (its hold
    voided), or one still running at --timeout, exits 1; `klingcost sync` settles it later.
    """
    from klingcost.guard import GuardedClient
    from klingcost.guard_core import stays_counted
    from klingcost.ledger import Ledger
    from klingcost.sheet import PRICING_ENV, load_sheet

    text = read_input(source)
    document = single_document(text)
    need_api_key()
    base_url = check_base_url(base_url)
    if document is BATCH:  # a JSON Lines batch: each line guarded on its own
        if wait:
            raise click.BadParameter(
                "--wait takes one job; submit the batch without it, then run `klingcost sync "
                "--wait` to settle every task",
                param_hint="--wait",
            )
    else:
        job_endpoint, body = split_job(document, endpoint)
    # Without --pricing or KLINGCOST_PRICING the guard prices with the ledger's published
    # sheet (or the bundled one when it publishes none).
    local = pricing_path or os.environ.get(PRICING_ENV)
    # create=False: a mistyped --ledger is refused, not started empty (where no budget counts)
    with (
        Ledger.open(ledger_path, create=False) as ledger,
        GuardedClient(
            team,
            ledger=ledger,
            base_url=base_url,
            sheet=load_sheet(pricing_path) if local else None,
            provider=provider,
            hook_url=hook_url,
            external_ids=external_ids,
        ) as guard,
    ):
        if document is BATCH:
            sys.exit(submit_batch(guard, text, team, endpoint, key, as_json))
        try:
            submission = guard.submit(job_endpoint, body, key=key)
        except errors.HoldStateError as exc:  # --key reused for another job: the input's fault
            fail(str(exc), EXIT_INVALID)
        except errors.KlingAPIError as exc:  # say what became of the hold, too
            fail("\n".join([error_message(exc), *getattr(exc, "__notes__", ())]), exc.exit_code)
        except KeyboardInterrupt as exc:  # the guard's note names the hold that stays counted
            notes = getattr(exc, "__notes__", ())
            fail("interrupted: " + ("; ".join(notes) or "no hold was placed and nothing was sent"))
        data = _submission_dict(team, submission)
        code = EXIT_OK
        outcome: dict[str, str | None]
        try:  # from here on a hold is placed: an interrupt says what becomes of it
            if not as_json:  # before waiting: whatever the wait meets, the task id is on screen
                _echo_submission(team, submission)
            if not wait:
                if as_json:
                    echo_json(data)
                return
            resolution = guard.wait(submission, interval=interval, timeout=timeout)
        except TimeoutError as exc:
            outcome = {"action": "timeout", "note": f"{exc}: `klingcost sync` settles it later"}
            code = EXIT_ERROR
        except KeyboardInterrupt:
            when = "while waiting" if wait else "after sending"
            fail(f"interrupted {when}: {stays_counted(submission.hold, team)}")
        except errors.KlingcostError as exc:
            note = f"{error_message(exc)}: `klingcost sync` settles it later"
            outcome = {"action": "error", "note": note}
            code = exc.exit_code
        else:
            hold, cost = resolution.hold, submission.estimate.cost
            data.update(state=hold.state, task_id=hold.task_id)
            outcome = {
                "action": resolution.action,
                "note": resolution.note,
                "units": None if hold.units_milli is None else format_minor(hold.units_milli, 3),
                # in the currency's own unit, as the estimate shows it (0.98 usd, not 98)
                "cost": None
                if hold.cost_minor is None
                else format_minor(hold.cost_minor, cost.exponent),
                "currency": cost.currency,
            }
            if resolution.action == "voided":  # the task failed: nothing made, nothing charged
                code = EXIT_ERROR
    data["settlement"] = outcome
    if as_json:
        echo_json(data)
    elif code == EXIT_OK or outcome["action"] == "voided":
        click.echo(f"{outcome['action']}: {outcome['note']}")
    else:
        click.echo(f"Error: {outcome['note']}", err=True)
    if code != EXIT_OK:
        sys.exit(code)


def _submission_dict(team: str, submission: Submission) -> dict[str, Any]:
    hold = submission.hold
    return {
        "team": team,
        "estimate": submission.estimate.to_dict(),
        "hold": hold.id,
        "key": hold.key,
        "state": hold.state,
        "task_id": hold.task_id,
        "resent": submission.task is None,
    }


def _echo_submission(team: str, submission: Submission) -> None:
    priced, hold, cost = submission.estimate, submission.hold, submission.estimate.cost
    click.echo(
        f"estimate: {format_amount(priced.units)} {priced.pack} units = "
        f"{format_amount(cost.amount)} {cost.currency} ({priced.endpoint} {priced.model})"
    )
    if submission.task is None:
        click.echo(f"hold {hold.id} (key {hold.key}) already existed: nothing was sent again")
    click.echo(f"hold {hold.id} on {team}: {hold.state}, task {hold.task_id}")


def submit_batch(
    guard: GuardedClient,
    text: str,
    team: str,
    endpoint: str | None,
    key: str | None,
    as_json: bool,
) -> int:
    """Submit each line of a JSON Lines batch through the guard on its own: a line refused by
    a budget or invalid does not stop the others. Returns the exit code: 3 if any line was
    refused, else 2 if any was invalid, else 1 if any failed, else 0. With ``key``, line N's
    idempotency key is ``KEY:N``, so a rerun of the same batch sends nothing twice."""
    results: list[dict[str, Any]] = []
    counts = {"submitted": 0, "refused": 0, "invalid": 0, "failed": 0}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        result: dict[str, Any] = {"line": number}
        try:
            try:
                value = loads(line)
            except (json.JSONDecodeError, JSONInputError) as exc:
                raise click.BadParameter(f"not JSON: {exc}") from None
            job_endpoint, body = split_job(value, endpoint)
            submission = guard.submit(
                job_endpoint, body, key=None if key is None else f"{key}:{number}"
            )
        except KeyboardInterrupt as exc:
            said = "; ".join(getattr(exc, "__notes__", ()))
            _echo_batch(results, counts, as_json)
            fail(f"interrupted at line {number}" + (f": {said}" if said else ""))
        except (errors.BudgetExceeded, errors.BudgetCannotCount) as exc:
            result.update(outcome="refused", message=str(exc))
        except (errors.KlingcostError, click.BadParameter) as exc:
            message = exc.message if isinstance(exc, click.BadParameter) else error_message(exc)
            notes: tuple[str, ...] = tuple(getattr(exc, "__notes__", ()))
            invalid = (
                isinstance(exc, click.BadParameter | errors.HoldStateError)
                or exc.exit_code == EXIT_INVALID
            )
            result.update(
                outcome="invalid" if invalid else "failed",
                message="; ".join([message, *notes]),
            )
        else:
            data = _submission_dict(team, submission)
            result.update(outcome="submitted", **data)
        counts[result["outcome"]] += 1
        results.append(result)
        if not as_json:
            click.echo(_batch_line(result))
    _echo_batch(results, counts, as_json)
    if counts["refused"]:
        return EXIT_REFUSED
    if counts["invalid"]:
        return EXIT_INVALID
    return EXIT_ERROR if counts["failed"] else EXIT_OK


def _batch_line(result: dict[str, Any]) -> str:
    if result["outcome"] == "submitted":
        return (
            f"line {result['line']}: hold {result['hold']} on {result['team']}: "
            f"{result['state']}, task {result['task_id']}"
        )
    return f"line {result['line']}: {result['outcome']}: {result['message']}"


def _echo_batch(results: list[dict[str, Any]], counts: dict[str, int], as_json: bool) -> None:
    if as_json:
        echo_json({"results": results, "totals": {"lines": len(results), **counts}})
        return
    click.echo(
        f"total: {len(results)} line(s): {counts['submitted']} submitted, {counts['refused']} "
        f"refused by a budget, {counts['invalid']} invalid, {counts['failed']} failed"
    )
