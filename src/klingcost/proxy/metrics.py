"""``/metrics``: the proxy in Prometheus' text format, through ``prometheus-client``.

=============================================  ==========================================
``klingcost_proxy_requests_total``             requests answered, by ``route``, ``method``
                                               and ``status``
``klingcost_proxy_refusals_total``             refusals, by ``reason`` (budget,
                                               concurrency, unpriced, auth, body_too_large...)
``klingcost_proxy_request_seconds``            time to answer, by ``route`` (histogram)
``klingcost_proxy_upstream_seconds``           time to the upstream's answer headers, by
                                               ``route`` and ``outcome`` (``2xx``, ``4xx``,
                                               ``5xx``, ``timeout``, ``error``)
``klingcost_open_holds``                       open holds (held, submitted, unknown) per
                                               ``team``, read from the ledger at scrape time
``klingcost_open_hold_units``                  the units those holds reserve, per ``team``
=============================================  ==========================================

Labels are route templates (:mod:`klingcost.proxy.labels`), never raw paths: no task id, no
callback secret, no fuzzer's path grows the series. Units are exact in the ledger; Prometheus
carries float64 only, so ``klingcost_open_hold_units`` is for graphs, not for accounts.

**Several workers** (``klingcost proxy --workers N``). Each worker is a process of its own, and
a scrape reaches one of them. :func:`prepare_workers`, called by the command before uvicorn
starts its workers, points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh private directory; every
worker then imports ``prometheus_client`` in its multiprocess mode (each process writes its
counters to its own memory-mapped file there) and ``/metrics`` in any worker merges all the
files, so every scrape reports the sum over all workers, dead ones included (a counter must not
go back when a worker is replaced). The open holds need no merging: they are read from the one
ledger all workers share. Without ``--workers`` the counters live in the process, as usual.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final

import httpx
from anyio import to_thread
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from klingcost.ledger import Hold
from klingcost.proxy.accesslog import RequestFacts
from klingcost.proxy.labels import route_of

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
#: Upstream answers take from milliseconds (a poll) to tens of seconds (a slow create).
UPSTREAM_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
REQUEST_BUCKETS: Final = UPSTREAM_BUCKETS


def prepare_workers() -> Path:
    """Make a fresh directory for the workers' counters and name it in the environment.

    Call it in the parent process before uvicorn starts ``--workers`` (they inherit the
    environment, and each imports ``prometheus_client`` afresh, in multiprocess mode). The
    directory is private (0700) and removed when the parent exits. Counters start at zero with
    each start of the server, as Prometheus expects of a restarted target.
    """
    directory = Path(tempfile.mkdtemp(prefix="klingcost-metrics-"))
    os.environ[MULTIPROC_ENV] = str(directory)
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


def multiprocess_mode() -> bool:
    """Whether this process's counters go to the shared directory (set at import of
    ``prometheus_client``: a process that imported it before :func:`prepare_workers` counts
    in memory, and its ``/metrics`` says only what it counted itself)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


HoldsReader = Callable[[], Iterable[Hold]]


class _OpenHolds(Collector):
    """Open holds per team, read from the ledger when Prometheus scrapes."""

    def __init__(self, read: HoldsReader) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        count: Tally[str] = Tally()
        milli: Tally[str] = Tally()
        for hold in self.read():
            count[hold.team] += 1
            milli[hold.team] += hold.estimate.units_milli
        holds = GaugeMetricFamily(
            "klingcost_open_holds", "Open holds (held, submitted, unknown)", labels=["team"]
        )
        units = GaugeMetricFamily(
            "klingcost_open_hold_units", "Kling units reserved by open holds", labels=["team"]
        )
        for team in sorted(count):
            holds.add_metric([team], count[team])
            units.add_metric([team], milli[team] / 1000)
        yield holds
        yield units


class Metrics:
    """The proxy's counters, and the ``/metrics`` route that shows them.

    ``open_holds`` reads the open holds at scrape time (``lambda: ledger.holds("open")``);
    it runs in a worker thread, as every ledger read of the server does.
    """

    def __init__(self, open_holds: HoldsReader | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "klingcost_proxy_requests",
            "Requests answered by the proxy",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "klingcost_proxy_refusals",
            "Requests the proxy refused itself (never forwarded)",
            ["reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "klingcost_proxy_request_seconds",
            "Time from a request's arrival to the end of its answer",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.upstream = Histogram(
            "klingcost_proxy_upstream_seconds",
            "Time until the upstream API's answer headers arrived",
            ["route", "outcome"],
            buckets=UPSTREAM_BUCKETS,
            registry=self.registry,
        )
        self.open_holds = _OpenHolds(open_holds) if open_holds is not None else None
        if self.open_holds is not None and not multiprocess_mode():
            self.registry.register(self.open_holds)

    def record(self, facts: RequestFacts) -> None:
        """Count one answered request (an :class:`~klingcost.proxy.accesslog.AccessLog`
        listener)."""
        self.requests.labels(facts.route, facts.method, str(facts.status)).inc()
        self.latency.labels(facts.route).observe(facts.ms / 1000)
        if facts.refusal is not None:
            self.refusals.labels(facts.refusal).inc()

    def exposition(self) -> bytes:
        """The text Prometheus scrapes: every worker's counters, and the open holds."""
        if not multiprocess_mode():
            return generate_latest(self.registry)
        registry = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        if self.open_holds is not None:
            registry.register(self.open_holds)
        return generate_latest(registry)

    def route(self, path: str = "/metrics") -> Route:
        """The Starlette route serving :meth:`exposition` (read in a worker thread)."""

        async def metrics(request: Request) -> Response:
            body = await to_thread.run_sync(self.exposition)
            return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        return Route(path, metrics, methods=["GET"])

    def upstream_transport(self, inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        """``inner``, timing every upstream request in ``klingcost_proxy_upstream_seconds``."""
        return TimedTransport(inner, self.upstream)


class TimedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that observes how long the upstream takes to answer (its headers)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, histogram: Histogram) -> None:
        self.inner = inner
        self.histogram = histogram

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        start = time.perf_counter()
        route = route_of(request.url.path)
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.TimeoutException:
            self.histogram.labels(route, "timeout").observe(time.perf_counter() - start)
            raise
        except httpx.TransportError:
            self.histogram.labels(route, "error").observe(time.perf_counter() - start)
            raise
        outcome = f"{response.status_code // 100}xx"
        self.histogram.labels(route, outcome).observe(time.perf_counter() - start)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


__all__ = [
    "MULTIPROC_ENV",
    "Metrics",
    "TimedTransport",
    "multiprocess_mode",
    "prepare_workers",
]
