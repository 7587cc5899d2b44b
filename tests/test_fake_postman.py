"""The fake's callback sender, against a real server on loopback that answers as scripted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
import pytest

from klingcost.testing.postman import Postman

T = TypeVar("T")

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@dataclass
class Server:
    """A loopback server: each connection reads requests and sends ``answers`` in turn
    (after each answer, ``close_after`` closes the connection)."""

    answers: list[bytes]
    close_after: bool = False
    connections: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)  # (head, body)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append((head, await reader.readexactly(length)))
                writer.write(self.answers[min(len(self.requests), len(self.answers)) - 1])
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[Server]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


def run(test: Callable[[Postman], Awaitable[T]], *, timeout: float = 2.0) -> T:
    async def main() -> T:
        async with httpx.AsyncClient() as fallback:
            postman = Postman(fallback, timeout=timeout)
            try:
                return await test(postman)
            finally:
                await postman.aclose()

    return asyncio.run(main())


def test_a_post_carries_the_json_and_posts_in_turn_share_one_connection() -> None:
    server = Server([OK])

    async def test(postman: Postman) -> list[int]:
        async with serving(server):
            url = f"http://127.0.0.1:{server.port}/hook/a?x=1"
            return [await postman.post(url, {"task_id": n, "名": "船"}) for n in range(3)]

    assert run(test) == [200, 200, 200]
    assert server.connections == 1
    head, body = server.requests[0]
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "POST /hook/a?x=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}" in lines
    assert "Content-Type: application/json" in lines
    assert json.loads(body) == {"task_id": 0, "名": "船"}


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (b"HTTP/1.1 204 No Content\r\n\r\n", 204),
        (
            b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\nbusy\r\n3;x=y\r\n!!!\r\n0\r\nTrailer: t\r\n\r\n",
            503,
        ),
        (b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\nnope!", 404),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, 200),
    ],
)
def test_each_kind_of_answer_is_read_whole_and_the_connection_kept(
    answer: bytes, status: int
) -> None:
    server = Server([answer, OK])

    async def test(postman: Postman) -> list[int]:
        async with serving(server):
            url = f"http://127.0.0.1:{server.port}/"
            return [await postman.post(url, {}) for _ in range(2)]

    assert run(test) == [status, 200]  # the second answer was read from where the first ended
    assert server.connections == 1


def test_an_answer_without_a_length_or_that_says_close_ends_its_connection() -> None:
    no_length = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthe rest of the stream"
    server = Server([no_length], close_after=True)

    async def test(postman: Postman) -> list[int]:
        async with serving(server):
            url = f"http://127.0.0.1:{server.port}/"
            return [await postman.post(url, {}) for _ in range(2)]

    assert run(test) == [200, 200]
    assert server.connections == 2


def test_a_kept_connection_the_server_closed_is_replaced_and_the_post_sent_once() -> None:
    # The server answers with a length (so the connection is kept), then closes it.
    server = Server([OK], close_after=True)

    async def test(postman: Postman) -> list[int]:
        async with serving(server):
            url = f"http://127.0.0.1:{server.port}/"
            first = await postman.post(url, {"n": 1})
            await asyncio.sleep(0.05)  # the close reaches the client
            return [first, await postman.post(url, {"n": 2})]

    assert run(test) == [200, 200]
    assert [json.loads(body)["n"] for _, body in server.requests] == [1, 2]
    assert server.connections == 2


def test_failures_are_raised_by_name() -> None:
    silent = Server([b""])  # reads the request, never answers
    garbled = Server([b"SMTP ready\r\n\r\n"])

    async def test(postman: Postman) -> list[str]:
        seen = []
        async with serving(silent), serving(garbled):
            for url in (
                f"http://127.0.0.1:{silent.port}/",
                f"http://127.0.0.1:{garbled.port}/",
                "http://127.0.0.1:9/",  # discard: nothing listens
            ):
                try:
                    await postman.post(url, {})
                except (OSError, ValueError) as exc:
                    seen.append(type(exc).__name__)
        return seen

    assert run(test, timeout=0.3) == ["TimeoutError", "ValueError", "ConnectionRefusedError"]


@pytest.mark.parametrize(
    "url", ["https://hooks.example/x", "http://user:pw@hooks.example/x", "http://hooks.example/船"]
)
def test_what_it_does_not_send_itself_goes_through_the_fallback(url: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    async def main() -> int:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as fallback:
            return await Postman(fallback, timeout=1.0).post(url, {"task_id": "t"})

    assert asyncio.run(main()) == 202
    assert json.loads(seen[0].content) == {"task_id": "t"}
    assert seen[0].headers["content-type"] == "application/json"
