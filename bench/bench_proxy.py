"""What ``klingcost proxy`` costs, against the fake Kling API on loopback, all in one run.

    .venv/bin/python bench/bench_proxy.py                 # about 2 minutes
    .venv/bin/python bench/bench_proxy.py --seconds 5 --latency-n 300
    .venv/bin/python bench/bench_proxy.py --no-callbacks     # the proxy's request path alone
    .venv/bin/python bench/bench_proxy.py --bare-callbacks   # like for like, callbacks on

Three servers, each its own process(es), as in production: the fake Kling API
(``klingcost fake-server``, one process), a **bare pass-through** (Starlette + httpx forwarding
every request unchanged and nothing else, served by uvicorn with as many workers as the proxy)
and ``klingcost proxy --workers N`` on a SQLite ledger. The same load generator drives all
three: a small HTTP/1.1 client on raw asyncio sockets (keep-alive, one connection per client),
so that it costs far less CPU than the servers it measures (httpx would cost more than the
bare pass-through does).

Measured, each against the fake called directly in the same run:

* **added latency of a create** (text2video, priced and held by the proxy), with 1 and with
  16 concurrent clients, median and p99: the target's latency minus the direct call's, the
  three targets interleaved in rounds so that a change of the machine's load hits all alike.
  Reach: the proxy adds at most 1.5x the bare pass-through's added median (the added mean
  is printed beside it);
* **creates per second** through ``--workers 2`` (16 clients for ``--seconds``). Reach: 300/s,
  with the fake, the generator and the proxy on this 2-core machine;
* **task polls per second** (GET of tasks the proxy created, which the first poll settles).

The load average (``uptime``) is printed with the figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

KEY = "hk-bench-0123456789abcdef"
TEAM = "bench"
ENDPOINT = "/v1/videos/text2video"
BODY: dict[str, Any] = {
    "model_name": "kling-v1-5",
    "prompt": "a ship in space",
    "mode": "pro",
    "duration": "10",
}
BIG = 10**15
HERE = Path(__file__).resolve().parent
#: The bare pass-through's callback route (``--bare-callbacks``).
CALLBACK = "/_bare/callback"
CLI = "from klingcost.cli import main; main(prog_name='klingcost')"

# --- the bare pass-through ----------------------------------------------------------------


def bare_app() -> Starlette:
    """Starlette + httpx, forwarding each request to ``BARE_UPSTREAM`` unchanged, nothing else.

    What any proxy must do at least: read the request, send it on a kept-alive connection,
    read the answer, send it back. uvicorn serves it (``--factory bench_proxy:bare_app``).

    With ``BARE_CALLBACKS`` (its own URL; ``--bare-callbacks``) it also does what any proxy
    that settles on callbacks must do at least, as the issue asks of klingcost's: put its
    own callback URL in each create, and confirm each callback of a finished task with a task
    query upstream. Then the fake makes the same callbacks for both pass-throughs.
    """
    upstream = os.environ["BARE_UPSTREAM"]
    own_url = os.environ.get("BARE_CALLBACKS")
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    client = httpx.AsyncClient(base_url=upstream, limits=limits, timeout=30)
    passed = ("authorization", "content-type")

    async def forward(request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k in passed}
        content = await request.body()
        if own_url and request.method == "POST":
            body = json.loads(content)
            body["notify_hook"] = f"{own_url}{CALLBACK}{request.url.path}"
            content = json.dumps(body).encode()
        answer = await client.request(
            request.method,
            request.url.path,
            params=request.query_params,
            content=content,
            headers=headers,
        )
        media = answer.headers.get("content-type")
        return Response(answer.content, answer.status_code, media_type=media)

    async def callback(request: Request) -> Response:
        task = json.loads(await request.body())
        task = task.get("data", task)
        if task.get("task_status") in ("succeed", "failed"):
            path = f"/{request.path_params['path']}/{task['task_id']}"
            await client.get(path, headers={"Authorization": f"Bearer {KEY}"})
        return Response(b'{"status":"ok"}', media_type="application/json")

    methods = ["GET", "POST"]
    routes = [Route(CALLBACK + "/{path:path}", callback, methods=["POST"])]
    return Starlette(routes=[*routes, Route("/{path:path}", forward, methods=methods)])


# --- the load generator -------------------------------------------------------------------


class Connection:
    """One kept-alive HTTP/1.1 connection: send a prepared request, read its answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        found = re.search(rb"\r\ncontent-length:\s*(\d+)", lower)
        if found is not None:
            body = await self.reader.readexactly(int(found.group(1)))
        elif b"transfer-encoding: chunked" in lower:
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                parts.append(await self.reader.readexactly(size + 2))
            await self.reader.readuntil(b"\r\n")
            body = b"".join(p[:-2] for p in parts)
        else:
            body = await self.reader.read()
        if b"connection: close" in lower:
            self.writer.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Target:
    name: str
    url: str
    key: str
    pid: int | None = None  # the server's process (its workers are its children)

    @property
    def address(self) -> tuple[str, int]:
        found = re.match(r"http://([^:/]+):(\d+)", self.url)
        assert found is not None, self.url
        return found.group(1), int(found.group(2))

    def create(self) -> bytes:
        body = json.dumps(BODY).encode()
        return self._raw("POST", ENDPOINT, body)

    def poll(self, task_id: str) -> bytes:
        return self._raw("GET", f"{ENDPOINT}/{task_id}", b"")

    def _raw(self, method: str, path: str, body: bytes) -> bytes:
        host, port = self.address
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {self.key}\r\nAccept: application/json\r\n"
        )
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return (head + "\r\n").encode() + body


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: dict[int, int] = field(default_factory=dict)
    task_ids: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


async def drive(
    target: Target,
    requests: Sequence[bytes],
    clients: int,
    *,
    seconds: float | None = None,
    keep_ids: bool = False,
) -> Run:
    """Send ``requests`` (in turn, cycling when ``seconds`` is given) over ``clients``
    connections at once; each latency is one request's round trip."""
    run = Run()
    host, port = target.address
    next_index = 0
    deadline = time.perf_counter() + seconds if seconds is not None else None

    async def client() -> None:
        nonlocal next_index
        connection = Connection(host, port)
        try:
            while True:
                if deadline is None:
                    if next_index >= len(requests):
                        return
                elif time.perf_counter() >= deadline:
                    return
                raw = requests[next_index % len(requests)]
                next_index += 1
                start = time.perf_counter()
                status, body = await connection.request(raw)
                spent = time.perf_counter() - start
                if status != 200:
                    run.errors[status] = run.errors.get(status, 0) + 1
                    continue
                run.latencies.append(spent)
                if keep_ids:
                    run.task_ids.append(json.loads(body)["data"]["task_id"])
        finally:
            connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    run.elapsed = time.perf_counter() - start
    return run


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` and its descendants, from /proc."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (OSError, IndexError):
        return total
    return total + sum(cpu_seconds(int(child)) for child in children)


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# --- the servers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[Any], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start within 60 s")


@contextlib.contextmanager
def process(
    command: list[str], env: dict[str, str], *, read: bool = False
) -> Iterator[subprocess.Popen[str]]:
    """``command`` running; its stdout readable when ``read`` (only for a first line: a pipe
    nobody reads would stall a server that logs to it), else discarded."""
    stdout = subprocess.PIPE if read else subprocess.DEVNULL
    child = subprocess.Popen(command, env=env, stdout=stdout, text=True)
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextlib.contextmanager
def fake_api() -> Iterator[tuple[str, int]]:
    command = [sys.executable, "-c", CLI, "fake-server", "--port", "0", "--key", KEY]
    with process([*command, "--delay", "0"], dict(os.environ), read=True) as child:
        assert child.stdout is not None
        found = re.search(r"http://\S+", child.stdout.readline())
        if found is None:
            raise SystemExit("klingcost fake-server did not start")
        yield found.group(0), child.pid


def serve_bare(port: int, workers: int) -> None:
    """Serve :func:`bare_app` as the proxy is served: uvicorn, ``workers`` processes, on a
    socket from :func:`klingcost._listen.listening_socket` (TCP_NODELAY on every connection:
    without it each answer would wait ~40 ms on Nagle and the client's delayed ACK)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from klingcost._listen import listening_socket

    sock = listening_socket("127.0.0.1", port)
    config = uvicorn.Config(
        "bench_proxy:bare_app",
        factory=True,
        workers=workers,
        log_level="warning",
        access_log=False,
    )
    if workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])


@contextlib.contextmanager
def bare(upstream: str, workers: int, *, callbacks: bool = False) -> Iterator[tuple[str, int]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, str(HERE / "bench_proxy.py"), "--serve-bare", str(port)]
    command += ["--workers", str(workers)]
    env = {**os.environ, "BARE_UPSTREAM": upstream}
    if callbacks:
        env["BARE_CALLBACKS"] = url
    with process(command, env) as child:
        wait_ready(f"{url}/_fake/requests", child, "the bare pass-through")
        yield url, child.pid


def klingcost(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CLI, *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"klingcost {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout


@contextlib.contextmanager
def proxy(
    upstream: str, workers: int, directory: Path, *, callbacks: bool = True
) -> Iterator[tuple[str, str, int]]:
    """``klingcost proxy --workers N`` on a fresh SQLite ledger; yields (URL, key, pid).

    ``callbacks=False`` runs ``klingcost proxy --no-callbacks``: the proxy puts no callback
    URL in the creates, so the upstream makes no callbacks (which, on this one machine, would
    spend the cores the proxy is measured on): the request path alone is measured."""
    env = {
        **os.environ,
        "KLINGCOST_API_KEY": KEY,
        "KLINGCOST_BASE_URL": upstream,
        "KLINGCOST_HOME": str(directory / "home"),
        "KLINGCOST_LEDGER": str(directory / "ledger.db"),
    }
    klingcost(["budget", "set", TEAM, "--limit", str(BIG), "--period", "month"], env)
    key = json.loads(klingcost(["keys", "create", "--team", TEAM, "--json"], env))["key"]
    port = free_port()
    command = [sys.executable, "-c", CLI, "proxy", "--port", str(port)]
    # As shipped: the access log on (one JSON line a request, here to /dev/null).
    command += ["--upstream", upstream, "--workers", str(workers), "--settle-interval", "0"]
    if not callbacks:
        command += ["--no-callbacks"]
    with process(command, env) as child:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/healthz", child, "klingcost proxy")
        yield url, key, child.pid


# --- the measurements ---------------------------------------------------------------------


def latency(
    targets: list[Target], clients: int, n: int, rounds: int, errors: dict[str, dict[int, int]]
) -> dict[str, list[float]]:
    """Create latencies per target, ``n`` each, interleaved in ``rounds``; answers other than
    200 are counted in ``errors`` (by target, then status), not timed."""
    times: dict[str, list[float]] = {t.name: [] for t in targets}
    for target in targets:  # warm up connections, caches and the workers
        asyncio.run(drive(target, [target.create()] * 100, clients))
    per_round = max(clients, n // rounds)
    for number in range(rounds):
        for target in targets:
            run = asyncio.run(drive(target, [target.create()] * per_round, clients))
            for status, count in run.errors.items():
                seen = errors.setdefault(target.name, {})
                seen[status] = seen.get(status, 0) + count
            times[target.name] += run.latencies
        progress(f"latency, {clients} client(s): round {number + 1}/{rounds} done")
    return times


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def added(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    base = times["direct"]
    out = {}
    for name, values in times.items():
        out[name] = {
            "median_ms": statistics.median(values) * 1000,
            "p99_ms": percentile(values, 0.99) * 1000,
            "added_median_ms": (statistics.median(values) - statistics.median(base)) * 1000,
            "added_mean_ms": (statistics.fmean(values) - statistics.fmean(base)) * 1000,
            "added_p99_ms": (percentile(values, 0.99) - percentile(base, 0.99)) * 1000,
        }
    return out


def measured(
    target: Target, fake_pid: int | None, requests: Sequence[bytes], clients: int, **how: Any
) -> tuple[Run, dict[str, float]]:
    """``drive`` with the CPU time each server spent per answered request, in ms: the fake's
    and, for a pass-through, its own. Unlike rates, this does not depend on how busy the
    machine is (the other engineers' jobs), only on the work each request costs."""
    pids = {"fake": fake_pid, target.name: target.pid if target.name != "direct" else None}
    before = {name: cpu_seconds(pid) for name, pid in pids.items() if pid is not None}
    run = asyncio.run(drive(target, requests, clients, **how))
    done = max(1, len(run.latencies))
    cpu = {
        name: (cpu_seconds(pid) - before[name]) * 1000 / done
        for name, pid in pids.items()
        if pid is not None
    }
    return run, cpu


def throughput(
    targets: list[Target], seconds: float, clients: int, fake_pid: int | None
) -> dict[str, Any]:
    """Creates/s, then polls/s (of tasks the proxy created), for each target, with the CPU
    milliseconds each server spent per request."""
    result: dict[str, Any] = {}
    ids: list[str] = []
    for target in targets:
        creates = [target.create()]
        run, cpu = measured(target, fake_pid, creates, clients, seconds=seconds, keep_ids=True)
        result[f"{target.name}_creates_per_s"] = run.rate
        result[f"{target.name}_create_cpu_ms"] = cpu
        result[f"{target.name}_create_errors"] = run.errors
        progress(f"creates/s through {target.name}: {run.rate:.0f}")
        if target.name == "proxy" or not ids:
            ids = run.task_ids
    for target in targets:
        polls = [target.poll(task_id) for task_id in ids]
        run, cpu = measured(target, fake_pid, polls, clients, seconds=seconds)
        result[f"{target.name}_polls_per_s"] = run.rate
        result[f"{target.name}_poll_cpu_ms"] = cpu
        result[f"{target.name}_poll_errors"] = run.errors
        progress(f"polls/s through {target.name}: {run.rate:.0f}")
    return result


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-n", type=int, default=600, help="creates per target")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=8.0, help="per throughput phase")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument(
        "--proxy-url", help="measure a proxy already running against --upstream, with --key"
    )
    parser.add_argument("--upstream", help="the fake API that --proxy-url forwards to")
    parser.add_argument("--key", help="a proxy key for --proxy-url")
    parser.add_argument("--no-proxy", action="store_true", help="the baselines only")
    parser.add_argument(
        "--no-callbacks",
        action="store_true",
        help="run the proxy with --no-callbacks (no callback URL in creates, so the "
        "upstream makes no callbacks): its request path alone",
    )
    parser.add_argument(
        "--bare-callbacks",
        action="store_true",
        help="the bare pass-through takes callbacks too (its own URL in each create, each "
        "final callback confirmed by a task query): like for like with the proxy as shipped",
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare is not None:
        serve_bare(args.serve_bare, args.workers)
        return 0
    callbacks = "off (proxy --no-callbacks)" if args.no_callbacks else "on for the proxy"
    if args.bare_callbacks:
        callbacks += " and for the bare pass-through"
    figures: dict[str, Any] = {"load_before": load(), "callbacks": callbacks}
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kc-bench-")))
        fake, fake_pid = (args.upstream, None) if args.upstream else stack.enter_context(fake_api())
        served_bare = bare(fake, args.workers, callbacks=args.bare_callbacks)
        bare_url, bare_pid = stack.enter_context(served_bare)
        targets = [Target("direct", fake, KEY, fake_pid), Target("bare", bare_url, KEY, bare_pid)]
        if args.proxy_url:
            targets.append(Target("proxy", args.proxy_url, args.key))
        elif not args.no_proxy:
            served = proxy(fake, args.workers, scratch, callbacks=not args.no_callbacks)
            proxy_url, proxy_key, pid = stack.enter_context(served)
            targets.append(Target("proxy", proxy_url, proxy_key, pid))
        for clients in (1, 16):
            n = args.latency_n if clients == 1 else args.latency_n * 4
            errors: dict[str, dict[int, int]] = {}
            times = latency(targets, clients, n, args.rounds, errors)
            figures[f"latency_{clients}"] = added(times)
            figures[f"latency_{clients}_errors"] = errors
        figures["throughput"] = throughput(targets, args.seconds, 16, fake_pid)
    figures["load_after"] = load()
    report(figures, args.workers)
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


def report(figures: dict[str, Any], workers: int) -> None:
    print(f"load before: {figures['load_before']}")
    print(f"callbacks: {figures['callbacks']}")
    for clients in (1, 16):
        table = figures[f"latency_{clients}"]
        print(f"\ncreate latency, {clients} concurrent client(s) (ms):")
        header = f"{'median':>8} {'p99':>8} {'added med':>10} {'added p99':>10} {'added mean':>10}"
        print(f"  {'target':8} {header}")
        for name, row in table.items():
            print(
                f"  {name:8} {row['median_ms']:8.2f} {row['p99_ms']:8.2f} "
                f"{row['added_median_ms']:10.2f} {row['added_p99_ms']:10.2f} "
                f"{row['added_mean_ms']:10.2f}"
            )
        if "proxy" not in table:
            continue
        bare_added = table["bare"]["added_median_ms"]
        ratio = table["proxy"]["added_median_ms"] / bare_added if bare_added > 0 else float("inf")
        verdict = "ok" if ratio <= 1.5 else "MISSED"
        print(f"  proxy added / bare added (median): {ratio:.2f}x (reach <= 1.5x): {verdict}")
        # The mean too: a server that answers some clients at once and lets others wait has
        # a low median and a high mean (with N always in flight, the mean is N / throughput).
        mean = table["proxy"]["added_mean_ms"] / max(table["bare"]["added_mean_ms"], 1e-9)
        print(f"  proxy added / bare added (mean):   {mean:.2f}x")
        if figures[f"latency_{clients}_errors"]:
            print(f"  answers other than 200: {figures[f'latency_{clients}_errors']}")
    t = figures["throughput"]
    print(f"\nthroughput, 16 clients, --workers {workers} (per second):")
    for name in [n for n in ("direct", "bare", "proxy") if f"{n}_creates_per_s" in t]:
        print(
            f"  {name:8} creates {t[f'{name}_creates_per_s']:8.0f}   "
            f"polls {t[f'{name}_polls_per_s']:8.0f}   "
            f"errors {t[f'{name}_create_errors'] or ''}{t[f'{name}_poll_errors'] or ''}"
        )
    print("\nCPU ms per request (all processes of each server; fake = the upstream's share):")
    for name in [n for n in ("direct", "bare", "proxy") if f"{n}_creates_per_s" in t]:
        for kind in ("create", "poll"):
            shares = ", ".join(f"{k} {v:.2f}" for k, v in t[f"{name}_{kind}_cpu_ms"].items())
            print(f"  {name:8} {kind:6} {shares}")
    if "proxy_creates_per_s" in t:
        verdict = "ok" if t["proxy_creates_per_s"] >= 300 else "MISSED"
        print(f"  proxy creates/s (reach >= 300/s): {verdict}")
    print(f"load after: {figures['load_after']}")


if __name__ == "__main__":
    raise SystemExit(main())
