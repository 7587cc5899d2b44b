"""``klingcost keys``: the keys of ``klingcost proxy``; and the refusals of ``holds --refused``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from klingcost.cli._common import (
    EXIT_CODES_HELP,
    echo_json,
    json_option,
    ledger_option,
    open_read_only,
)
from klingcost.cli._output import Column, format_option, print_records

if TYPE_CHECKING:
    from klingcost.ledger import Event, Ledger


def _open(path: str | None) -> Ledger:
    from klingcost.ledger import Ledger

    return Ledger.open(path, create=False)  # a key needs a team, so a budget, so a ledger


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    from klingcost.keys import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group("keys", epilog=EXIT_CODES_HELP)
def keys_group() -> None:
    """Make, list and revoke the keys of `klingcost proxy`, one team each.

    A key is shown once, as a bearer key and as an access-key/secret-key pair for clients
    that sign JWTs as Kling's API asks. The ledger keeps only the bearer key's hash and no
    secret key (secret keys derive from the server secret: KLINGCOST_PROXY_SECRET, else the
    0600 file $KLINGCOST_HOME/proxy-secret).

    \b
      klingcost keys create --team acme --name ci --expires 30d --max-concurrent 4
      klingcost keys list --team acme
      klingcost keys revoke kc_0123456789abcdef
    """


@keys_group.command("create", epilog=EXIT_CODES_HELP)
@click.option("--team", "-t", required=True, metavar="NAME", help="The team (a budget) it spends.")
@click.option("--name", metavar="TEXT", help="A label for people (where the key is used).")
@click.option(
    "--expires",
    callback=_duration,
    metavar="DURATION",
    help="Refused after this long: 30d, 12h, 90m, 2w (default: never).",
)
@click.option(
    "--max-concurrent",
    type=click.IntRange(min=1),
    metavar="K",
    help="At most K of its jobs open at once; more are refused with 429/1303 (default: no limit).",
)
@ledger_option
@json_option
def keys_create(
    team: str,
    name: str | None,
    expires: timedelta | None,
    max_concurrent: int | None,
    ledger_path: str | None,
    as_json: bool,
) -> None:
    """Make a key for TEAM and print it, once.

    --json prints exactly id, team, key, access_key and secret_key.
    """
    from klingcost.keys import create_key, server_secret

    secret = server_secret()  # first: a bad secret leaves no key behind
    with _open(ledger_path) as ledger:
        made = create_key(
            ledger,
            team,
            secret=secret,
            name=name,
            expires_in=expires,
            max_concurrent=max_concurrent,
        )
    if as_json:
        echo_json(made.as_dict())
        return
    key = made.api_key
    limits = [
        f"expires {key.expires_at.isoformat(timespec='seconds')}" if key.expires_at else "",
        f"at most {key.max_concurrent} jobs open" if key.max_concurrent else "",
    ]
    details = ", ".join(part for part in limits if part)
    click.echo(
        f"key {key.id} for team {key.team}"
        + (f" ({key.name})" if key.name else "")
        + (f": {details}" if details else "")
    )
    click.echo(f"  bearer key:  {made.key}")
    click.echo(f"  access key:  {key.access_key}")
    click.echo(f"  secret key:  {made.secret_key}")
    click.echo(
        "Shown once: the ledger keeps only a hash of the bearer key and no secret key. Send\n"
        "`Authorization: Bearer <bearer key>`, or a JWT signed with the secret key (HS256,\n"
        "iss = access key)."
    )


def _state(record: Mapping[str, Any]) -> str:
    return str(record["state"])


@keys_group.command("list", epilog=EXIT_CODES_HELP)
@click.option("--team", "-t", metavar="NAME", help="Only this team's keys.")
@ledger_option
@format_option()
def keys_list(team: str | None, ledger_path: str | None, fmt: str) -> None:
    """List the keys (never a secret): id, team, name, state, expiry, concurrency limit."""
    with open_read_only(ledger_path) as ledger:
        if team is not None:
            ledger.get_budget(team)  # an unknown team is an error (exit 2), not "no keys"
        now = ledger.clock.now()
        found = ledger.api_keys(team)
    records = []
    for key in found:
        record = key.as_dict()
        record["state"] = (
            "revoked" if key.revoked_at else "active" if key.usable_at(now) else "expired"
        )
        records.append(record)
    print_records(
        records,
        [
            "id",
            "team",
            "name",
            Column("state", value=_state),
            "expires_at",
            Column("max_concurrent", right=True),
            "created_at",
            "access_key",
        ],
        fmt,
        empty="no keys" + (f" for team {team}" if team else ""),
    )


@keys_group.command("revoke", epilog=EXIT_CODES_HELP)
@click.argument("key_id", metavar="ID")
@ledger_option
def keys_revoke(key_id: str, ledger_path: str | None) -> None:
    """Revoke key ID: every request with it (bearer or JWT) is refused from now on.

    A proxy that read the key in the last second may still take it for up to a second more.
    Its open jobs stay as they are.
    """
    with _open(ledger_path) as ledger:
        key = ledger.revoke_key(key_id)
    when = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "now"
    click.echo(f"key {key.id} of team {key.team} revoked ({when})")


# --- refusals (`klingcost holds --refused`) -----------------------------------------------------


def refusal_dict(event: Event) -> dict[str, Any]:
    """A refusal as JSON data: when, which team and key, why, needed and left."""
    return {"id": event.id, "at": event.at.isoformat(), "team": event.team, **event.data}


def _job(record: Mapping[str, Any]) -> str:
    job = record.get("job_class") or {}
    parts = [job.get(name) for name in ("endpoint", "model", "mode", "duration")]
    return " ".join(str(p) for p in parts if p not in (None, ""))


def _amount(name: str) -> Any:
    def cell(record: Mapping[str, Any]) -> str | None:
        value = record.get(name)
        return None if value is None else f"{value} {record.get('unit') or ''}".rstrip()

    return cell


def print_refusals(ledger_path: str | None, team: str | None, fmt: str) -> None:
    """What ``klingcost holds --refused`` prints."""
    with open_read_only(ledger_path) as ledger:
        records = [refusal_dict(event) for event in ledger.refusals(team=team)]
    print_records(
        records,
        [
            Column("id", right=True),
            "at",
            "team",
            "reason",
            Column("needed", value=_amount("needed"), right=True),
            Column("left", value=_amount("left"), right=True),
            "budget",
            "key_id",
            "source",
            Column("job", value=_job),
        ],
        fmt,
        empty="no refusals" + (f" for team {team}" if team else ""),
    )
