"""``klingcost proxy``: a Kling-compatible API that guards every client by its base URL."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import click

from klingcost.cli._common import EXIT_CODES_HELP, EXIT_INVALID, fail, ledger_option


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@click.command("proxy", epilog=EXIT_CODES_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8790,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--upstream",
    metavar="URL",
    envvar="KLINGCOST_BASE_URL",
    help="The Kling API behind the proxy (env KLINGCOST_BASE_URL; default openai-hk's "
    "https://api.openai-hk.com/kling), reached with KLINGCOST_API_KEY.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes serving the one port; they share only the ledger.",
)
@click.option(
    "--tls",
    is_flag=True,
    help="Serve https: with --certfile/--keyfile, or a self-signed certificate made at start "
    "(its path is printed for clients to trust).",
)
@click.option(
    "--certfile", type=click.Path(dir_okay=False, exists=True), help="TLS certificate (PEM)."
)
@click.option(
    "--keyfile", type=click.Path(dir_okay=False, exists=True), help="TLS private key (PEM)."
)
@click.option(
    "--public-url",
    metavar="URL",
    envvar="KLINGCOST_PROXY_URL",
    help="How the upstream reaches this proxy, for the callback URL put in each create "
    "(env KLINGCOST_PROXY_URL; default the address it listens on).",
)
@click.option(
    "--callbacks/--no-callbacks",
    default=True,
    show_default=True,
    help="Put the proxy's callback URL in each create and settle on the upstream's callback "
    "(--no-callbacks: forward the client's callback fields unchanged; holds settle from task "
    "queries and the background pass; for a proxy the upstream cannot reach).",
)
@click.option(
    "--settle-interval",
    metavar="S",
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    help="Seconds between background settlement passes (as `klingcost sync`) for tasks "
    "nobody polls, each made by one worker of all sharing the ledger; 0: none.",
)
@click.option("--log-prompts", is_flag=True, help="Show prompts in the access log.")
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="One JSON line per request on stdout (no keys; no prompts without --log-prompts).",
)
@click.option(
    "--max-body",
    metavar="BYTES",
    type=click.IntRange(1024, 1 << 30),
    default=64 * 1024 * 1024,
    show_default=True,
    help="Largest request body (Kling's largest request, four 10 MB images inline in base64, "
    "fits); over it: HTTP 413, code 1201, unread.",
)
@ledger_option
def proxy_command(
    host: str,
    port: int,
    upstream: str | None,
    workers: int,
    tls: bool,
    certfile: str | None,
    keyfile: str | None,
    public_url: str | None,
    callbacks: bool,
    settle_interval: float,
    log_prompts: bool,
    access_log: bool,
    max_body: int,
    ledger_path: str | None,
) -> None:
    """Serve a Kling-compatible API that prices, holds and settles every job per team.

    Clients change only their base URL (to http://HOST:PORT, or .../kling for an openai-hk
    client) and use a key from `klingcost keys create`. Each create is priced with the
    sheet and held against the key's team before it is forwarded: over budget it is
    refused (HTTP 429, code 1102) and never sent. Task queries, callbacks and a background
    pass settle the holds; `klingcost sync` is not needed.
    """
    import shutil
    import tempfile

    from uvicorn.config import STARTUP_FAILURE

    from klingcost._listen import address
    from klingcost.proxy.server import check, serve
    from klingcost.proxy.settings import ProxySettings
    from klingcost.testing.tls import TLSUnavailable, certificate_hosts, self_signed

    if (certfile is None) != (keyfile is None):
        fail("--certfile and --keyfile go together: give both, or neither", EXIT_INVALID)
    settings = ProxySettings(
        upstream=upstream,
        ledger=ledger_path,
        public_url=public_url,
        callbacks=callbacks,
        settle_interval=settle_interval,
        log_prompts=log_prompts,
        access_log=access_log,
        max_body=max_body,
    )
    try:
        check(settings)  # no key, a bad URL, a bad secret: one message, before any worker
    except ValueError as exc:  # a short KLINGCOST_HOOK_SECRET, a readable secret file
        fail(str(exc), EXIT_INVALID)
    directory = None
    if (tls or certfile) and certfile is None:
        try:
            directory = Path(tempfile.mkdtemp(prefix="klingcost-proxy-tls-"))
            made = self_signed(directory, certificate_hosts(host))
        except TLSUnavailable as exc:
            fail(str(exc))
        certfile, keyfile = str(made.cert), str(made.key)
        # uvicorn re-raises a SIGTERM after its shutdown; as an interrupt it reaches the
        # `finally` below, so a killed server removes its private key too.
        signal.signal(signal.SIGTERM, _interrupt)
    listening = False

    def ready(url: str) -> None:
        nonlocal listening
        listening = True
        click.echo(f"klingcost proxy on {url} -> {settings.upstream_url()} (Ctrl-C to stop)")
        click.echo(f"  clients: base URL {url} (Kling) or {url}/kling (openai-hk)")
        if directory is not None:
            click.echo(f"  certificate: {certfile}")

    try:
        serve(
            settings,
            host=host,
            port=port,
            workers=workers,
            certfile=certfile,
            keyfile=keyfile,
            ready=ready,
        )
    except KeyboardInterrupt:
        pass  # Ctrl-C is how it stops: exit 0
    except OSError as exc:
        if listening:
            raise
        fail(f"cannot listen on {address(host, port)}: {exc.strerror or exc}")
    except SystemExit as exc:
        # uvicorn exits 3 when it fails to start, which is "refused by a budget" here.
        if exc.code != STARTUP_FAILURE:
            raise
        fail("the proxy did not start (see the log above)")
    finally:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
