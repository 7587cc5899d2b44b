"""``klingcost fake-server``: the fake Kling API in the foreground, for demos and manual tests."""

from __future__ import annotations

from fractions import Fraction

import click

from klingcost.cli._common import EXIT_CODES_HELP, fail
from klingcost.money import exact


def register(main: click.Group) -> None:
    main.add_command(fake_server_command)


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
@click.option("--key", metavar="K", help="The only API key to accept (default: any Bearer key).")
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
    help="Charge FACTOR times the estimated units for MODEL (repeatable), "
    "to exercise reconciliation: --drift kling-v1-6=1.1",
)
def fake_server_command(
    host: str, port: int, key: str | None, delay: float, drift: tuple[str, ...]
) -> None:
    """Run a fake Kling API (the openai-hk protocol) until interrupted.

    Point a client at it with KLINGCOST_BASE_URL=<the printed URL>. Tasks are charged
    the units klingcost estimates; /_fake/ledger shows what was charged, /_fake/faults
    injects errors (see klingcost.fake_server).
    """
    from uvicorn.config import STARTUP_FAILURE

    from klingcost._listen import address
    from klingcost.fake_server import FakeKlingState, serve

    state = FakeKlingState(api_key=key, done_after=delay, drift=_drift(drift))

    listening = False

    def ready(url: str) -> None:
        nonlocal listening
        listening = True
        click.echo(f"fake Kling API on {url} (Ctrl-C to stop)")
        click.echo(f"  export KLINGCOST_BASE_URL={url}")
        if key:  # a key for the fake only: showing it is what a user needs to use it
            click.echo(f"  export KLINGCOST_API_KEY={key}")

    try:
        serve(state, host=host, port=port, ready=ready)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how it stops: exit 0, as `hooks serve` does
    except OSError as exc:
        if listening:  # not the bind: some other failure, reported as such
            raise
        # serve binds the socket itself before it calls ready: this is a taken port, a
        # host that is not ours, a name that does not resolve ...
        fail(f"cannot listen on {address(host, port)}: {exc.strerror or exc}")
    except SystemExit as exc:
        # uvicorn exits 3 when it fails to start, which is "refused by a budget" here.
        if exc.code != STARTUP_FAILURE:
            raise
        fail("the fake Kling API did not start (see the log above)")
