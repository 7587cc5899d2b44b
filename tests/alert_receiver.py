"""A real webhook receiver on loopback for the alert tests: records what arrives, answers
what it is told to."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at: float  #: time.monotonic() when it arrived


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    #: (status, body) answered to each request in turn; the last one repeats.
    answers: list[tuple[int, str]] = field(default_factory=lambda: [(200, "ok")])
    arrived: threading.Event = field(default_factory=threading.Event)
    #: Seconds to wait before answering (a slow webhook).
    delay: float = 0.0

    def wait(self, count: int = 1, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.received


@contextmanager
def receiver(path: str = "/hook/s3cr3t-t0ken-abcdef") -> Iterator[Receiver]:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port); ``Receiver.url`` ends in ``path``."""
    state: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            state.received.append(
                Received(self.path, dict(self.headers), json.loads(raw), time.monotonic())
            )
            status, text = state.answers[0] if len(state.answers) == 1 else state.answers.pop(0)
            time.sleep(state.delay)
            data = text.encode()
            self.send_response(status)
            kind = "application/json" if text[:1] == "{" else "text/plain"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            state.arrived.set()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Receiver(f"http://127.0.0.1:{server.server_port}{path}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
