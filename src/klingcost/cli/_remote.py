"""What the commands that reach the Kling API share: --base-url, the API key, a listening socket."""

from __future__ import annotations

import os
import socket

import click

from klingcost.cli._common import fail


def check_base_url(value: str | None) -> str | None:
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


def need_api_key() -> None:
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


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on HOST:PORT (see :mod:`klingcost._listen`), or exit 1 saying why not."""
    from klingcost._listen import address, listening_socket

    try:
        return listening_socket(host, port)
    except OSError as exc:  # a taken port, an address not ours, a name that does not resolve
        fail(f"cannot listen on {address(host, port)}: {exc.strerror or exc}{port_hint(exc)}")


def port_hint(exc: OSError) -> str:
    """What to do about a port another program holds (nothing for other failures)."""
    import errno

    if exc.errno != errno.EADDRINUSE:
        return ""
    return (
        " (another program listens there: stop it, or pick another port with --port N; "
        "--port 0 takes any free one)"
    )
