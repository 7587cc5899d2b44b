"""The proxy's limits, and its own failures, answered in Kling's envelope.

A client of the proxy is a Kling client: whatever goes wrong, it must get what Kling would send,
``{"code", "message", "request_id", "data": null}`` with Kling's HTTP status and code, which it
knows how to show and when to retry, never an HTML page or a traceback.

**Body size.** Kling takes an input image of at most 10 MB, as a URL or inline in base64, which
is 4/3 as long: 13,981,016 bytes for a 10 MiB image. The largest body a valid request can carry
inline is a ``multi-image2video`` with its four images (or an ``image2video`` with ``image``,
``image_tail`` and a few motion-brush masks): 4 x 13,981,016 = 55.9 MB. :data:`MAX_BODY` is
64 MiB: that, plus room for the rest of the JSON. Anything larger cannot be a request Kling would
accept, and the proxy holds each body in memory while it validates and prices it, so a larger
limit only lets a client spend the server's memory. ``--max-body`` lowers it for a team that
sends URLs only. Over it: 413 with code 1201, before the body is read (by its Content-Length),
or as soon as a chunked body passes it.

**Timeouts.** The header, idle and body-stall timeouts and the connection limit are those of
:mod:`klingcost._limits` (hooks serve's, proven there against slowloris). Upstream:
:data:`UPSTREAM_TIMEOUT` (connect 10 s, answer 60 s); a timeout is 504 with code 5002, an
upstream that cannot be reached 503 with 5001, as Kling answers its own.

**Everything else.** :class:`KlingErrors` answers an exception nobody caught with 500, code
5000 and a request id, and logs the traceback (redacted by klingcost's errors) on the server's
log only. :func:`exception_handlers` makes Starlette's own 404/405 and 500 answers the same
envelope.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Final

import httpx
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from klingcost._limits import BodyLimit, BurstLog, ServerLimits
from klingcost.proxy.accesslog import note
from klingcost.proxy.labels import route_of

logger = logging.getLogger("klingcost.proxy")

#: A 10 MiB image in base64 (Kling's limit for one image), four of them, and room for the JSON.
IMAGE_BASE64: Final = -(-10 * 1024 * 1024 // 3) * 4
MAX_BODY: Final = 64 * 1024 * 1024
UPSTREAM_TIMEOUT: Final = httpx.Timeout(60.0, connect=10.0)


def proxy_limits(*, max_body: int = MAX_BODY, max_connections: int = 1024) -> ServerLimits:
    """The proxy's :class:`~klingcost._limits.ServerLimits`: hooks serve's timeouts, with a
    body limit that fits Kling's largest inline request and more connections (clients poll).

    The idle timeout stays below the header timeout: a kept-alive connection with nothing to
    ask (a client between polls) is closed quietly at 5 s, as uvicorn does by default, before
    the header timer would count it as a slow client and log it.
    """
    return ServerLimits(
        header_timeout=10.0, idle_timeout=5.0, max_connections=max_connections, max_body=max_body
    )


# --- the envelope ------------------------------------------------------------------------


def envelope_bytes(code: int, message: str, request_id: str | None = None) -> bytes:
    body = {
        "code": code,
        "message": message,
        "request_id": request_id or str(uuid.uuid4()),
        "data": None,
    }
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def kling_error(status: int, code: int, message: str) -> Response:
    """A Kling-shaped error answer."""
    return Response(
        envelope_bytes(code, message), status_code=status, media_type="application/json"
    )


async def send_kling_error(send: Send, status: int, code: int, message: str) -> None:
    """Send a Kling-shaped error from ASGI middleware (the connection is closed after it: the
    rest of a refused body is not read)."""
    body = envelope_bytes(code, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- the body limit ---------------------------------------------------------------------

#: BodyLimit's refusals (by HTTP status), as Kling's codes and the access log's reasons.
_BODY_REFUSALS: Final = {
    400: (1200, "invalid"),
    408: (1200, "body_timeout"),
    413: (1201, "body_too_large"),
}


class KlingBodyLimit(BodyLimit):
    """:class:`klingcost._limits.BodyLimit`, refusing in Kling's envelope.

    A body over the limit: 413, code 1201; a Content-Length that is not a number: 400, 1200;
    a body that stops coming for the idle timeout: 408, 1200.
    """

    def __init__(self, app: ASGIApp, limits: ServerLimits, log: BurstLog | None = None) -> None:
        super().__init__(app, limits, log or BurstLog())

    async def answer(self, scope: Scope, send: Send, status: int, text: str) -> None:
        code, reason = _BODY_REFUSALS.get(status, (1200, "invalid"))
        note(scope, refusal=reason)
        message = text.strip()
        if status == 413:
            message += (
                f" ({self.limits.max_body // (1024 * 1024)} MiB at most, the size of Kling's "
                "largest request with its images inline); send large images as URLs"
            )
        await send_kling_error(send, status, code, message)


# --- upstream failures --------------------------------------------------------------------


def upstream_error(exc: httpx.HTTPError, *, what: str = "the Kling API") -> Response:
    """The answer to a request whose upstream call failed with ``exc`` (no secret in it:
    neither the upstream's URL with its query nor any header is named)."""
    if isinstance(exc, httpx.TimeoutException):
        return kling_error(504, 5002, f"{what} did not answer in time ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        return kling_error(503, 5001, f"{what} cannot be reached now; try again later")
    return kling_error(502, 5000, f"{what} failed to answer ({type(exc).__name__})")


# --- anything else ------------------------------------------------------------------------


def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status in (404, 405):
        return kling_error(status, 1202, f"{request.method} {request.url.path}: no such route")
    if status >= 500:
        return kling_error(500, 5000, "the proxy failed on this request; see its log")
    return kling_error(status, 1200, f"{request.method} {request.url.path}: HTTP {status}")


def exception_handlers() -> dict[Any, Any]:
    """Starlette ``exception_handlers`` answering its own errors (no route, wrong method, an
    uncaught exception) in Kling's envelope."""
    return {HTTPException: _http_error, Exception: _http_error}


class KlingErrors:
    """Outermost ASGI middleware: an exception that escapes the app becomes a 500 in Kling's
    envelope (when no answer has started), logged once with its traceback on the server's log.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            # The route, not the path: a callback's path holds its secret.
            route = route_of(scope.get("path", ""))
            logger.exception("the proxy failed on %s %s", scope["method"], route)
            if not started:
                await send_kling_error(send, 500, 5000, "the proxy failed on this request")


__all__ = [
    "IMAGE_BASE64",
    "MAX_BODY",
    "UPSTREAM_TIMEOUT",
    "KlingBodyLimit",
    "KlingErrors",
    "exception_handlers",
    "kling_error",
    "proxy_limits",
    "send_kling_error",
    "upstream_error",
]
