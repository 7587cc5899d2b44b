"""The fake's callback sender: small JSON POSTs over kept-alive HTTP/1.1 connections.

Why not httpx, which the fake used before: under load its client spent about 2.7 ms of CPU per
callback (the request layers, and the pool checking every connection each time a request
starts or ends), on the cores the benchmarks share with what they measure. A real upstream
spends its own machine on callbacks; the fake should cost as little as it can. A callback
needs little: one POST, and the answer's status.

What this sends, for an ``http://`` URL: ``POST`` with ``Host``, ``Content-Type`` and
``Content-Length``, over a connection kept from an earlier POST to the same host and port if
one is idle (at most :data:`IDLE_PER_HOST` kept). The answer is read by its ``Content-Length``,
by chunks, or to the end of the stream; a connection is kept only if the answer says nothing
against it. A kept connection the server has closed meanwhile fails at once, before an answer:
the POST is then sent once more on a new connection, as httpx's pool does. Anything else
(``https://``, a URL with credentials or with characters to percent-encode) goes through the
httpx client given as ``fallback``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

__all__ = ["IDLE_PER_HOST", "Postman"]

#: Idle connections kept per (host, port); more are closed after their answer.
IDLE_PER_HOST: Final = 32
#: The longest answer head read (status line and headers).
MAX_HEAD: Final = 64 * 1024

_Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Postman:
    """POSTs JSON to callback URLs; ``post`` returns the answer's status code.

    Errors are raised as they come (``OSError`` for a refused connection, ``TimeoutError``
    past ``timeout`` seconds for the whole POST, ``ValueError`` for an answer that is not
    HTTP/1.1, ``httpx.HTTPError`` from the fallback): the fake records them by name."""

    def __init__(self, fallback: httpx.AsyncClient, *, timeout: float) -> None:
        self._fallback = fallback
        self._timeout = timeout
        self._idle: dict[tuple[str, int], list[_Stream]] = {}

    async def post(self, url: str, payload: Any) -> int:
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or "@" in parts.netloc or not url.isascii():
            answer = await self._fallback.post(
                url, content=body, headers={"Content-Type": "application/json"}
            )
            return answer.status_code
        address = (parts.hostname, parts.port or 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = (
            f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        async with asyncio.timeout(self._timeout):
            return await self._send(address, head + body)

    async def _send(self, address: tuple[str, int], request: bytes) -> int:
        idle = self._idle.setdefault(address, [])
        while True:
            kept = bool(idle)
            reader, writer = idle.pop() if kept else await asyncio.open_connection(*address)
            try:
                writer.write(request)
                status, keep = await _answer(reader)
            except (OSError, asyncio.IncompleteReadError) as exc:
                writer.close()
                if kept and _before_answer(exc):
                    continue  # the server closed the kept connection: a new one
                raise
            except BaseException:
                writer.close()
                raise
            if keep and len(idle) < IDLE_PER_HOST:
                idle.append((reader, writer))
            else:
                writer.close()
            return status

    async def aclose(self) -> None:
        for streams in self._idle.values():
            for _, writer in streams:
                writer.close()
        self._idle.clear()


def _before_answer(exc: BaseException) -> bool:
    """Whether the connection failed before any byte of an answer came."""
    if isinstance(exc, asyncio.IncompleteReadError):
        return not exc.partial
    return isinstance(exc, ConnectionError)


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one answer: (its status, whether the connection may carry another request)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise ValueError("the answer's head is too long") from None
    if len(head) > MAX_HEAD:
        raise ValueError("the answer's head is too long")
    status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ValueError(f"not an HTTP/1.1 answer: {status_line[:80]!r}")
    status = int(code)
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "")
    if 100 <= status < 200 and status != 101:
        return await _answer(reader)  # an interim answer: the final one follows
    if status in (101, 204, 304):
        return status, keep and status != 101  # no body
    if "chunked" in headers.get("transfer-encoding", ""):
        await _chunks(reader)
    elif (length := headers.get("content-length", "")).isdigit():
        await reader.readexactly(int(length))
    else:  # the body runs to the end of the stream
        await reader.read()
        keep = False
    return status, keep


async def _chunks(reader: asyncio.StreamReader) -> None:
    """Read a chunked body and its trailers."""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            break
        await reader.readexactly(size + 2)
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass  # trailers
