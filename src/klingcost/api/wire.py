"""One request on the wire: built once, handed straight to httpx's transport.

``httpx.Client.request`` runs, on every call, layers the Kling API never uses: it merges the
request's URL into the base URL (parsing both), merges three sets of headers, steps through an
auth flow and a redirect loop, and passes every answer through ``http.cookiejar`` (which
builds a ``urllib`` request, parsing the URL again, to find that there is no cookie). On
loopback that was about a sixth of a create's round trip (``bench/bench_guard.py`` prints the
client alone beside a bare ``httpx.Client.post``). :class:`Wire` keeps what matters and skips
the rest:

* the transport is the one ``httpx.Client`` chooses for the base URL, so ``HTTPS_PROXY``,
  ``NO_PROXY``, ``SSL_CERT_FILE`` and a test's ``MockTransport`` work as before;
* the headers are those ``httpx.Client`` sends (its defaults: ``Accept-Encoding``,
  ``User-Agent``...) with the client's own, fixed once;
* the body is encoded by ``httpx.Request(json=...)`` as ``httpx.Client`` encodes it;
* timeouts are the client's, set on each request as ``httpx.Client`` sets them.

What is left out, deliberately: cookies (Kling's API sets none; a cookie it set would not be
sent back), redirects (never followed by klingcost: a 3xx is an error, as before) and
``httpx.Client``'s event hooks and auth (klingcost passes neither).

Many requests at once (the proxy, ``sync``'s concurrent queries) go through several connection
pools (:class:`ShardedTransport`), each request through the least busy one. httpcore's pool
checks every connection against every waiting request whenever a request starts or ends, at a
cost that grows with the square of the connections: at 16 concurrent requests on loopback one
pool cost 2.8 ms of CPU a request and eight pools 1.1 ms (measured side by side). The extra
pools are made only when requests overlap (a client used one request at a time keeps one
pool), as ``httpx.AsyncClient`` makes its own but sharing one TLS context (building one costs
~57 ms). With a proxy from the environment, or a transport given by the caller, the client's
one transport is kept. The proxy does without httpcore's pools altogether: its upstream
transport is :class:`klingcost.api.http11.HTTP11Transport`.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final

import httpx

#: The absolute URLs of the paths asked for most (one per endpoint's create): built once.
_URL_CACHE_SIZE: Final = 64
#: Connection pools for concurrent async requests (see the module's docstring).
SHARDS: Final = 8


class Wire:
    """Requests to one base URL, sent through ``http``'s transport for that URL.

    ``http`` is the ``httpx.Client`` or ``httpx.AsyncClient`` that owns the transport (and
    closes it); only its transport, headers and timeout are used here.
    """

    def __init__(
        self, http: httpx.Client | httpx.AsyncClient, base_url: str, *, shards: int = 1
    ) -> None:
        self.base_url = base_url.rstrip("/")
        base = httpx.URL(self.base_url + "/")
        # Private to httpx, but the one place that knows which transport (a proxy's, a mount's)
        # serves a URL; every request here goes to this base URL.
        self._transport: Any = http._transport_for_url(base)
        self._sharded: ShardedTransport | None = None
        if (
            shards > 1
            and isinstance(http, httpx.AsyncClient)
            and self._transport is http._transport
        ):
            # No proxy mount for this URL: more default pools beside the client's own, made
            # when requests first overlap (the caller says the client's transport is a default
            # one by asking for shards).
            self._sharded = ShardedTransport([self._transport], grow=default_pool, most=shards)
            self._transport = self._sharded
        self.timeout: httpx.Timeout = http.timeout
        self._extensions = {"timeout": http.timeout.as_dict()}
        self._headers = list(http.headers.raw)
        self._urls: dict[str, httpx.URL] = {}

    def url(self, path: str, params: Sequence[tuple[str, str | int]] | None = None) -> httpx.URL:
        """The absolute URL of ``path`` (already quoted) under the base URL."""
        if params:
            return httpx.URL(self.base_url + path, params=list(params))
        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(self.base_url + path)
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[path] = url
        return url

    def build(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        params: Sequence[tuple[str, str | int]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        """The request ``httpx.Client`` would build for the same call."""
        raw = self._headers if not headers else [*self._headers, *_encoded(headers)]
        return httpx.Request(
            method,
            self.url(path, params),
            headers=raw,
            json=json,
            content=content,
            extensions=self._extensions,
        )

    def send(self, request: httpx.Request) -> httpx.Response:
        """Send and read the whole answer (a sync transport)."""
        response: httpx.Response = self._transport.handle_request(request)
        response.request = request
        try:
            response.read()
        finally:
            response.close()
        return response

    async def asend(self, request: httpx.Request) -> httpx.Response:
        """Send and read the whole answer (an async transport)."""
        response: httpx.Response = await self._transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def aclose(self) -> None:
        """Close the pools made here (the client closes its own transport)."""
        if self._sharded is not None:
            for pool in self._sharded.pools[1:]:
                await pool.aclose()


class ShardedTransport(httpx.AsyncBaseTransport):
    """Several async transports (connection pools) to the same place, each request sent through
    the one with the fewest requests in flight (until its answer is closed). One after another,
    requests all go through the first, on one kept-alive connection; a new pool is made by
    ``grow`` only when a request finds every pool busy, up to ``most``."""

    def __init__(
        self,
        pools: Sequence[httpx.AsyncBaseTransport],
        *,
        grow: Callable[[], httpx.AsyncBaseTransport] | None = None,
        most: int = 1,
    ) -> None:
        self.pools = list(pools)
        self.busy = [0] * len(self.pools)
        self._grow = grow
        self._most = most

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        busy = self.busy
        least = min(busy)
        if least and self._grow is not None and len(self.pools) < self._most:
            self.pools.append(self._grow())
            busy.append(0)
            least = 0
        shard = busy.index(least)
        busy[shard] += 1
        try:
            response = await self.pools[shard].handle_async_request(request)
        except BaseException:
            busy[shard] -= 1
            raise
        response.stream = _Counted(response.stream, busy, shard)
        return response

    async def aclose(self) -> None:
        for pool in self.pools:
            await pool.aclose()


def default_pool() -> httpx.AsyncHTTPTransport:
    """A pool as ``httpx.AsyncClient`` makes its own, sharing one TLS context (building one
    reads the system's certificates: ~57 ms each, paid once per process here)."""
    return httpx.AsyncHTTPTransport(verify=tls_context())


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS context (certificates from the environment, else certifi's), built
    once per process and shared by the pools made here."""
    return httpx.create_ssl_context()


class _Counted(httpx.AsyncByteStream):
    """An answer's body that counts its request out of its pool when it is closed."""

    def __init__(self, stream: Any, busy: list[int], shard: int) -> None:
        self._stream = stream
        self._busy = busy
        self._shard = shard

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if self._shard >= 0:
            self._busy[self._shard] -= 1
            self._shard = -1
        await self._stream.aclose()


def _encoded(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("ascii"), value.encode("ascii")) for name, value in headers.items()]
