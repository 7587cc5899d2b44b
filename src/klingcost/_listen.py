"""A listening TCP socket for klingcost's servers (``fake-server`` and ``hooks serve``).

Each server binds its own socket and hands it to uvicorn, so that a taken port is reported
as such (uvicorn would exit 3, "refused by a budget" here) and so that the real port is known
when 0 was asked for.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port``; OSError (closed first) when it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then (else each
    # answer waits ~40 ms on Nagle and the client's delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # As uvicorn does: a restarted server may reuse a port still in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's default backlog
    except OSError:
        sock.close()
        raise
    return sock


def address(host: str, port: int) -> str:
    """``host:port`` as a URL writes it (an IPv6 host in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve_in_thread(server: uvicorn.Server, sock: socket.socket, what: str) -> threading.Thread:
    """Run ``server`` on ``sock`` in a daemon thread and return once it serves (the in-process
    servers of the tests, the demo and the proxy's own tests). RuntimeError naming ``what``
    when it does not within 10 s; the thread is stopped first."""
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=10)
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.001)
    return thread
