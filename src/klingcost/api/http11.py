"""The proxy's way to the upstream: HTTP/1.1 on kept-alive asyncio connections, as an httpx
transport.

Why not httpcore, which httpx uses by default: under the proxy's load its layers cost more than
the proxy's own work on a request. A profile of the proxy's workers (py-spy, 16 clients) put
about a fifth of their CPU in httpx's transport and httpcore: h11's event machinery, anyio's
cancel scopes around every socket call, and a pool that checks every connection against every
waiting request whenever one starts or ends. The proxy needs little of that: each request is a
small JSON body it already holds, and each answer is read whole before anything else is done
with it.

What :class:`HTTP11Transport` does, for ``http://`` and ``https://`` URLs:

* **Connections** are opened with :meth:`asyncio.loop.create_connection` (TLS with the context
  given: httpx's default one, certificates from the environment or certifi) under the request's
  ``connect`` timeout, the TLS handshake included. A failure there is ``httpx.ConnectError`` or
  ``httpx.ConnectTimeout``: nothing was sent.
* **Kept alive** after an answer that says nothing against it, at most
  ``max_keepalive_connections`` idle in all, each for ``keepalive_expiry`` seconds; the one used
  last is used first. An idle connection the server has closed, or on which it sent anything,
  is never reused. A request is never resent: a kept connection the server closes as the
  request goes out fails with ``httpx.RemoteProtocolError``, as httpcore's does, because the
  request may have been read (a create resent could run twice).
* **At most** ``max_connections`` requests in flight at once; the next waits up to the ``pool``
  timeout (``httpx.PoolTimeout``).
* **The request** is written as httpx built it (its headers, ``Host`` and ``Content-Length``
  included) under the ``write`` timeout. A header that cannot be sent (a CR, LF or NUL in a
  value, a name that is no token) is ``httpx.LocalProtocolError`` before any byte is written.
* **A request cut short** (a timeout, a cancellation) drops its connection at once, with what
  was not yet sent: closing it would go on sending the rest, a create included.
* **The answer** is read whole, under the ``read`` timeout for each wait for more bytes: its
  body by ``Content-Length``, by chunks (trailers skipped) or to the end of the stream; none
  for ``HEAD``, 204 and 304; interim ``1xx`` answers are skipped. The answer is handed to httpx
  undecoded, so ``Content-Encoding`` (gzip) is undone by ``httpx.Response`` as before. An
  answer that is not HTTP/1.x is ``httpx.RemoteProtocolError``; a connection that fails while
  reading, ``httpx.ReadError``.

A request whose body is a stream (not bytes already in memory) goes to httpx's own transport.
It speaks to the origin only: an ``httpx.AsyncClient`` given a transport no longer reads
``HTTPS_PROXY``, so the proxy chooses (:func:`klingcost.proxy.upstream.upstream_transport`):
this transport, or httpx's own through the forward proxy the environment names.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Final

import httpx

from klingcost.api.wire import tls_context

__all__ = ["DEFAULT_LIMITS", "MAX_HEAD", "HTTP11Transport"]

#: The longest answer head read (status line and headers), as h11's default.
MAX_HEAD: Final = 64 * 1024
#: The longest chunk-size line of a chunked body.
_MAX_CHUNK_LINE: Final = 1024
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSENDABLE: Final = re.compile(rb"[\r\n\x00]")
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
#: httpx's own defaults (``httpx.Limits()`` alone leaves every limit off).
DEFAULT_LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=20)

_Origin = tuple[str, str, int]


class HTTP11Transport(httpx.AsyncBaseTransport):
    """An httpx transport for HTTP/1.1 on kept-alive connections (see the module docstring).

    ``ssl_context``: for ``https://`` URLs (httpx's default context when not given).
    ``limits``: httpx's, read as the module docstring says.

    Like ``httpx.AsyncClient``, it belongs to one event loop at a time: close it with
    ``aclose()`` on the loop that used it. Used from a new loop, it starts a new pool and ends
    the old loop's connections on the wire (see :meth:`_Connection.end_on_the_wire`).
    """

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, limits: httpx.Limits | None = None
    ) -> None:
        limits = limits or DEFAULT_LIMITS
        # httpx's default context is built once per process (reading the system's certificates
        # costs ~57 ms), not once per connection.
        self._ssl = ssl_context if ssl_context is not None else tls_context()
        self._limits = limits
        self._most_idle = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry
        self._idle: dict[_Origin, deque[_Connection]] = {}
        self._idle_count = 0
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._streaming: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.ByteStream):
            return await self._for_streams().handle_async_request(request)
        url = request.url
        default_port = _DEFAULT_PORTS.get(url.scheme)
        if default_port is None:
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{url.scheme}://'.", request=request
            )
        if not url.raw_host:
            raise httpx.UnsupportedProtocol("Request URL is missing a host.", request=request)
        origin = (url.scheme, url.raw_host.decode("ascii"), url.port or default_port)
        message = _request_bytes(request)
        timeouts = request.extensions.get("timeout", {})
        slots = self._pool_slots()
        if slots.locked():
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    await slots.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout(
                    "no connection came free in time", request=request
                ) from None
        else:
            await slots.acquire()
        try:
            connection = self._kept(origin) or await self._connect(origin, timeouts, request)
            try:
                await connection.send(message, timeouts.get("write"), request)
                answer = await _read_answer(connection, request, timeouts.get("read"))
            except BaseException:
                # Cut short, the connection is in no known state: dropped at once, with what
                # is still unsent (close() would go on sending it, a create included).
                connection.abort()
                raise
            if answer.keep_alive and "close" not in request.headers.get("connection", "").lower():
                self._keep(origin, connection)
            else:
                connection.close()
        finally:
            slots.release()
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=httpx.ByteStream(answer.body),
            extensions={"http_version": answer.version, "reason_phrase": answer.reason},
        )

    async def aclose(self) -> None:
        self._drop_idle(same_loop=self._loop is asyncio.get_running_loop())
        if self._streaming is not None:
            await self._streaming.aclose()

    # --- the pool -------------------------------------------------------------------------

    def _pool_slots(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or loop is not self._loop:
            # A new event loop (a test's second anyio.run): connections of the old one are
            # unusable here, and so is its semaphore.
            self._drop_idle(same_loop=False)
            self._loop = loop
            most = self._limits.max_connections
            self._slots = asyncio.Semaphore(most if most is not None else 1 << 30)
        return self._slots

    def _drop_idle(self, *, same_loop: bool) -> None:
        for connections in self._idle.values():
            for connection in connections:
                if same_loop:
                    connection.close()
                else:
                    connection.end_on_the_wire()
        self._idle.clear()
        self._idle_count = 0

    def _kept(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if connection.reusable(now, self._expiry):
                return connection
            connection.close()
        return None

    def _keep(self, origin: _Origin, connection: _Connection) -> None:
        idle = self._idle.setdefault(origin, deque())
        now = time.monotonic()
        # The last kept is used first, so the oldest wait at the other end: past their expiry
        # (or closed by the server) they are closed here, not left to hold places.
        while idle and not idle[0].reusable(now, self._expiry):
            idle.popleft().close()
            self._idle_count -= 1
        most = self._most_idle
        if most is not None and self._idle_count >= most:
            connection.close()
            return
        connection.idle_since = now
        idle.append(connection)
        self._idle_count += 1

    async def _connect(
        self, origin: _Origin, timeouts: dict[str, float | None], request: httpx.Request
    ) -> _Connection:
        scheme, host, port = origin
        context = self._ssl if scheme == "https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeouts.get("connect")):
                _, connection = await loop.create_connection(
                    _Connection,
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"connecting to {host}:{port} timed out", request=request
            ) from None
        except OSError as exc:  # refused, unreachable, a name not found, a TLS failure
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from None
        return connection

    def _for_streams(self) -> httpx.AsyncHTTPTransport:
        if self._streaming is None:
            self._streaming = httpx.AsyncHTTPTransport(verify=self._ssl, limits=self._limits)
        return self._streaming


def _request_bytes(request: httpx.Request) -> bytes:
    """The request line, headers and body, checked as h11 checks them before writing."""
    method = request.method.encode("ascii")
    if not _TOKEN.fullmatch(method):
        raise httpx.LocalProtocolError(f"Illegal method {request.method!r}", request=request)
    lines = [method + b" " + request.url.raw_path + b" HTTP/1.1"]
    for name, value in request.headers.raw:
        if not _TOKEN.fullmatch(name):
            raise httpx.LocalProtocolError(f"Illegal header name {name!r}", request=request)
        if _UNSENDABLE.search(value):
            raise httpx.LocalProtocolError(
                f"Illegal header value for {name.decode('ascii')!r}", request=request
            )
        lines.append(name + b": " + value)
    lines.append(b"\r\n")
    return b"\r\n".join(lines) + request.content


@dataclass(slots=True)
class _Answer:
    status: int
    reason: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool


async def _read_answer(
    connection: _Connection, request: httpx.Request, timeout: float | None
) -> _Answer:
    while True:
        head = await connection.read_head(timeout, request)
        status, reason, version, headers = _parse_head(head, request)
        if not (100 <= status < 200 and status != 101):
            break  # an interim answer (100 Continue, 103 Early Hints): the final one follows
    keep_alive = version == b"HTTP/1.1"
    length: int | None = None
    chunked = coded = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"connection" and b"close" in value.lower():
            keep_alive = False
        elif lowered == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                raise httpx.RemoteProtocolError(
                    f"the answer's Content-Length {value!r} cannot be read", request=request
                )
            length = int(value)
        elif lowered == b"transfer-encoding":
            coded = True
            chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
    if status == 101:
        raise httpx.RemoteProtocolError("the upstream switched protocols", request=request)
    if request.method == "HEAD" or status in (204, 304):
        body = b""
    elif chunked:
        body = await _chunks(connection, request, timeout)
    elif coded or length is None:  # the body runs to the end of the stream
        body = await connection.read_to_end(timeout, request)
        keep_alive = False
    else:
        body = await connection.read_exactly(length, timeout, request)
    return _Answer(status, reason, version, headers, body, keep_alive)


def _parse_head(
    head: bytes, request: httpx.Request
) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    status_line, *lines = head.split(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError(
            f"not an HTTP/1.1 answer: {status_line[:80]!r}", request=request
        )
    headers: list[tuple[bytes, bytes]] = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise httpx.RemoteProtocolError(
                f"an answer header cannot be read: {line[:80]!r}", request=request
            )
        headers.append((name, value.strip(b" \t")))
    return int(code), reason, version, headers


async def _chunks(connection: _Connection, request: httpx.Request, timeout: float | None) -> bytes:
    body = bytearray()
    while True:
        line = await connection.read_line(timeout, request)
        size_text = line.split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size_text):
            raise httpx.RemoteProtocolError(
                f"a chunk size cannot be read: {line[:40]!r}", request=request
            )
        size = int(size_text, 16)
        if size == 0:
            break
        chunk = await connection.read_exactly(size + 2, timeout, request)
        if chunk[-2:] != b"\r\n":
            raise httpx.RemoteProtocolError("a chunk does not end in CRLF", request=request)
        body += chunk[:-2]
    while await connection.read_line(timeout, request):
        pass  # trailers, up to the empty line
    return bytes(body)


class _Connection(asyncio.Protocol):
    """One connection: bytes received wait in a buffer until a read takes them."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self._buffer = bytearray()
        self._ended = False
        self._failure: Exception | None = None
        self._arrival: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False

    # -- asyncio's side --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self._ended = True
        self._wake()
        return False  # close the transport: HTTP/1.1 has no use for a half-closed connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._failure = exc
        self._wake()
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _wake(self) -> None:
        if self._arrival is not None and not self._arrival.done():
            self._arrival.set_result(None)

    # -- the transport's side --

    def reusable(self, now: float, expiry: float | None) -> bool:
        """Idle and fit for another request: open, nothing unasked for received, not expired."""
        transport = self.transport
        if self._ended or self._buffer or transport is None or transport.is_closing():
            return False
        return expiry is None or now - self.idle_since < expiry

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def end_on_the_wire(self) -> None:
        """For a connection of another event loop (closed, or not running here): asyncio can
        close it only on its own loop, so the socket is shut down for the server to see, and
        its file is closed when the connection is collected (with asyncio's ResourceWarning:
        close a transport with ``aclose()`` on the loop that used it)."""
        if self.transport is not None:
            with contextlib.suppress(OSError):
                self.transport.get_extra_info("socket").shutdown(socket.SHUT_RDWR)

    async def send(self, message: bytes, timeout: float | None, request: httpx.Request) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self._ended:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        transport.write(message)
        if not self._paused:
            return
        self._drained = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._drained
        except TimeoutError:
            raise httpx.WriteTimeout("writing the request timed out", request=request) from None
        finally:
            self._drained = None
        if self._ended and self._failure is not None:
            raise httpx.WriteError(str(self._failure), request=request)

    async def read_head(self, timeout: float | None, request: httpx.Request) -> bytes:
        start = 0
        while True:
            end = self._buffer.find(b"\r\n\r\n", start)
            if end >= 0:
                head = bytes(self._buffer[:end])
                del self._buffer[: end + 4]
                return head
            if len(self._buffer) > MAX_HEAD:
                raise httpx.RemoteProtocolError("the answer's head is too long", request=request)
            start = max(0, len(self._buffer) - 3)
            await self._more(timeout, request, "Server disconnected without sending a response.")

    async def read_line(self, timeout: float | None, request: httpx.Request) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 2]
                return line
            if len(self._buffer) > _MAX_CHUNK_LINE:
                raise httpx.RemoteProtocolError("a chunk line is too long", request=request)
            await self._more(timeout, request, _CUT_SHORT)

    async def read_exactly(self, size: int, timeout: float | None, request: httpx.Request) -> bytes:
        while len(self._buffer) < size:
            await self._more(timeout, request, _CUT_SHORT)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def read_to_end(self, timeout: float | None, request: httpx.Request) -> bytes:
        while not self._ended:
            await self._more(timeout, request, None)
        if self._failure is not None:
            raise httpx.ReadError(str(self._failure), request=request)
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    async def _more(self, timeout: float | None, request: httpx.Request, ended: str | None) -> None:
        """Wait for more bytes (or the end). Called at the end of the stream, ``ended`` is the
        error to raise (None: none): bytes that came with the end were read before the call."""
        if self._ended:
            if ended is None:
                return
            if self._failure is not None:
                raise httpx.ReadError(str(self._failure), request=request)
            raise httpx.RemoteProtocolError(ended, request=request)
        self._arrival = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._arrival
        except TimeoutError:
            raise httpx.ReadTimeout("the upstream's answer timed out", request=request) from None
        finally:
            self._arrival = None


_CUT_SHORT: Final = "peer closed connection without sending complete message body"
