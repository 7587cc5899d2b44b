"""HTTP11Transport, the proxy's way to the upstream, against servers on loopback: uvicorn serving
a small Starlette app, and scripted asyncio servers that answer byte for byte."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import hashlib
import json
import socket
import socketserver
import ssl
import struct
import threading
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from klingcost._listen import listening_socket, serve_in_thread
from klingcost.api.http11 import MAX_HEAD, HTTP11Transport
from klingcost.testing.tls import Certificate, self_signed

T = TypeVar("T")

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
H200 = b"HTTP/1.1 200 OK\r\n"
CHUNKED = H200 + b"Transfer-Encoding: chunked\r\n\r\n"
TEXT = "gzip über alles " * 200
BIG = 6 * 1024 * 1024  # past the socket buffers: writing pauses, reading takes many rounds


# --- a real server: uvicorn in a thread -------------------------------------------------------


async def echo(request: Request) -> Response:
    """What arrived (headers in order, the body's digest) and on which connection (its port)."""
    body = await request.body()
    assert request.client is not None
    headers = [[k.decode(), v.decode()] for k, v in request.scope["headers"]]
    return JSONResponse(
        {
            **{"method": request.method, "path": request.url.path, "query": request.url.query},
            **{"headers": headers, "length": len(body), "port": request.client.port},
            "sha256": hashlib.sha256(body).hexdigest(),
            "json": json.loads(body) if body.startswith(b"{") else None,
        }
    )


async def payload(request: Request) -> Response:
    return Response(bytes(range(256)) * (int(request.query_params["size"]) // 256))


async def zipped(request: Request) -> Response:
    return Response(gzip.compress(TEXT.encode()), headers={"Content-Encoding": "gzip"})


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    routes = [Route("/echo", echo, methods=["GET", "POST"]), Route("/bytes", payload)]
    app = Starlette(routes=[*routes, Route("/gzip", zipped)])
    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off"))
    thread = serve_in_thread(server, sock, "the echo server")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed(tmp_path_factory.mktemp("tls"), ["127.0.0.1", "localhost"])


# --- scripted servers -------------------------------------------------------------------------


@dataclass
class Server:
    """Reads requests (bodies by Content-Length) on each connection. The n-th request (counted
    over all connections) gets ``answers[n]``, the last one again after that: bytes as they are
    (b"": nothing), then the connection closed if ``close_after`` (reset if ``reset``); None
    closes it unanswered. ``gather``: answers wait until that many requests have arrived."""

    answers: list[bytes | None]
    close_after: bool = False
    reset: bool = False
    gather: int = 1
    tls: ssl.SSLContext | None = None
    connections: int = 0
    closed_by_client: int = 0
    requests: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # (conn, head, body)
    open: set[asyncio.StreamWriter] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number, self.connections = self.connections, self.connections + 1
        self.open.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as end:
                    self.closed_by_client += not end.partial
                    return
                self.requests.append((number, head, await reader.readexactly(length_of(head))))
                answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
                await until(lambda: len(self.requests) >= self.gather)
                if answer is None:
                    return
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if self.reset:  # SO_LINGER 0: closing sends a reset, not an orderly end
                linger = struct.pack("ii", 1, 0)
                writer.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, linger
                )
            writer.close()
            self.open.discard(writer)


def length_of(head: bytes) -> int:
    lines = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return int(lines[0].split(b":", 1)[1]) if lines else 0


async def until(condition: Callable[[], bool]) -> None:
    """Wait (5 s at most) for what the other side does in its own time."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("waited 5 s in vain")


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[str]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=server.tls)
    scheme = "https" if server.tls else "http"
    try:
        async with listener:
            yield f"{scheme}://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    finally:
        for writer in list(server.open):
            writer.close()  # its handler, reading, sees the end and returns
        await until(lambda: not server.open)


def run(
    main: Callable[[httpx.AsyncClient], Awaitable[T]], server: Server | str, **options: Any
) -> T:
    """``main`` with a client (``timeout``: 5 s unless given) on a new HTTP11Transport (its
    ``limits``, ``ssl_context``) whose base URL is ``server``'s."""
    timeout = options.pop("timeout", 5.0)

    async def go() -> T:
        async with AsyncExitStack() as stack:
            if isinstance(server, str):
                base = server
            else:
                base = await stack.enter_async_context(serving(server))
            transport = HTTP11Transport(**options)
            client = httpx.AsyncClient(transport=transport, base_url=base, timeout=timeout)
            await stack.enter_async_context(client)  # closing it closes the transport
            return await main(client)

    return asyncio.run(go())


Outcome = tuple[int, bytes] | type[Exception]
GET: dict[str, Any] = {}


def exchange(server: Server | str, *calls: dict[str, Any], **options: Any) -> list[Outcome]:
    """The calls in turn (``client.request``'s arguments, GET / unless given; ``{port}`` in a
    URL is the server's; ``pause``: seconds to wait first): each one's status and body, or its
    error's class."""

    async def main(client: httpx.AsyncClient) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for call in calls:
            call = {"method": "GET", "url": "/", **call}
            await asyncio.sleep(call.pop("pause", 0))
            call["url"] = call["url"].format(port=client.base_url.port)
            try:
                answer = await client.request(**call)
                outcomes.append((answer.status_code, answer.content))
            except httpx.HTTPError as error:
                outcomes.append(type(error))
        return outcomes

    return run(main, server, **options)


# --- round trips with a real server -----------------------------------------------------------


def test_get_post_and_head_arrive_as_built_and_share_one_connection(echo_url: str) -> None:
    async def main(client: httpx.AsyncClient) -> list[httpx.Response]:
        get = await client.get("/echo?a=1&b=%C3%A9", headers={"X-Custom-Thing": "Value"})
        post = await client.post("/echo", json={"prompt": "船の上で", "n": 1})
        head = await client.head("/echo")
        return [get, post, head, await client.get("/echo"), await client.get("/gzip")]

    get, post, head, after, unzipped = run(main, echo_url)
    seen, posted = get.json(), post.json()
    assert (seen["method"], seen["path"], seen["query"]) == ("GET", "/echo", "a=1&b=%C3%A9")
    sent = [[k.decode().lower(), v.decode()] for k, v in get.request.headers.raw]
    assert seen["headers"] == sent  # every header, in order, as httpx built it
    assert ["host", echo_url.removeprefix("http://")] in sent
    assert ["x-custom-thing", "Value"] in sent
    assert posted["json"] == {"prompt": "船の上で", "n": 1}
    assert ["content-length", str(posted["length"])] in posted["headers"]
    assert (head.status_code, head.content) == (200, b"")
    assert int(head.headers["content-length"]) > 0
    # HEAD's answer had a Content-Length but no body: the next answer was read where it began.
    assert {seen["port"], posted["port"], after.json()["port"]} == {seen["port"]}
    assert (unzipped.headers["content-encoding"], unzipped.text) == ("gzip", TEXT)


def test_large_bodies_go_both_ways(echo_url: str) -> None:
    upload = bytes(range(251)) * (BIG // 251)

    async def main(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        return await client.post("/echo", content=upload), await client.get(f"/bytes?size={BIG}")

    posted, fetched = run(main, echo_url)
    digest = hashlib.sha256(upload).hexdigest()
    assert (posted.json()["length"], posted.json()["sha256"]) == (len(upload), digest)
    assert fetched.content == bytes(range(256)) * (BIG // 256)


def test_a_streamed_request_body_goes_through_httpxs_own_transport(echo_url: str) -> None:
    async def body() -> AsyncIterator[bytes]:
        for part in (b"one ", b"two"):
            yield part

    async def main(client: httpx.AsyncClient) -> Any:
        return (await client.post("/echo", content=body())).json()

    seen = run(main, echo_url)
    assert (seen["length"], seen["sha256"]) == (7, hashlib.sha256(b"one two").hexdigest())
    assert ["transfer-encoding", "chunked"] in seen["headers"]


# --- answers, byte for byte -------------------------------------------------------------------


def test_status_reason_version_and_repeated_headers_come_through_httpx() -> None:
    answer = b"HTTP/1.1 201 Made Here\r\nX-A: 1\r\nX-B:  spaced \t\r\nX-A: 2\r\n"

    async def main(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get("/")

    made = run(main, Server([answer + b"Content-Length: 2\r\n\r\nok"]))
    assert (made.status_code, made.reason_phrase, made.content) == (201, "Made Here", b"ok")
    assert made.http_version == "HTTP/1.1"
    raw = [(b"X-A", b"1"), (b"X-B", b"spaced"), (b"X-A", b"2"), (b"Content-Length", b"2")]
    assert (made.headers.raw, made.headers.get_list("x-a")) == (raw, ["1", "2"])


@pytest.mark.parametrize(
    ("answer", "status", "body"),
    [
        (CHUNKED + b"4\r\nbusy\r\n3;x=y\r\n!!!\r\n0\r\nT: t\r\nU: u\r\n\r\n", 200, b"busy!!!"),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", 204, b""),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 304, b""),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: </a>\r\n\r\n" + OK, 200, b"ok"),
        (H200 + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 200, b"abc"),
    ],
)  # fmt: skip
def test_each_kind_of_answer_is_read_whole_and_the_connection_kept(
    answer: bytes, status: int, body: bytes
) -> None:
    server = Server([answer, OK])
    # The second answer is read from where the first ended, on the same connection.
    assert exchange(server, GET, GET) == [(status, body), (200, b"ok")]
    assert server.connections == 1


@pytest.mark.parametrize(
    ("answer", "close_after", "headers", "body"),
    [
        (H200 + b"\r\nthe rest", True, {}, b"the rest"),  # no length: the body runs to the end
        (H200 + b"Transfer-Encoding: identity\r\n\r\nrest", True, {}, b"rest"),
        (H200 + b"Connection: close\r\nContent-Length: 2\r\n\r\nok", False, {}, b"ok"),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False, {}, b"ok"),
        (OK, False, {"Connection": "close"}, b"ok"),  # the request says close
    ],
)
def test_an_answer_or_request_that_ends_the_connection_is_not_kept(
    answer: bytes, close_after: bool, headers: dict[str, str], body: bytes
) -> None:
    server = Server([answer], close_after=close_after)
    assert exchange(server, {"headers": headers}, {"headers": headers}) == [(200, body)] * 2
    assert server.connections == 2


# --- keep-alive -------------------------------------------------------------------------------


def test_concurrent_requests_open_several_connections_then_the_last_kept_serves_in_turn() -> None:
    server = Server([OK], gather=3)  # the first three are answered once all three have arrived

    async def main(client: httpx.AsyncClient) -> list[int]:
        together = await asyncio.gather(*(client.get("/") for _ in range(3)))
        in_turn = [await client.get("/") for _ in range(3)]
        return [a.status_code for a in [*together, *in_turn]]

    assert run(main, server) == [200] * 6
    assert server.connections == 3
    # The connection kept last, each time (not each kept connection in turn).
    assert len({connection for connection, _, _ in server.requests[3:]}) == 1


def test_at_most_max_keepalive_connections_are_kept_idle() -> None:
    server = Server([OK], gather=3)

    async def main(client: httpx.AsyncClient) -> int:
        await asyncio.gather(*(client.get("/") for _ in range(3)))
        await until(lambda: server.closed_by_client == 2)  # two of three closed, one kept
        return (await client.get("/")).status_code

    assert run(main, server, limits=httpx.Limits(max_keepalive_connections=1)) == 200
    assert server.connections == 3


def test_an_expired_connection_is_not_reused() -> None:
    server = Server([OK])
    limits = httpx.Limits(keepalive_expiry=0.05)
    assert exchange(server, GET, {"pause": 0.2}, limits=limits) == [(200, b"ok")] * 2
    assert server.connections == 2


def test_connections_left_idle_past_their_expiry_are_closed_while_another_is_in_use() -> None:
    """Three kept after a burst; then one at a time, the last kept serves and the other two
    pass their expiry: they are closed by the client, not left open for the server to end."""
    server = Server([OK], gather=3)

    async def main(client: httpx.AsyncClient) -> int:
        await asyncio.gather(*(client.get("/") for _ in range(3)))
        for _ in range(8):
            await asyncio.sleep(0.05)
            await client.get("/")
        return server.closed_by_client

    assert run(main, server, limits=httpx.Limits(keepalive_expiry=0.2)) == 2
    assert server.connections == 3


@pytest.mark.parametrize(
    ("answers", "close_after"),
    [
        ([OK], True),  # the server closes the idle connection
        ([OK + b"HTTP/1.1 418 Stale\r\nContent-Length: 0\r\n\r\n", OK], False),  # writes unasked
    ],
)
def test_an_idle_connection_the_server_closed_or_wrote_on_is_replaced(
    answers: list[bytes | None], close_after: bool
) -> None:
    server = Server(answers, close_after=close_after)
    # The pause: the close, or the bytes, reach the client.
    calls = {"method": "POST", "content": b"1"}, {"method": "POST", "content": b"2", "pause": 0.1}
    assert exchange(server, *calls) == [(200, b"ok")] * 2
    assert [body for _, _, body in server.requests] == [b"1", b"2"]
    assert server.connections == 2


def test_a_request_on_a_kept_connection_the_server_drops_fails_and_is_never_resent() -> None:
    server = Server([OK, None, OK])  # reads the second request, closes without an answer
    calls = [{"method": "POST", "content": body} for body in (b"first", b"create", b"after")]
    assert exchange(server, *calls) == [(200, b"ok"), httpx.RemoteProtocolError, (200, b"ok")]
    sent = [(0, b"first"), (0, b"create"), (1, b"after")]
    assert [(connection, body) for connection, _, body in server.requests] == sent


# --- errors, by class -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "ending"),
    [
        (b"SMTP ready\r\n\r\n", ""),
        (b"HTTP/2 200\r\n\r\n", ""),
        (b"HTTP/1.1 OK 200\r\n\r\n", ""),
        (H200 + b"No colon here\r\n\r\n", ""),
        (H200 + b"Content-Length: two\r\n\r\n", ""),
        (H200 + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nok", ""),
        (b"HTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\n", ""),
        (CHUNKED + b"zz\r\n", ""),
        (CHUNKED + b"2\r\nokXX", ""),  # a chunk not ended by CRLF
        (CHUNKED + b"1;" + b"x" * 2000, ""),  # a chunk line too long
        (H200 + b"X-Long: " + b"a" * (MAX_HEAD + 10), ""),  # a head too long
        (CHUNKED + b"5\r\nab", "close"),  # the end mid-chunk
        (H200 + b"Content-Length: 10\r\n\r\nshort", "close"),  # the end mid-body
        (H200 + b"Content-Length: 10\r\n\r\nshort", "reset"),  # a reset: ReadError
    ],
)
def test_a_bad_answer_is_its_error_class_and_the_transport_still_works(
    answer: bytes, ending: str
) -> None:
    server = Server([answer, OK], close_after=bool(ending), reset=ending == "reset")
    error = httpx.ReadError if ending == "reset" else httpx.RemoteProtocolError
    assert exchange(server, GET, GET) == [error, (200, b"ok")]
    assert server.connections == 2  # the failed connection was not reused


def test_connection_refused_is_a_connect_error() -> None:
    with socket.socket() as bound:  # bound, not listening: a connect is refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        assert exchange(url, GET) == [httpx.ConnectError]


def test_a_tls_handshake_never_answered_is_a_connect_timeout() -> None:
    call = {"url": "https://127.0.0.1:{port}/", "timeout": httpx.Timeout(5, connect=0.2)}
    assert exchange(Server([b""]), call) == [httpx.ConnectTimeout]


def test_an_answer_that_never_comes_is_a_read_timeout() -> None:
    server = Server([b""])
    assert exchange(server, GET, timeout=httpx.Timeout(5, read=0.2)) == [httpx.ReadTimeout]
    assert len(server.requests) == 1


async def stalled_upload(body: bytes) -> int:
    """POST ``body`` to a server that reads nothing until writing timed out (WriteTimeout),
    then reads all it gets: how many bytes arrived."""
    timed_out, done, received = asyncio.Event(), asyncio.Event(), [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await timed_out.wait()
        try:
            while chunk := await reader.read(1 << 20):
                received[0] += len(chunk)
        except ConnectionError:
            pass
        writer.close()
        done.set()

    async with await asyncio.start_server(handle, "127.0.0.1", 0) as listener:
        url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/"
        timeout = httpx.Timeout(5, write=0.2).as_dict()
        async with HTTP11Transport() as transport:
            request = httpx.Request("POST", url, content=body, extensions={"timeout": timeout})
            with pytest.raises(httpx.WriteTimeout):
                await transport.handle_async_request(request)
            timed_out.set()
            await asyncio.wait_for(done.wait(), 5)
    return received[0]


def test_a_request_the_server_does_not_read_is_a_write_timeout() -> None:
    assert asyncio.run(stalled_upload(b"x" * (8 * BIG))) > 0


def test_a_request_cut_short_by_a_write_timeout_is_not_sent_on() -> None:
    body = b"x" * (8 * BIG)
    assert asyncio.run(stalled_upload(body)) < len(body)


def test_no_free_connection_in_time_is_a_pool_timeout_and_sends_nothing() -> None:
    server = Server([b"", OK])  # the first request is never answered

    async def main(client: httpx.AsyncClient) -> int:
        stuck = asyncio.create_task(client.get("/stuck"))
        await until(lambda: len(server.requests) == 1)
        with pytest.raises(httpx.PoolTimeout):
            await client.get("/waits", timeout=httpx.Timeout(5, pool=0.2))
        assert len(server.requests) == 1
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        return (await client.get("/after")).status_code  # the cancelled request freed its slot

    assert run(main, server, limits=httpx.Limits(max_connections=1)) == 200


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET", {"X-Bad": "a\r\nInjected: 1"}),
        ("GET", {"X-Bad": "a\nb"}),
        ("GET", {"X-Bad": "a\x00b"}),
        ("GET", {"Bad Name": "v"}),
        ("GE(T", {}),
    ],
)
def test_an_unsendable_request_is_a_local_protocol_error_before_any_byte(
    method: str, headers: dict[str, str]
) -> None:
    server = Server([OK])
    bad = {"method": method, "headers": headers}
    assert exchange(server, GET, bad, GET) == [(200, b"ok"), httpx.LocalProtocolError, (200, b"ok")]
    assert (server.connections, len(server.requests)) == (1, 2)  # the kept one, untouched


@pytest.mark.parametrize("port", ["", ":{port}"])
def test_a_url_that_is_not_http_is_unsupported(port: str) -> None:
    server = Server([OK])
    assert exchange(server, {"url": f"ftp://127.0.0.1{port}/file"}) == [httpx.UnsupportedProtocol]
    assert server.connections == 0


# --- TLS --------------------------------------------------------------------------------------


def tls_server(certificate: Certificate, answer: bytes, close_after: bool) -> Server:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate.cert, certificate.key)
    return Server([answer], close_after=close_after, tls=context)


@pytest.mark.parametrize(
    ("answer", "close_after", "connections"),
    [(OK, False, 1), (H200 + b"\r\nok", True, 2)],  # kept; read to the end
)
def test_https_with_a_trusted_certificate(
    certificate: Certificate, answer: bytes, close_after: bool, connections: int
) -> None:
    server = tls_server(certificate, answer, close_after)
    trusting = ssl.create_default_context(cafile=str(certificate.cert))
    assert exchange(server, GET, GET, ssl_context=trusting) == [(200, b"ok")] * 2
    assert server.connections == connections


def test_https_with_a_certificate_not_trusted_is_a_connect_error(certificate: Certificate) -> None:
    server = tls_server(certificate, OK, False)
    assert exchange(server, GET) == [httpx.ConnectError]  # httpx's default context: certifi's
    assert server.requests == []


# --- event loops ------------------------------------------------------------------------------


async def two_at_once(transport: HTTP11Transport, url: str, *, close: bool) -> list[int]:
    """Two requests at once (one waits for the other's slot when max_connections is 1)."""
    request = httpx.Request("POST", f"{url}/echo", content=b"{}")
    answers = await asyncio.gather(*(transport.handle_async_request(request) for _ in range(2)))
    if close:
        await transport.aclose()
    return [a.status_code for a in answers]


def test_one_transport_serves_two_event_loops_in_turn(echo_url: str) -> None:
    transport = HTTP11Transport(limits=httpx.Limits(max_connections=1))
    with warnings.catch_warnings(record=True):  # what the first loop kept leaks: see below
        warnings.simplefilter("always")
        first = asyncio.run(two_at_once(transport, echo_url, close=False))
        second = asyncio.run(two_at_once(transport, echo_url, close=True))
        gc.collect()
    assert first == second == [200, 200]


class Ends(socketserver.StreamRequestHandler):
    """Answers each request with ``OK``, and counts the connections the client ended."""

    ended: ClassVar[list[int]] = []

    def handle(self) -> None:
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = self.rfile.readline()
                if not line:
                    Ends.ended.append(1)
                    return
                head += line
            self.wfile.write(OK)


def test_a_second_event_loop_ends_what_the_first_kept_on_the_wire() -> None:
    """asyncio closes a transport only on its own loop: the server sees the end at once, and
    the file goes with the collected object (the ResourceWarning the class docstring names).
    The collector is off until then, or it could close them first."""
    with ends_server() as url, uncollected():
        transport = HTTP11Transport()
        asyncio.run(two_at_once(transport, url, close=False))
        assert Ends.ended == []  # two kept, idle
        assert asyncio.run(two_at_once(transport, url, close=False)) == [200, 200]
        assert until_true(lambda: len(Ends.ended) == 2)  # the first loop's two
        asyncio.run(transport.aclose())
        assert until_true(lambda: len(Ends.ended) == 4)  # and the second's


@contextlib.contextmanager
def ends_server() -> Iterator[str]:
    Ends.ended = []
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Ends) as server:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()


@contextlib.contextmanager
def uncollected() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def until_true(condition: Callable[[], bool]) -> bool:
    for _ in range(500):
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_aclose_in_a_second_event_loop_ends_what_the_first_kept() -> None:
    with ends_server() as url, uncollected():
        transport = HTTP11Transport()
        asyncio.run(two_at_once(transport, url, close=False))
        asyncio.run(transport.aclose())  # no RuntimeError from the closed loop
        assert until_true(lambda: len(Ends.ended) == 2)
