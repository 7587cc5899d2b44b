"""Running the fake Kling API: in the foreground (``klingcost fake-server``) or in a test's thread.

:class:`FakeKling` runs it in a background thread on a free port::

    with FakeKling(done_after=0) as fake:
        client = KlingClient("hk-test", base_url=fake.base_url)
        fake.set_faults({"kind": "rate_limit", "times": 2})

With ``tls=True`` it serves https with a certificate it makes for itself (:mod:`.tls`);
``fake.cert`` is the file a client trusts.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from klingcost._listen import address, listening_socket, serve_in_thread
from klingcost.testing.app import TRANSPORT_KEY, create_app
from klingcost.testing.auth import AuthMode
from klingcost.testing.state import FakeKlingState
from klingcost.testing.tls import Certificate, certificate_hosts, self_signed

__all__ = ["FakeKling", "serve"]


class _Wrapper:
    """The outermost ASGI layer: hands uvicorn's transport to the ``drop`` fault."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if transport is not None:
                scope[TRANSPORT_KEY] = transport
        await self.app(scope, receive, send)


def _config(app: Starlette, host: str, port: int, tls: Certificate | None) -> uvicorn.Config:
    return uvicorn.Config(
        _Wrapper(app),
        host=host,
        port=port,
        http="h11",
        ws="none",
        loop="asyncio",
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
    )


def _url(host: str, sock: socket.socket, tls: bool) -> str:
    scheme = "https" if tls else "http"
    if host in ("0.0.0.0", "::", ""):  # reachable on every address: show the loopback one
        host = "::1" if host == "::" else "127.0.0.1"
    return f"{scheme}://{address(host, sock.getsockname()[1])}"


def serve(
    state: FakeKlingState,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: Certificate | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the fake API in the foreground until interrupted; ``ready(base_url)`` once bound."""
    with listening_socket(host, port) as sock:
        server = uvicorn.Server(_config(create_app(state), host, port, tls))
        if ready is not None:
            ready(_url(host, sock, tls is not None))
        server.run(sockets=[sock])


class FakeKling:
    """The fake Kling API on 127.0.0.1 (a free port), served from a background thread.

    >>> with FakeKling(done_after=0) as fake:          # doctest: +SKIP
    ...     KlingClient("hk-x", base_url=fake.base_url).submit("text2video", {"prompt": "x"})
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        processing_after: float = 0.0,
        done_after: float = 0.2,
        drift: Mapping[str, Fraction | str | int] | None = None,
        auth: AuthMode = "bearer",
        access_key: str | None = None,
        secret_key: str | None = None,
        profile: str = "openai-hk",
        tls: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.state = FakeKlingState(
            api_key=api_key,
            processing_after=processing_after,
            done_after=done_after,
            drift=drift,
            auth=auth,
            access_key=access_key,
            secret_key=secret_key,
            profile=profile,
        )
        self.host, self.port, self.tls = host, port, tls
        self.base_url = ""
        self.certificate: Certificate | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def cert(self) -> Path | None:
        """The certificate (PEM) a client must trust to reach it over https; None without TLS."""
        return self.certificate.cert if self.certificate else None

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the fake server is already running")
        if self.tls:
            directory = Path(tempfile.mkdtemp(prefix="klingcost-fake-tls-"))
            self.certificate = self_signed(directory, certificate_hosts(self.host))
        self._socket = listening_socket(self.host, self.port)
        self.base_url = _url(self.host, self._socket, self.tls)
        app = create_app(self.state)
        self._server = uvicorn.Server(_config(app, self.host, self.port, self.certificate))
        try:
            self._thread = serve_in_thread(self._server, self._socket, "the fake Kling server")
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
        if self.certificate is not None:
            shutil.rmtree(self.certificate.directory, ignore_errors=True)
            self.certificate = None
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
        return f"FakeKling(base_url={self.base_url!r})"

    # --- what a test needs ------------------------------------------------------------

    def set_faults(self, *faults: Mapping[str, Any]) -> None:
        """Queue faults (see :mod:`klingcost.testing.faults`) for the next matching requests."""
        self.state.add_faults(faults)

    def clear_faults(self) -> None:
        self.state.clear_faults()

    def configure(self, **settings: Any) -> None:
        """Change settings while running (see :meth:`FakeKlingState.configure`)."""
        self.state.configure(**settings)

    def reset(self) -> None:
        self.state.reset()

    def charged(self) -> Fraction:
        """The units charged so far: the sum over succeeded tasks."""
        return self.state.charged()

    def ledger(self) -> dict[str, Any]:
        return self.state.ledger()

    def requests(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """The requests received (control requests excluded), optionally filtered."""
        return [
            r
            for r in list(self.state.requests)
            if (method is None or r["method"] == method) and (path is None or path in r["path"])
        ]

    def bodies(self, path: str | None = None) -> list[tuple[str, Any]]:
        """(endpoint path, body) of each POST received, in order: what clients sent."""
        return [(r["path"], r["body"]) for r in self.requests("POST", path)]

    def hooks(self) -> list[dict[str, Any]]:
        """The callbacks delivered (``status``) or attempted (``error``)."""
        return list(self.state.hooks)
