"""Running the proxy: in the foreground (``klingcost proxy``, one process or ``--workers N``) or
in a test's thread (:class:`ProxyServer`).

The listening socket is bound first (:mod:`klingcost._listen`), so a taken port is reported as
such and port 0 gives a real port, which is also the proxy's own callback URL unless
``public_url`` says otherwise. Connections get the limits of :mod:`klingcost._limits` (header
timeout, idle timeout, connection limit); the body limit is the app's own
(:mod:`klingcost.proxy.limits`).

``--workers N`` runs uvicorn's supervisor: N processes accept on the one socket. Each builds
its app with :func:`klingcost.proxy.app.app_from_env` from the settings the parent put in
``KLINGCOST_PROXY_SETTINGS``; the ledger is the only state they share. The parent opens the
ledger once first (so that its migrations do not race), and checks the API key and the secrets,
so that a mistake fails once, with its message, rather than in every worker.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.types import ASGIApp

from klingcost._limits import BurstLog, ServerLimits, limited_protocol
from klingcost._listen import address, listening_socket, serve_in_thread
from klingcost.proxy.limits import proxy_limits
from klingcost.proxy.settings import SETTINGS_ENV, ProxySettings

#: uvicorn's factory for each worker.
WORKER_APP = "klingcost.proxy.app:app_from_env"


class ProxyConfig(uvicorn.Config):
    """uvicorn's configuration with the connection limits of :mod:`klingcost._limits`, set up
    in whichever process loads it: it pickles (workers get it whole and load it themselves)."""

    def __init__(self, app: ASGIApp | str, *, limits: ServerLimits, **options: Any) -> None:
        self.limits = limits
        options.setdefault("timeout_keep_alive", max(1, round(limits.idle_timeout)))
        options.setdefault("h11_max_incomplete_event_size", 16 * 1024)
        super().__init__(app, **options)

    def load(self) -> None:
        self.http = limited_protocol(self.limits, BurstLog())
        super().load()


def public_url(host: str, sock: socket.socket, tls: bool) -> str:
    """The URL the proxy is reached at (a wildcard address shown as the loopback one)."""
    if host in ("0.0.0.0", "::", ""):
        host = "::1" if host == "::" else "127.0.0.1"
    scheme = "https" if tls else "http"
    return f"{scheme}://{address(host, sock.getsockname()[1])}"


def check(settings: ProxySettings) -> None:
    """What every worker needs, checked once in the parent (and made: the ledger's schema,
    the secrets' files). Raises the error a worker would."""
    import anyio

    from klingcost import keys
    from klingcost.api.client import AsyncKlingClient
    from klingcost.ledger import Ledger
    from klingcost.proxy.settings import callback_secret

    client = AsyncKlingClient(base_url=settings.upstream_url())  # the key, the URL
    anyio.run(client.aclose)
    Ledger.open(settings.ledger).close()
    keys.server_secret()
    callback_secret()


def serve(
    settings: ProxySettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8790,
    workers: int = 1,
    limits: ServerLimits | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    ready: Callable[[str], None] | None = None,
    log_level: str = "warning",
) -> None:
    """Serve in the foreground until interrupted; ``ready(url)`` once the socket is bound.

    OSError when the socket cannot be bound; the errors of :func:`check` before anything
    is served.
    """
    limits = limits or proxy_limits(max_body=settings.max_body)
    tls = {"ssl_certfile": certfile, "ssl_keyfile": keyfile} if certfile else {}
    with listening_socket(host, port) as sock:
        url = public_url(host, sock, bool(certfile))
        settings = replace(settings, public_url=settings.public_url or url)
        options: dict[str, Any] = {"host": host, "port": port, "log_level": log_level, **tls}
        if workers <= 1:
            from klingcost.proxy.app import create_app

            config = ProxyConfig(create_app(settings), limits=limits, **options)
            server = uvicorn.Server(config)
            if ready is not None:
                ready(url)
            server.run(sockets=[sock])
            return
        from uvicorn.supervisors import Multiprocess

        from klingcost.proxy.metrics import prepare_workers

        check(settings)
        os.environ[SETTINGS_ENV] = settings.to_env()
        prepare_workers()
        config = ProxyConfig(WORKER_APP, limits=limits, factory=True, workers=workers, **options)
        if ready is not None:
            ready(url)
        Multiprocess(config, sockets=[sock]).run()


class ProxyServer:
    """The proxy on 127.0.0.1 (a free port), served from a background thread, for tests.

    >>> settings = ProxySettings(upstream=fake.base_url)              # doctest: +SKIP
    >>> with ProxyServer(settings, api_key=KEY) as proxy:              # doctest: +SKIP
    ...     httpx.post(f"{proxy.base_url}/v1/videos/text2video", json=body, headers=auth)

    ``options`` go to :func:`klingcost.proxy.app.create_app` (``ledger``, ``api_key``,
    ``authenticate``, ``routes``, ``access_log``...).
    """

    def __init__(
        self,
        settings: ProxySettings,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ServerLimits | None = None,
        **options: Any,
    ) -> None:
        self.settings = settings
        self.host, self.port = host, port
        self.limits = limits or proxy_limits()
        self.options = options
        self.base_url = ""
        self.app: ASGIApp | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def start(self) -> Self:
        from klingcost.proxy.app import create_app

        if self._server is not None:
            raise RuntimeError("the proxy is already running")
        self._socket = listening_socket(self.host, self.port)
        self.base_url = public_url(self.host, self._socket, False)
        settings = replace(self.settings, public_url=self.settings.public_url or self.base_url)
        try:
            self.app = create_app(settings, **self.options)
        except BaseException:
            self._socket.close()
            raise
        config = ProxyConfig(
            self.app,
            limits=self.limits,
            host=self.host,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        try:
            self._thread = serve_in_thread(self._server, self._socket, "the proxy")
        except RuntimeError:
            self.stop()  # the socket (and the fake's certificate) too
            raise
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ProxyServer(base_url={self.base_url!r})"


__all__ = ["WORKER_APP", "ProxyConfig", "ProxyServer", "check", "public_url", "serve"]
