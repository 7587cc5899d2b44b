"""``klingcost fake-server``: the fake Kling API in the foreground, for demos and real clients."""

from __future__ import annotations

import signal
from fractions import Fraction
from pathlib import Path
from types import FrameType

import click

from klingcost.cli._common import EXIT_CODES_HELP, fail
from klingcost.money import exact


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _drift(values: tuple[str, ...]) -> dict[str, Fraction]:
    drift: dict[str, Fraction] = {}
    for value in values:
        model, sep, factor = value.partition("=")
        try:
            if not sep or not model.strip():
                raise ValueError("expected MODEL=FACTOR")
            drift[model.strip()] = exact(factor)
        except (TypeError, ValueError) as exc:
            raise click.BadParameter(
                f"{value!r}: {exc} (e.g. kling-v1-6=1.1)", param_hint="--drift"
            ) from None
    return drift


@click.command("fake-server", epilog=EXIT_CODES_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8787,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--auth",
    type=click.Choice(["bearer", "jwt", "both"]),
    default="bearer",
    show_default=True,
    help="bearer: a fixed key (openai-hk); jwt: a token signed with --secret-key and issued by "
    "--access-key, checked as Kling checks it (signature, exp, nbf); both: either.",
)
@click.option(
    "--key",
    metavar="K",
    help="The only Bearer key to accept (default: one made at start, printed with its export "
    "line).",
)
@click.option("--access-key", metavar="AK", help="The access key a JWT must name as its iss.")
@click.option(
    "--secret-key",
    metavar="SK",
    envvar="KLINGCOST_FAKE_SECRET_KEY",
    help="The secret key JWTs are signed with (or KLINGCOST_FAKE_SECRET_KEY).",
)
@click.option(
    "--profile",
    type=click.Choice(["openai-hk", "kling"]),
    default="openai-hk",
    show_default=True,
    help="Whose limits and billing to play: openai-hk (prompt <= 500 characters, kling-v2-6 and "
    "kling-video-o1 billed as pro) or kling (Kling's own API: prompt <= 2500, modes as sent).",
)
@click.option(
    "--tls",
    is_flag=True,
    help="Serve https with a self-signed certificate made at start; its path is printed for "
    "clients to trust (NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE, SSL_CERT_FILE).",
)
@click.option(
    "--delay",
    metavar="S",
    type=click.FloatRange(0),
    default=0.2,
    show_default=True,
    help="Seconds from submission until a task is done (it is processing before that).",
)
@click.option(
    "--drift",
    metavar="MODEL=FACTOR",
    multiple=True,
    help="Charge FACTOR times the listed units for MODEL (repeatable), "
    "to exercise reconciliation: --drift kling-v1-6=1.1",
)
@click.option(
    "--prices",
    "prices",
    metavar="FILE",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Entries merged over the fake's own price table (repeatable), in its format "
    "(klingcost/testing/prices.yaml): a model the API has launched and an overlay of "
    "klingcost's sheet prices, so that the fake accepts and charges it.",
)
def fake_server_command(
    host: str,
    port: int,
    auth: str,
    key: str | None,
    access_key: str | None,
    secret_key: str | None,
    profile: str,
    tls: bool,
    delay: float,
    drift: tuple[str, ...],
    prices: tuple[Path, ...],
) -> None:
    """Run a fake Kling API until interrupted.

    Point a client at it with KLINGCOST_BASE_URL=<the printed URL>. Tasks are charged from
    the fake's own table of Kling's unit prices (klingcost/testing/prices.yaml), not from
    klingcost's sheet; /_fake/ledger shows what was charged, /_fake/requests what clients
    sent, /_fake/faults injects errors (see klingcost.testing).
    """
    import shutil
    import tempfile

    from uvicorn.config import STARTUP_FAILURE

    from klingcost._listen import address
    from klingcost.testing import FakeKlingState, serve
    from klingcost.testing.prices import TableError, load_table_over
    from klingcost.testing.tls import TLSUnavailable, certificate_hosts, self_signed

    if auth != "bearer" and not (access_key and secret_key):
        raise click.UsageError(
            f"--auth {auth} needs --access-key and --secret-key (the pair a client signs its "
            "JWT with); give both, or use --auth bearer",
        )
    try:
        table = load_table_over(prices) if prices else None
    except TableError as exc:
        raise click.BadParameter(str(exc), param_hint="--prices") from None
    if key is None and auth != "jwt":  # a key made for this run, printed for its clients
        import secrets

        key = f"fake-{secrets.token_urlsafe(12)}"
    state = FakeKlingState(
        api_key=key,
        auth=auth,  # type: ignore[arg-type]  # click.Choice checked it
        access_key=access_key,
        secret_key=secret_key,
        profile=profile,
        done_after=delay,
        drift=_drift(drift),
        table=table,
    )
    certificate = None
    if tls:
        try:
            directory = Path(tempfile.mkdtemp(prefix="klingcost-fake-tls-"))
            certificate = self_signed(directory, certificate_hosts(host))
        except TLSUnavailable as exc:
            fail(str(exc))
        # uvicorn re-raises a SIGTERM after its shutdown; as an interrupt it reaches the
        # `finally` below, so a killed server removes its private key too.
        signal.signal(signal.SIGTERM, _interrupt)

    listening = False

    def ready(url: str) -> None:
        nonlocal listening
        listening = True
        click.echo(f"fake Kling API on {url} (Ctrl-C to stop)")
        click.echo(f"  export KLINGCOST_BASE_URL={url}")
        if key:  # a key for the fake only: showing it is what a user needs to use it
            click.echo(f"  export KLINGCOST_API_KEY={key}")
        else:
            click.echo("  (JWT only: clients sign tokens with --access-key and --secret-key)")
        if certificate is not None:
            click.echo(f"  certificate: {certificate.cert}")
            click.echo(f"  export NODE_EXTRA_CA_CERTS={certificate.cert}")
            click.echo(f"  export REQUESTS_CA_BUNDLE={certificate.cert}")
            click.echo(f"  export SSL_CERT_FILE={certificate.cert}")

    try:
        serve(state, host=host, port=port, tls=certificate, ready=ready)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how it stops: exit 0, as `hooks serve` does
    except OSError as exc:
        if listening:  # not the bind: some other failure, reported as such
            raise
        # serve binds the socket itself before it calls ready: this is a taken port, a
        # host that is not ours, a name that does not resolve ...
        from klingcost.cli._remote import port_hint

        fail(f"cannot listen on {address(host, port)}: {exc.strerror or exc}{port_hint(exc)}")
    except SystemExit as exc:
        # uvicorn exits 3 when it fails to start, which is "refused by a budget" here.
        if exc.code != STARTUP_FAILURE:
            raise
        fail("the fake Kling API did not start (see the log above)")
    finally:
        if certificate is not None:
            shutil.rmtree(certificate.directory, ignore_errors=True)
