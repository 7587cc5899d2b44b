"""The upstream Kling API as the proxy reaches it: raw forwarding, and a client for settling.

Forwarding is raw (bytes in, bytes out), so that the answer a client gets is the upstream's
own; what the guard needs from it is read with the same pure protocol code as
:class:`~klingcost.api.client.AsyncKlingClient` (:mod:`klingcost.api.envelope`). Task queries
made by the proxy itself (to confirm a callback, in the background settlement pass) go through an
:class:`AsyncKlingClient`, as ``sync`` and ``hooks serve`` make them.

The API key is added here and nowhere else. It is never in what the proxy answers: every
answer and callback body passing through is scrubbed of it (:func:`klingcost.api.redact.redact`,
which also catches it cut short, re-cased or escaped), and so is every error.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Sequence

import httpx

from klingcost import errors
from klingcost.api.client import AsyncKlingClient
from klingcost.api.http11 import HTTP11Transport
from klingcost.api.redact import MIN_RUN, redact, scrub, secret_forms
from klingcost.api.retry import transport_error
from klingcost.api.wire import SHARDS, Wire, tls_context


class Upstream:
    """The upstream at ``base_url``, reached with ``api_key`` (AuthenticationError without)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # The client checks the key (present, sendable) and the URL before anything is sent.
        self.client = AsyncKlingClient(
            api_key, base_url=base_url, timeout=timeout, transport=transport, max_retries=2
        )
        self._key = self.client._api_key  # the one key, checked there
        self.base_url = self.client.base_url
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self._key}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )
        self._wire = Wire(self._http, self.base_url, shards=SHARDS if transport is None else 1)
        self._shows_key = _finder(self._key).search

    def __repr__(self) -> str:
        return f"Upstream({self.base_url!r})"

    async def send(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: Sequence[tuple[str, str]] = (),
        idempotent: bool,
    ) -> httpx.Response:
        """One request, never retried; a failure to reach the upstream is a KlingAPIError
        (ConnectError: nothing was sent; AmbiguousSubmitError: a create may exist)."""
        headers = {"Content-Type": "application/json"} if content is not None else None
        failure: errors.KlingAPIError | None = None
        try:
            request = self._wire.build(
                method, path, content=content, params=params or None, headers=headers
            )
            return await self._wire.asend(request)
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            what = f"{method} {path}"
            failure = scrub(transport_error(exc, idempotent=idempotent, what=what), self._key)
        raise failure  # outside the except block: nothing chained that could show the key

    def redact(self, text: str) -> str:
        return redact(text, self._key)

    def scrub_bytes(self, content: bytes) -> bytes:
        """``content`` with the key replaced wherever it shows (unchanged, nearly always)."""
        text = content.decode("utf-8", "surrogateescape")
        if text.isascii() and not self._shows_key(text.lower()):
            return content  # the common case, found in C: no run of the key in any form
        clean = redact(text, self._key)
        return content if clean == text else clean.encode("utf-8", "surrogateescape")

    async def aclose(self) -> None:
        await self._wire.aclose()
        await self._http.aclose()
        await self.client.aclose()


def upstream_transport(base_url: str) -> httpx.AsyncBaseTransport:
    """How the proxy reaches ``base_url``: :class:`~klingcost.api.http11.HTTP11Transport`, or
    through the proxy the environment names for it (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, lower case too; not for a host in ``NO_PROXY``), as httpx itself would.

    Kept connections expire before any server's usual 5 s keep-alive: a connection the upstream
    is closing must not be reused for a create (its outcome would be unknown). The number of
    connections has no cap, as a client's own connections to the proxy have none.
    """
    limits = httpx.Limits(keepalive_expiry=2.0)
    url = httpx.URL(base_url)
    proxies = urllib.request.getproxies_environment()
    through = proxies.get(url.scheme) or proxies.get("all")
    if through and not urllib.request.proxy_bypass(url.host):
        # httpx's own transport, which speaks to HTTP and SOCKS proxies (CONNECT for https).
        return httpx.AsyncHTTPTransport(proxy=through, verify=tls_context(), limits=limits)
    return HTTP11Transport(ssl_context=tls_context(), limits=limits)


def _finder(key: str) -> re.Pattern[str]:
    """What :func:`klingcost.api.redact.redact` looks for, as one pattern over lower-cased
    ASCII text: every run of ``MIN_RUN`` characters of every form of ``key`` (an ASCII key:
    the client refuses any other). A match sends the text through ``redact`` itself."""
    runs = {
        form.lower()[i : i + MIN_RUN]
        for form in secret_forms(key)
        for i in range(max(1, len(form) - MIN_RUN + 1))
    }
    return re.compile("|".join(re.escape(run) for run in sorted(runs)))


__all__ = ["Upstream", "upstream_transport"]
