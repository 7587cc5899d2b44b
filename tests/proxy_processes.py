"""``klingcost proxy`` as its own process(es), as an operator runs it, for the proof tests.

:func:`running_proxy` starts the real command (``--workers N`` included) against an upstream and
a ledger, waits for ``/healthz``, and stops it (SIGTERM, then SIGKILL) afterwards.
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
from dataclasses import dataclass
from pathlib import Path

import httpx

from fake_fixtures import KEY

CLI = "from klingcost.cli import main; main(prog_name='klingcost')"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proxy_env(home: Path, ledger: str, upstream: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLINGCOST_")}
    env.update(
        KLINGCOST_API_KEY=KEY,
        KLINGCOST_BASE_URL=upstream,
        KLINGCOST_HOME=str(home),
        KLINGCOST_LEDGER=ledger,
    )
    return env


def klingcost(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args], env=env, capture_output=True, text=True, timeout=120
    )


@dataclass
class RunningProxy:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def worker_pids(self) -> list[int]:
        """The worker processes (children of the supervisor), or the process itself."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            pids = [int(p) for p in children.read_text().split()]
        except OSError:
            return [self.process.pid]
        workers = [p for p in pids if b"spawn_main" in _cmdline(p)]
        return workers or [self.process.pid]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@contextlib.contextmanager
def running_proxy(
    env: dict[str, str], directory: Path, *, workers: int = 1, extra: tuple[str, ...] = ()
) -> Iterator[RunningProxy]:
    port = free_port()
    log = directory / f"proxy-{port}.log"
    command = [sys.executable, "-c", CLI, "proxy", "--port", str(port)]
    command += ["--workers", str(workers), *extra]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the proxy exited: {log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"the proxy did not start: {log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield RunningProxy(process, url, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
