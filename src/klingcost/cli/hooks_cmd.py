"""``klingcost hooks serve``: receive Kling's notify_hook callbacks and settle tasks as they end."""

from __future__ import annotations

import click

from klingcost.cli._common import (
    EXIT_CODES_HELP,
    EXIT_INVALID,
    fail,
    ledger_option,
)
from klingcost.cli._remote import base_url_option, check_base_url, listen, need_api_key


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


#: ``hooks serve``'s default port: beside ``fake-server``'s 8787, so both run at once.
HOOKS_PORT = 8788


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
        need_api_key()
    base_url = check_base_url(base_url)
    client = AsyncKlingClient(base_url=base_url) if confirm else None
    with (
        listen(host, port) as sock,
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
