"""``klingcost alerts`` (rules and delivery) and ``klingcost events`` (the event log)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click

from klingcost.cli._common import EXIT_CODES_HELP, EXIT_ERROR, fail, ledger_option, open_read_only
from klingcost.cli._output import Column, format_option, print_records

_CHANNEL_OPTIONS = ("webhook", "slack", "feishu", "dingtalk")
_URL_HELP = "URL, or - to read it from stdin (keeps it out of your shell history)"


@click.group("alerts", epilog=EXIT_CODES_HELP)
def alerts_group() -> None:
    """Send budget alerts to a webhook, Slack, Feishu or DingTalk.

    An alert is sent once for each soft-threshold crossing, budget charged past its limit
    (once per period), burst of refused submissions (once per team per hour) and forecast
    that a budget runs out before its period ends (once per period). Alerts wait in the
    ledger's outbox until delivered, with retries; `klingcost sync`, `klingcost alerts
    deliver` and the proxy deliver them, and the process that recorded one tries at once.

    \b
      klingcost alerts add --team acme --slack https://hooks.slack.com/services/T/B/X
      klingcost alerts add --team acme --webhook https://example.com/hook --on soft,over
      klingcost alerts test 1
      klingcost alerts list
    """


@alerts_group.command("add", epilog=EXIT_CODES_HELP)
@click.option("--team", required=True, metavar="NAME", help="The budget whose alerts to send.")
@click.option("--webhook", metavar="URL", help=f"A generic JSON webhook: {_URL_HELP}.")
@click.option("--slack", metavar="URL", help=f"A Slack incoming webhook: {_URL_HELP}.")
@click.option("--feishu", metavar="URL", help=f"A Feishu (Lark) custom bot: {_URL_HELP}.")
@click.option("--dingtalk", metavar="URL", help=f"A DingTalk custom robot: {_URL_HELP}.")
@click.option(
    "--on",
    "kinds",
    default="soft,refused,over,forecast",
    show_default=True,
    metavar="KINDS",
    help="Which alerts, comma-separated: soft, refused, over, forecast.",
)
@ledger_option
@format_option(("table", "json"))
def alerts_add(
    team: str,
    webhook: str | None,
    slack: str | None,
    feishu: str | None,
    dingtalk: str | None,
    kinds: str,
    ledger_path: str | None,
    fmt: str,
) -> None:
    """Send TEAM's alerts to one URL (a rule). The URL is a secret: it is shown masked."""
    from klingcost.ledger import Ledger

    given = {
        name: url
        for name, url in zip(_CHANNEL_OPTIONS, (webhook, slack, feishu, dingtalk), strict=True)
        if url is not None
    }
    if len(given) != 1:
        raise click.UsageError(
            f"give exactly one of --webhook, --slack, --feishu or --dingtalk ({len(given)} given)"
        )
    ((channel, url),) = given.items()
    if url == "-":
        url = sys.stdin.readline().strip()
    on = [kind.strip().lower() for kind in kinds.split(",") if kind.strip()]
    with Ledger.open(ledger_path, create=False) as ledger:
        rule = ledger.add_alert_rule(team, channel=channel, url=url, on=on)
    if fmt == "json":
        click.echo(json.dumps(rule.to_dict(), indent=2))
        return
    click.echo(
        f"alert rule {rule.id}: {', '.join(rule.kinds)} alerts of {rule.team} go to "
        f"{rule.channel} {rule.masked}\ntry it: klingcost alerts test {rule.id}"
    )


def _rule_record(rule: Any, counts: Any) -> dict[str, Any]:
    return {
        **rule.to_dict(),
        "pending": counts.pending if counts else 0,
        "delivered": counts.delivered if counts else 0,
        "failed": counts.failed if counts else 0,
    }


_RULE_COLUMNS: list[str | Column] = [
    Column("id", right=True),
    "team",
    "channel",
    "url",
    Column("on", value=lambda r: ",".join(r["on"])),
    Column("pending", right=True),
    Column("delivered", right=True),
    Column("failed", right=True),
]


@alerts_group.command("list", epilog=EXIT_CODES_HELP)
@click.option("--team", metavar="NAME", help="Only this team's rules.")
@ledger_option
@format_option()
def alerts_list(team: str | None, ledger_path: str | None, fmt: str) -> None:
    """List the alert rules (URLs masked), with how many alerts each has pending, delivered
    and given up."""
    with open_read_only(ledger_path) as ledger:
        if team is not None:
            ledger.get_budget(team)  # an unknown team is BudgetNotFound (exit 2)
        counts = ledger.alert_counts()
        records = [_rule_record(rule, counts.get(rule.id)) for rule in ledger.alert_rules(team)]
    print_records(
        records,
        _RULE_COLUMNS,
        fmt,
        empty="no alert rules yet; add one with: klingcost alerts add --team T --webhook URL",
    )


@alerts_group.command("remove", epilog=EXIT_CODES_HELP)
@click.argument("rule_id", metavar="ID", type=int)
@ledger_option
def alerts_remove(rule_id: int, ledger_path: str | None) -> None:
    """Remove alert rule ID and drop its alerts not yet delivered."""
    from klingcost.ledger import Ledger

    with Ledger.open(ledger_path, create=False) as ledger:
        rule = ledger.remove_alert_rule(rule_id)
    click.echo(f"removed alert rule {rule.id} ({rule.team}, {rule.channel} {rule.masked})")


@alerts_group.command("test", epilog=EXIT_CODES_HELP)
@click.argument("rule_id", metavar="ID", type=int)
@ledger_option
def alerts_test(rule_id: int, ledger_path: str | None) -> None:
    """Send a test message to rule ID now and say what its URL answered (exit 1 if it
    failed)."""
    from klingcost.alerts import send_test

    with open_read_only(ledger_path) as ledger:
        attempt = send_test(ledger, rule_id)
    where = f"rule {attempt.rule_id} ({attempt.channel} {attempt.url})"
    if not attempt.ok:
        fail(f"{where}: the test message was not taken: {attempt.error}", EXIT_ERROR)
    click.echo(f"{where}: HTTP {attempt.status}, test message delivered")


@alerts_group.command("deliver", epilog=EXIT_CODES_HELP)
@ledger_option
@format_option(("table", "json"))
def alerts_deliver(ledger_path: str | None, fmt: str) -> None:
    """Deliver the alerts that are due now (and record forecast warnings first); exit 1 if
    any attempt failed (it is retried later, with backoff)."""
    from klingcost.alerts import deliver_due
    from klingcost.ledger import Ledger

    with Ledger.open(ledger_path, create=False) as ledger:
        ledger.deliver_in_background = False
        report = deliver_due(ledger)
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.describe())
        for a in report.attempts:
            if not a.ok:
                again = "given up" if a.next_attempt_at is None else f"again at {a.next_attempt_at}"
                click.echo(
                    f"  alert {a.outbox_id} to rule {a.rule_id} ({a.url}): {a.error}; {again}"
                )
        for team in report.forecasts:
            click.echo(f"  forecast warning: budget {team} runs out before its period ends")
    if report.retrying or report.gave_up:
        sys.exit(EXIT_ERROR)


# --- events -------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^(\d{1,6})\s*([mhd])$")


def _since(text: str | None) -> datetime | None:
    """``--since``: a date (2026-12-01), an ISO instant, or a time ago (30m, 12h, 7d)."""
    if text is None:
        return None
    value = text.strip()
    relative = _RELATIVE.match(value.lower())
    try:
        if relative:
            amount, unit = int(relative[1]), relative[2]
            span = {"m": timedelta(minutes=amount), "h": timedelta(hours=amount)}.get(
                unit, timedelta(days=amount)
            )
            return datetime.now(UTC) - span
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        instant = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        instant = None
    if instant is None:
        raise click.BadParameter(
            f"{text!r} is not a date (2026-12-01), an ISO time (2026-12-01T09:00Z) or a time "
            "ago (30m, 12h, 7d)",
            param_hint="--since",
        )
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def _event_record(event: Any) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": event.at.isoformat(),
        "kind": event.kind,
        "team": event.team,
        "hold_id": event.hold_id,
        "data": event.data,
    }


def _data_text(record: Mapping[str, Any]) -> str:
    text = json.dumps(record["data"], separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= 100 else text[:99] + "…"


_EVENT_COLUMNS: list[str | Column] = [
    Column("id", right=True),
    Column("at", value=lambda r: r["at"][:19].replace("T", " ")),
    "kind",
    "team",
    Column("hold_id", right=True),
    Column("data", value=_data_text),
]


@click.command("events", epilog=EXIT_CODES_HELP)
@click.option("--team", metavar="NAME", help="Only this team's events.")
@click.option(
    "--kind",
    metavar="KIND",
    help="Only events of this kind (reserve, settle, void, soft_threshold, over_limit, "
    "refused, forecast_warning, budget_set, ...).",
)
@click.option("--since", metavar="WHEN", help="Only events at or after: 2026-12-01, 12h, 7d.")
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=100,
    show_default=True,
    help="At most this many: the latest ones.",
)
@ledger_option
@format_option()
def events_command(
    team: str | None,
    kind: str | None,
    since: str | None,
    limit: int,
    ledger_path: str | None,
    fmt: str,
) -> None:
    """Show the ledger's event log (append-only): holds, settlements, alerts, refusals,
    budget changes, oldest first."""
    start = _since(since)
    with open_read_only(ledger_path) as ledger:
        if team is not None:
            ledger.get_budget(team)  # an unknown team is BudgetNotFound (exit 2)
        found = ledger.events(team=team, kind=kind, since=start, latest=limit)
    print_records([_event_record(e) for e in found], _EVENT_COLUMNS, fmt, empty="no events")
