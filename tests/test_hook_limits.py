"""``klingcost hooks serve`` stays up under abuse (issue 13, item 9), for real on loopback.

The review took the hook server down without its secret: ~20,000 connections that each sent a
request line and one header and stopped exhausted its file descriptors, real callbacks failed,
and stderr filled with a traceback per connection; a 100 MB body was read whole. Here the real
server runs as its own process (``klingcost hooks serve``, uvicorn) with small limits, and the
same attacks are sent to it over real sockets.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fake_fixtures import BODIES, KEY, _fake_session, fake_server  # noqa: F401
from klingcost._limits import BurstLog, ServerLimits
from klingcost.fake_server import FakeKling
from klingcost.guard import GuardedClient
from klingcost.ledger import Ledger

ENDPOINT = "videos/text2video"
SECRET = "s3cret-hook-path-0123456789"
MAX_CONNECTIONS = 50
MAX_BODY = 64 * 1024
HEADER_TIMEOUT = 1.5
SLOWLORIS = 3000  # sockets: 60 times the server's connection limit


@dataclass
class Served:
    process: subprocess.Popen[str]
    port: int
    ledger: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{SECRET}"

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(base_url: str, directory: Path) -> Iterator[Served]:
    """``klingcost hooks serve`` with small limits, as its own process, confirming with the
    fake API at ``base_url``."""
    path = directory / "served.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("studio", limit=10_000_000, period="month")
    port = free_port()
    env = {
        **os.environ,
        "KLINGCOST_API_KEY": KEY,
        "KLINGCOST_BASE_URL": base_url,
        "KLINGCOST_HOME": str(directory / "home"),
    }
    cli = "from klingcost.cli import main; main(prog_name='klingcost')"
    command = [sys.executable, "-c", cli, "hooks", "serve", "--port", str(port)]
    command += ["--secret", SECRET, "--ledger", str(path)]
    command += ["--max-connections", str(MAX_CONNECTIONS), "--max-body", str(MAX_BODY)]
    command += ["--header-timeout", str(HEADER_TIMEOUT), "--idle-timeout", "1"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    server = Served(process, port, path)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hooks serve did not start: {process.communicate()}")
            time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=15)


@pytest.fixture(scope="module")
def served(
    _fake_session: FakeKling,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """One server for the tests that do not stop it."""
    with serving(_fake_session.base_url, tmp_path_factory.mktemp("served")) as server:
        yield server


def stop(server: Served) -> str:
    """Stop the server; its stderr."""
    server.process.send_signal(signal.SIGINT)
    _, err = server.process.communicate(timeout=15)
    return err


def slowloris(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that each send a request line and one header, then nothing."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        with contextlib.suppress(OSError):  # refused and closed by the server already
            sock.sendall(b"POST /hooks/x HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sockets.append(sock)
    return sockets


def real_callback(fake: FakeKling, served: Served) -> httpx.Response:
    """A task the fake ran, and its callback posted to the server (which confirms it)."""
    with (
        Ledger.open(served.ledger) as ledger,
        GuardedClient("studio", ledger=ledger, api_key=KEY, base_url=fake.base_url) as guard,
    ):
        submission = guard.submit(ENDPOINT, BODIES[ENDPOINT])
    body = fake.state.tasks[submission.task_id or ""].view("succeed")
    return httpx.post(served.url, json=body, timeout=10)


def raw(port: int, request: bytes, *, timeout: float = 10) -> bytes:
    """Send ``request`` as is and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_slowloris_burst_leaves_real_callbacks_working(fake: FakeKling, tmp_path: Path) -> None:
    with serving(fake.base_url, tmp_path) as served:
        burst(served, fake)


def burst(served: Served, fake: FakeKling) -> None:
    started = time.monotonic()
    sockets = slowloris(served.port, SLOWLORIS)
    try:
        # Every connection is still open on our side; the server soon holds at most its
        # limit (it accepts a backlog's worth at once, then closes what it refuses).
        deadline = time.monotonic() + 10
        while served.open_fds() >= MAX_CONNECTIONS + 64:
            assert time.monotonic() < deadline, served.open_fds()
            time.sleep(0.05)
        answer = real_callback(fake, served)
        assert answer.status_code == 200 and answer.json()["status"] == "settled"
        assert time.monotonic() - started < 30
    finally:
        for sock in sockets:
            sock.close()
    with Ledger.open(served.ledger) as ledger:
        [hold] = ledger.holds()
        assert hold.state == "settled"
    err = stop(served)
    assert "Traceback" not in err
    assert "refusing:" in err
    assert len(err.splitlines()) < 20  # one line per burst, not one per connection


def test_headers_that_never_complete_time_out(served: Served) -> None:
    started = time.monotonic()
    answer = raw(served.port, b"POST /hooks/x HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert HEADER_TIMEOUT - 0.2 <= waited < HEADER_TIMEOUT + 3


def test_an_oversized_body_is_refused_without_being_read(served: Served) -> None:
    # 100 MB announced, not a byte of it sent: the answer comes at once.
    head = (
        f"POST /hooks/{SECRET} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
    ).encode("ascii")
    started = time.monotonic()
    answer = raw(served.port, head)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"65536 bytes" in answer
    assert time.monotonic() - started < 3


def test_an_oversized_chunked_body_is_refused(served: Served) -> None:
    chunk = b"x" * 16384
    head = (
        f"POST /hooks/{SECRET} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode("ascii")
    body = b"".join(b"4000\r\n" + chunk + b"\r\n" for _ in range(5))  # 80 KiB, no end
    assert raw(served.port, head + body).startswith(b"HTTP/1.1 413 ")


def test_a_stalled_body_times_out(served: Served) -> None:
    head = (
        f"POST /hooks/{SECRET} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    ).encode("ascii")
    assert raw(served.port, head).startswith(b"HTTP/1.1 408 ")


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        ServerLimits(max_connections=0)
    with pytest.raises(ValueError, match="header_timeout"):
        ServerLimits(header_timeout=0)


def test_the_burst_log_writes_one_line_per_burst(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = BurstLog(window=10, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="klingcost.limits"):
        for _ in range(1000):
            log.refused("too many")
        now[0] = 11
        log.refused("too many")
    assert [r.getMessage() for r in caplog.records] == [
        "refusing: too many (more refusals in the next 10 s are counted, not logged)",
        "the last burst also refused: 999 x too many",
        "refusing: too many (more refusals in the next 10 s are counted, not logged)",
    ]
    assert log.total == 1001
