"""``klingcost submit``, ``klingcost sync`` and ``klingcost hooks serve``: the guard in use."""

from __future__ import annotations

import contextlib
import json
import os
import socket
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
    exit_code_for,
    fail,
    json_option,
    ledger_option,
    pricing_option,
    read_input,
    split_job,
)
from klingcost.cli._input import BATCH, single_document
from klingcost.money import format_amount, format_minor

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from klingcost.alerts import DeliveryReport
    from klingcost.guard import GuardedClient, Submission
    from klingcost.ledger import Ledger


def _check_base_url(value: str | None) -> str | None:
    """--base-url / KLINGCOST_BASE_URL: an http(s) URL with a host, checked before anything is
    held or sent (exit 2)."""
    from urllib.parse import urlsplit

    if value is None or not value.strip():
        return None
    try:
        parts = urlsplit(value.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018  # a port that is no number raises here
    except ValueError:
        ok = False
    if not ok:
        raise click.BadParameter(
            f"{value!r} is not an http(s) URL with a host: give one such as "
            "https://api.openai-hk.com/kling, or the URL `klingcost fake-server` printed",
            param_hint="--base-url / KLINGCOST_BASE_URL",
        )
    return value.strip()


def _need_api_key() -> None:
    """Without KLINGCOST_API_KEY nothing can be sent: say so before anything is held, in the
    command line's words (the library's message speaks of its api_key= argument)."""
    if not os.environ.get("KLINGCOST_API_KEY", "").strip():
        fail(
            "no Kling API key: export KLINGCOST_API_KEY=<your key> (against `klingcost "
            "fake-server`, the key it printed)"
        )


base_url_option = click.option(
    "--base-url",
    envvar="KLINGCOST_BASE_URL",
    metavar="URL",
    help="API base (env KLINGCOST_BASE_URL; default https://api.openai-hk.com/kling).",
)


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
    _need_api_key()
    base_url = _check_base_url(base_url)
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
            fail("\n".join([str(exc), *getattr(exc, "__notes__", ())]), exit_code_for(exc))
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
            outcome = {"action": "error", "note": f"{exc}: `klingcost sync` settles it later"}
            code = exit_code_for(exc)
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
            message = exc.message if isinstance(exc, click.BadParameter) else str(exc)
            notes: tuple[str, ...] = tuple(getattr(exc, "__notes__", ()))
            invalid = (
                isinstance(exc, click.BadParameter | errors.HoldStateError)
                or exit_code_for(exc) == EXIT_INVALID
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

    _need_api_key()
    base_url = _check_base_url(base_url)
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


@click.group("hooks")
def hooks_group() -> None:
    """Receive Kling's notify_hook callbacks and settle tasks as they end."""


_URL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _check_secret(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--secret: long enough not to be guessed (the rule create_app enforces), or exit 2."""
    from klingcost.hooks import MIN_SECRET_LENGTH  # here: the CLI loads starlette lazily

    if value and not set(value) <= _URL_SAFE:
        # It is a URL path segment: "/", "?", "#" or "%" would make a URL it never matches.
        raise click.BadParameter(
            "a hook secret may hold letters, digits and - . _ ~ only (it is a URL path segment)"
        )
    if value and len(value) < MIN_SECRET_LENGTH:
        # The secret itself is not echoed back: it may be a real one, mistyped.
        raise click.BadParameter(
            f"the given secret is {len(value)} characters; a hook secret must be at least "
            f"{MIN_SECRET_LENGTH} characters (leave --secret out to have one made)"
        )
    return value


def _hook_secret(given: str | None) -> str:
    from klingcost.hooks import stored_secret

    if given:
        return given
    from klingcost.home import klingcost_home

    home = klingcost_home()
    try:
        return stored_secret(home)
    except ValueError as exc:  # a short or readable stored secret: say which file, and the fix
        fail(str(exc), EXIT_INVALID)
    except OSError as exc:
        fail(f"cannot keep the hook secret in {home}: {exc.strerror or exc}")


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on HOST:PORT (see :mod:`klingcost._listen`), or exit 1 saying why not."""
    from klingcost._listen import address, listening_socket

    try:
        return listening_socket(host, port)
    except OSError as exc:  # a taken port, an address not ours, a name that does not resolve
        fail(f"cannot listen on {address(host, port)}: {exc.strerror or exc}{port_hint(exc)}")


#: ``hooks serve``'s default port: beside ``fake-server``'s 8787, so both run at once.
HOOKS_PORT = 8788


def port_hint(exc: OSError) -> str:
    """What to do about a port another program holds (nothing for other failures)."""
    import errno

    if exc.errno != errno.EADDRINUSE:
        return ""
    return (
        " (another program listens there: stop it, or pick another port with --port N; "
        "--port 0 takes any free one)"
    )


@hooks_group.command("serve", epilog=EXIT_CODES_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=HOOKS_PORT,
    show_default=True,
    help="Port to listen on (0: any free port; fake-server's default is 8787).",
)
@click.option(
    "--secret",
    envvar="KLINGCOST_HOOK_SECRET",
    callback=_check_secret,
    help="The secret URL path (env KLINGCOST_HOOK_SECRET; default: made once, kept in "
    "$KLINGCOST_HOME/hook-secret).",
)
@click.option(
    "--confirm/--no-confirm",
    default=True,
    show_default=True,
    help="Query each task before settling it, as Kling advises (needs KLINGCOST_API_KEY); "
    "without it a callback may only settle, never void or lower a hold.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1, 1_000_000),
    default=256,
    show_default=True,
    help="Connections open at once; a slow one without headers makes room for a new one.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(0.1, 3600),
    default=10.0,
    show_default=True,
    help="Seconds a connection may take to send its request headers.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0.1, 3600),
    default=5.0,
    show_default=True,
    help="Seconds an idle kept-alive connection, or a stalled body, is kept.",
)
@click.option(
    "--max-body",
    type=click.IntRange(1, 1 << 30),
    default=1024 * 1024,
    show_default=True,
    help="Largest callback body in bytes (413 above it, unread).",
)
@base_url_option
@ledger_option
def hooks_serve_command(
    host: str,
    port: int,
    secret: str | None,
    confirm: bool,
    max_connections: int,
    header_timeout: float,
    idle_timeout: float,
    max_body: int,
    base_url: str | None,
    ledger_path: str | None,
) -> None:
    """Run the callback server; give its URL to submit as --hook-url.

    With --confirm (the default) each callback is checked with a task query before it moves
    a hold. With --no-confirm a callback may only settle a hold whose task succeeded, at no
    less than its estimate: it never voids and never lowers a hold (anyone who learns the URL
    could post one); `klingcost sync` settles the rest.
    """
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from klingcost._limits import ServerLimits, uvicorn_config
    from klingcost._listen import address
    from klingcost.api.client import AsyncKlingClient
    from klingcost.hooks import create_app
    from klingcost.ledger import Ledger

    limits = ServerLimits(
        header_timeout=header_timeout,
        idle_timeout=idle_timeout,
        max_connections=max_connections,
        max_body=max_body,
    )

    hook_secret = _hook_secret(secret)
    if confirm:
        _need_api_key()
    base_url = _check_base_url(base_url)
    client = AsyncKlingClient(base_url=base_url) if confirm else None
    with (
        _listen(host, port) as sock,
        Ledger.open(ledger_path, create=False) as ledger,  # settles holds: it must exist
        ledger.background_checkpoints(),  # no callback pays for a WAL checkpoint
    ):
        app = create_app(ledger, hook_secret, client=client, close_client=True)
        url = f"http://{address(host, sock.getsockname()[1])}/hooks/{hook_secret}"
        click.echo(f"hook URL: {url}")
        click.echo(f"set it for submitters: export KLINGCOST_HOOK_URL={url}")
        click.echo("each callback is logged below, one line each (Ctrl-C to stop)")
        from klingcost.cli._hooklog import logged

        server = uvicorn.Server(uvicorn_config(logged(app), limits, host=host, port=port))
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass  # Ctrl-C is how it stops: exit 0, as uvicorn.run does
        except SystemExit as exc:
            # uvicorn exits 3 when it fails to start, which is "refused by a budget" here.
            if exc.code != STARTUP_FAILURE:
                raise
            fail("the hooks server did not start (see the log above)")
