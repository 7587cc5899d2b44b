"""Limits that keep a klingcost HTTP server up under abuse: ``hooks serve`` (and the proxy).

A server reachable by outsiders must not be taken down by people who do not even know its
secret. What the review did to ``hooks serve``: ~20,000 connections that each sent a request
line and one header, then nothing (slowloris). Idle connections never timed out, the process
ran out of file descriptors, real callbacks failed, and each refused connection logged a
traceback. A 100 MB body, read whole, grew the process by 200 MB.

:class:`ServerLimits` says what a server allows; :func:`uvicorn_config` builds a uvicorn
configuration that enforces it:

* **header timeout**: a connection whose request headers are not complete within
  ``header_timeout`` seconds (from connecting, or from the end of its previous answer) is
  answered 408 and closed;
* **idle timeout**: a kept-alive connection with no new request for ``idle_timeout`` seconds
  is closed (uvicorn's keep-alive timeout), and so is a request whose body stops coming for
  that long (408);
* **connection limit**: at most ``max_connections`` open at once. At the limit a new connection
  first takes the place of the one that has waited longest for its headers (a slow client is
  the likeliest attacker, and a real callback sends its headers at once); if none is waiting,
  the new one is answered 503 and closed. The limit stays below the process's file-descriptor
  limit, which is raised to its hard limit first;
* **body limit**: a body over ``max_body`` bytes is refused with 413 (by its Content-Length,
  before a byte of it is read; a chunked one as soon as it passes the limit).

Refusals are logged on the ``klingcost.limits`` logger as one line per burst (the first
refusal, then a count when the next burst starts), never a line or a traceback each.
"""

from __future__ import annotations

# asyncio, not anyio, here only: uvicorn's h11 protocol is an asyncio.Protocol on asyncio's
# transports and timers, and this module subclasses it (and BodyLimit's asyncio.timeout costs
# a third of anyio.fail_after's cancel scope, on every request). klingcost's own async code
# uses anyio.
import asyncio
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("klingcost.limits")

#: File descriptors kept for the ledger, logs, outgoing queries and the listening socket.
FD_RESERVE: Final = 64
_HEADER_LIMIT: Final = 16 * 1024  # the largest request line and headers h11 buffers


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one server allows; the defaults suit a callback receiver."""

    header_timeout: float = 10.0
    idle_timeout: float = 5.0
    max_connections: int = 256
    max_body: int = 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("header_timeout", "idle_timeout"):
            value = getattr(self, name)
            if not 0 < value <= 3600:
                raise ValueError(f"{name} must be over 0 and at most 3600 s (given {value})")
        if not 1 <= self.max_connections <= 1_000_000:
            raise ValueError(f"max_connections must be 1..1000000 (given {self.max_connections})")
        if not 1 <= self.max_body <= 1 << 30:
            raise ValueError(f"max_body must be 1 byte to 1 GiB (given {self.max_body})")


class BurstLog:
    """One log line per burst of refusals: the first one, then how many followed."""

    def __init__(
        self, *, window: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self._clock = clock
        self._started: float | None = None
        self._more: dict[str, int] = {}
        self.total = 0

    def refused(self, reason: str) -> None:
        self.total += 1
        now = self._clock()
        if self._started is not None and now - self._started < self.window:
            self._more[reason] = self._more.get(reason, 0) + 1
            return
        self.flush()
        self._started = now
        logger.warning(
            "refusing: %s (more refusals in the next %g s are counted, not logged)",
            reason,
            self.window,
        )

    def flush(self) -> None:
        """Log what the last burst refused after its first line (if anything)."""
        if self._more:
            counts = ", ".join(f"{n} x {reason}" for reason, n in sorted(self._more.items()))
            logger.warning("the last burst also refused: %s", counts)
        self._more = {}


def fd_limit() -> int:
    """The process's file-descriptor limit, raised to the hard limit where it was lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def _plain(status: int, reason: str, text: str) -> bytes:
    body = text.encode("ascii")
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode("ascii") + body


class _Gate:
    """The connections of one server: all open ones, and those still waiting for headers."""

    def __init__(self, limits: ServerLimits, log: BurstLog, max_connections: int) -> None:
        self.limits = limits
        self.log = log
        self.max_connections = max_connections
        self.open: set[Any] = set()
        self.waiting: dict[Any, None] = {}  # insertion order: the longest waiting first

    def room(self) -> bool:
        """Whether a new connection may be admitted, evicting the slowest one if needed."""
        if len(self.open) < self.max_connections:
            return True
        if not self.waiting:
            return False
        oldest = next(iter(self.waiting))
        oldest.drop(408, "Request Timeout", "request headers too slow; evicted at the limit")
        self.log.refused(f"evicted a connection without headers at {self.max_connections}")
        return True


def limited_protocol(limits: ServerLimits, log: BurstLog) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, with the header timeout and the connection limit of ``limits``."""
    gate = _Gate(limits, log, min(limits.max_connections, max(1, fd_limit() - FD_RESERVE)))

    class LimitedH11Protocol(H11Protocol):
        _refused = False
        _timer: asyncio.TimerHandle | None = None
        _seen: object = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if not gate.room():
                self._refused = True
                log.refused(f"{gate.max_connections} connections open")
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(_plain(503, "Service Unavailable", "too many connections\n"))
                transport.close()
                return
            gate.open.add(self)
            super().connection_made(transport)  # type: ignore[arg-type]
            self._await_headers()

        def _await_headers(self) -> None:
            gate.waiting[self] = None
            self._timer = self.loop.call_later(limits.header_timeout, self._headers_late)

        def _headers_done(self) -> None:
            gate.waiting.pop(self, None)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _headers_late(self) -> None:
            self._timer = None
            if self in gate.waiting:
                log.refused(f"headers not complete within {limits.header_timeout:g} s")
                self.drop(408, "Request Timeout", "request headers too slow\n")

        def drop(self, status: int, reason: str, text: str) -> None:
            """Answer ``status`` and close (a connection that never sent its headers)."""
            self._headers_done()
            gate.open.discard(self)
            if not self.transport.is_closing():
                self.transport.write(_plain(status, reason, text))
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._refused or self.transport.is_closing():
                return
            super().data_received(data)
            self._note_cycle()

        def _note_cycle(self) -> None:
            if self.cycle is not None and self.cycle is not self._seen:
                self._seen = self.cycle  # a new request's headers are complete
                self._headers_done()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._note_cycle()  # a pipelined request may have started already
            if not self.transport.is_closing() and self.cycle is self._seen:
                self._await_headers()  # the next request's headers, if any, are timed too

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                return
            self._headers_done()
            gate.open.discard(self)
            super().connection_lost(exc)

    return LimitedH11Protocol


class BodyLimit:
    """ASGI middleware: refuse a body over ``max_body`` (413) and one that stalls (408).

    The body is read here, within the limits, and handed to the app in one message; requests
    to a callback server (or the proxy) are small JSON, so nothing is lost by buffering.
    """

    def __init__(self, app: ASGIApp, limits: ServerLimits, log: BurstLog) -> None:
        self.app = app
        self.limits = limits
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.max_body
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            text = declared.decode("latin-1").strip()
            if not text.isdigit() or len(text) > 19:
                await self.answer(scope, send, 400, "the Content-Length is not a number\n")
                return
            if int(text) > limit:
                self.log.refused(f"a body over {limit} bytes")
                await self.answer(scope, send, 413, f"the body is over {limit} bytes\n")
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                async with asyncio.timeout(self.limits.idle_timeout):
                    message = await receive()
            except TimeoutError:
                self.log.refused(f"a body stalled for {self.limits.idle_timeout:g} s")
                await self.answer(scope, send, 408, "the body stopped coming\n")
                return
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                self.log.refused(f"a body over {limit} bytes")
                await self.answer(scope, send, 413, f"the body is over {limit} bytes\n")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole: Message | None = {"type": "http.request", "body": b"".join(chunks)}

        async def replay() -> Message:
            nonlocal whole
            if whole is not None:
                message, whole = whole, None
                return message
            return await receive()

        await self.app(scope, replay, send)

    async def answer(self, scope: Scope, send: Send, status: int, text: str) -> None:
        """Send a refusal: plain text here; the proxy answers in Kling's envelope instead."""
        await _answer(send, status, text)


async def _answer(send: Send, status: int, text: str) -> None:
    body = text.encode("ascii")
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _InvalidRequests(logging.Filter):
    """uvicorn logs a line per malformed request: count them in the burst log instead."""

    def __init__(self, log: BurstLog) -> None:
        super().__init__()
        self.log = log

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Invalid HTTP request received"):
            self.log.refused("a malformed request")
            return False
        return True


def uvicorn_config(
    app: ASGIApp, limits: ServerLimits, *, host: str, port: int, log_level: str = "warning"
) -> uvicorn.Config:
    """A uvicorn configuration serving ``app`` within ``limits`` (see the module docstring)."""
    log = BurstLog()
    logging.getLogger("uvicorn.error").addFilter(_InvalidRequests(log))
    return uvicorn.Config(
        BodyLimit(app, limits, log),
        host=host,
        port=port,
        log_level=log_level,
        http=limited_protocol(limits, log),
        timeout_keep_alive=max(1, round(limits.idle_timeout)),
        h11_max_incomplete_event_size=_HEADER_LIMIT,
    )


__all__ = [
    "BodyLimit",
    "BurstLog",
    "ServerLimits",
    "fd_limit",
    "limited_protocol",
    "uvicorn_config",
]
