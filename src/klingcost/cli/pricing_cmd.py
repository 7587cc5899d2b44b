"""``klingcost pricing``: the price sheet a shared ledger publishes to its submitters."""

from __future__ import annotations

from typing import Any

import click

from klingcost.cli._common import (
    EXIT_CODES_HELP,
    EXIT_INVALID,
    echo_json,
    fail,
    json_option,
    ledger_option,
)


@click.group("pricing", epilog=EXIT_CODES_HELP)
def pricing_group() -> None:
    """The price sheet a shared ledger's holds are priced by.

    Once a sheet is published, every hold must be priced with it: a submitter whose
    --pricing or KLINGCOST_PRICING gives another sheet is refused (exit 2), unless the ledger
    allows local overlays. A ledger with no published sheet takes holds priced by any sheet.
    """


def _published_dict(published: Any, overlays: bool) -> dict[str, Any]:
    return {
        "version": published.version,
        "sha256": published.sha256,
        "origin": published.origin,
        "published_at": published.published_at,
        "local_overlays": "allow" if overlays else "refuse",
    }


@pricing_group.command("publish", epilog=EXIT_CODES_HELP)
@click.argument("file", required=False, metavar="FILE")
@click.option(
    "--bundled", is_flag=True, help="Publish the bundled sheet alone (Kling's own price list)."
)
@ledger_option
@json_option
def pricing_publish(
    file: str | None, bundled: bool, ledger_path: str | None, as_json: bool
) -> None:
    """Publish FILE as the sheet every hold on the ledger is priced by.

    FILE is read as --pricing reads it: an overlay merged over the bundled sheet, or a whole
    sheet with `replace: true`. Publishing a sheet other than the current one makes a new
    version; the versions are kept, each with the sha256 of the sheet's canonical form.

    \b
      klingcost pricing publish our-prices.yaml
      klingcost pricing publish --bundled
    """
    from klingcost.ledger import Ledger
    from klingcost.sheet import load_sheet

    if (file is None) == (not bundled):
        fail(
            "give the sheet to publish: FILE (an overlay or a whole sheet), or --bundled "
            "for the bundled sheet alone (not both)",
            EXIT_INVALID,
        )
    sheet = load_sheet(file) if file is not None else _bundled()
    with Ledger.open(ledger_path, create=False) as ledger:
        before = ledger.published_sheet()
        published = ledger.publish_sheet(sheet)
        overlays = ledger.local_overlays_allowed()
    if as_json:
        echo_json(_published_dict(published, overlays))
        return
    same = before is not None and before.version == published.version
    verb = "already published as" if same else "published"
    click.echo(f"{verb} version {published.version}: sha256 {published.sha256}")
    click.echo(f"from {published.origin}")
    if not overlays:
        click.echo("holds priced with any other sheet are refused")


def _bundled() -> Any:
    from klingcost.sheet import bundled_sheet

    return bundled_sheet()


@pricing_group.command("show", epilog=EXIT_CODES_HELP)
@click.option("--versions", is_flag=True, help="List every published version, oldest first.")
@ledger_option
@json_option
def pricing_show(versions: bool, ledger_path: str | None, as_json: bool) -> None:
    """What the ledger publishes: its version, sha256 and origin, and whether submitters may
    price with local overlays instead."""
    from klingcost.ledger import Ledger

    with Ledger.open(ledger_path, create=False) as ledger:
        published = ledger.published_sheet()
        overlays = ledger.local_overlays_allowed()
        history = ledger.published_versions() if versions else []
    if as_json:
        data: dict[str, Any] = (
            _published_dict(published, overlays)
            if published is not None
            else {"version": None, "local_overlays": "allow" if overlays else "refuse"}
        )
        if versions:
            data["versions"] = [
                {
                    "version": v.version,
                    "sha256": v.sha256,
                    "origin": v.origin,
                    "published_at": v.published_at,
                }
                for v in history
            ]
        echo_json(data)
        return
    if published is None:
        click.echo(
            "no sheet published: holds priced by any sheet are taken "
            "(`klingcost pricing publish FILE` publishes one)"
        )
        return
    click.echo(f"version {published.version}: sha256 {published.sha256}")
    click.echo(f"from {published.origin}, published {published.published_at}")
    click.echo(
        "local overlays: "
        + ("allowed" if overlays else "refused (holds priced by another sheet are refused)")
    )
    for v in history:
        click.echo(f"  v{v.version}  {v.published_at}  {v.sha256}  {v.origin}")


@pricing_group.command("local-overlays", epilog=EXIT_CODES_HELP)
@click.argument("choice", required=False, type=click.Choice(["allow", "refuse"]))
@ledger_option
@json_option
def pricing_local_overlays(choice: str | None, ledger_path: str | None, as_json: bool) -> None:
    """Allow or refuse holds priced by a submitter's own sheet (--pricing, KLINGCOST_PRICING)
    once the ledger publishes one; without CHOICE, show the setting. Refused by default.

    \b
      klingcost pricing local-overlays allow
      klingcost pricing local-overlays refuse
    """
    from klingcost.ledger import Ledger

    with Ledger.open(ledger_path, create=False) as ledger:
        if choice is not None:
            ledger.allow_local_overlays(choice == "allow")
        allowed = ledger.local_overlays_allowed()
    if as_json:
        echo_json({"local_overlays": "allow" if allowed else "refuse"})
        return
    click.echo(
        "local overlays allowed: holds may be priced by any sheet"
        if allowed
        else "local overlays refused: holds must be priced by the published sheet"
    )
