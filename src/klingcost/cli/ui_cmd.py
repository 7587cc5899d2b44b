"""``klingcost ui``: the live budget page for a ledger, until interrupted."""

from __future__ import annotations

import click

from klingcost.cli._common import EXIT_CODES_HELP, fail, ledger_option, open_read_only


@click.command("ui", epilog=EXIT_CODES_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8790,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--refresh",
    default=5,
    show_default=True,
    type=click.IntRange(1, 3600),
    help="Seconds between two refreshes of the page.",
)
@ledger_option
def ui_command(host: str, port: int, refresh: int, ledger_path: str | None) -> None:
    """Serve the live budget page of a ledger at /ui until interrupted.

    Budgets with used, held, available and forecast; a burn-down chart per budget; recent
    tasks (estimate against charge); refusals; price drift. The page refreshes itself every
    --refresh seconds and needs no network (its chart library is bundled). The ledger is
    opened read-only. `klingcost proxy` serves the same page at /ui.

    \b
      klingcost ui
      klingcost ui --port 0 --ledger team.db
    """
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from klingcost._listen import address, listening_socket
    from klingcost.ui import create_app

    with open_read_only(ledger_path) as ledger:
        try:
            sock = listening_socket(host, port)
        except OSError as exc:
            fail(f"cannot listen on {address(host, port)}: {exc.strerror or exc}")
        with sock:
            bound = address(host, int(sock.getsockname()[1]))
            config = uvicorn.Config(
                create_app(ledger, refresh=refresh), log_level="warning", lifespan="off"
            )
            click.echo(f"klingcost ui on http://{bound}/ui for {ledger.path} (Ctrl-C to stop)")
            try:
                uvicorn.Server(config).run(sockets=[sock])
            except KeyboardInterrupt:
                pass  # Ctrl-C is how it stops: exit 0
            except SystemExit as exc:
                if exc.code != STARTUP_FAILURE:
                    raise
                fail("the page's server did not start (see the log above)")
