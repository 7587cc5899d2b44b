"""``klingcost proxy`` as an ASGI app: Kling's routes, guarded, at ``/v1`` and ``/kling/v1``.

    app = create_app(ProxySettings(upstream="https://api.openai-hk.com/kling"))

Routes (``{endpoint}`` is one the sheet prices: ``images/generations``,
``videos/text2video``, ``videos/image2video``, ``videos/multi-image2video``,
``videos/omni-video``; each also under ``/kling/v1/...``, openai-hk's prefix)::

    POST /v1/{endpoint}                  create: priced, held, forwarded (klingcost.proxy.gate)
    GET  /v1/{endpoint}/{id}             one task (id or external id), the team's only
    GET  /v1/{endpoint}?pageNum=&pageSize=   a page of tasks, filtered to the team's
    POST /_klingcost/callback/{key}/{sig}    the upstream's callbacks (klingcost.proxy.traffic)
    GET  /healthz                        200 when the ledger answers, else 503
    GET  /metrics                        Prometheus (klingcost.proxy.metrics)

As Kling orders it, the key is checked before the route: an unknown route with no key is 401.
The ledger is used on the event loop's thread, one short transaction at a time (why: see
:func:`klingcost.proxy.gate.create`); ``/healthz`` and ``/metrics`` read it in a worker thread.
:func:`app_from_env` is the factory each ``--workers`` process calls (uvicorn imports it).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import httpx
from anyio import to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from klingcost import errors
from klingcost.ledger import Ledger
from klingcost.proxy import envelope as kling
from klingcost.proxy import gate, traffic
from klingcost.proxy.limits import exception_handlers, proxy_limits
from klingcost.proxy.metrics import Metrics
from klingcost.proxy.operate import operated
from klingcost.proxy.settings import ProxySettings, callback_secret
from klingcost.proxy.state import CALLBACK_PREFIX, Authenticate, Proxy
from klingcost.proxy.upstream import Upstream, upstream_transport
from klingcost.request import ENDPOINTS, Endpoint
from klingcost.ui import ui_routes

logger = logging.getLogger("klingcost.proxy")

_METHODS: Final = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_ENDPOINTS: Final[dict[str, Endpoint]] = {e: e for e in ENDPOINTS}


def key_authenticator(ledger: Ledger) -> Authenticate:
    """Proxy keys checked against ``ledger`` (:func:`klingcost.keys.authenticate`)."""
    from klingcost import keys

    secret = keys.server_secret()
    cache = keys.KeyCache()

    def authenticate(authorization: str | None) -> keys.ApiKey:
        now = ledger.clock.now()
        return keys.authenticate(ledger, authorization, secret=secret, now=now, cache=cache)

    return authenticate


def create_app(
    settings: ProxySettings,
    *,
    ledger: Ledger | None = None,
    api_key: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    authenticate: Authenticate | None = None,
    routes: Sequence[BaseRoute] = (),
    access_log: bool | None = None,
) -> ASGIApp:
    """The proxy's ASGI app (its :class:`Proxy` is ``app.state.proxy`` of the Starlette app
    inside, also returned by :func:`proxy_of`).

    ``ledger``: an open ledger (not closed by the app); default: ``settings.ledger`` opened
    here and closed at shutdown. ``api_key``: the upstream key (default ``KLINGCOST_API_KEY``).
    ``transport``: the upstream's httpx transport (tests). ``authenticate``: how a key is
    checked (default: the ledger's proxy keys). ``routes``: more routes, before Kling's.
    ``access_log`` overrides ``settings.access_log`` (tests turn it off).
    Raises AuthenticationError without an API key, and ConnectError for an unusable upstream.
    """
    owns_ledger = ledger is None
    opened = ledger if ledger is not None else Ledger.open(settings.ledger)
    try:
        metrics = Metrics(lambda: opened.holds("open"))
        upstream_url = settings.upstream_url()
        inner = transport or upstream_transport(upstream_url)
        upstream = Upstream(
            upstream_url,
            api_key,
            timeout=settings.upstream_timeout,
            transport=metrics.upstream_transport(inner),
        )
        proxy = Proxy(
            settings,
            ledger=opened,
            upstream=upstream,
            callback_secret=callback_secret(),
            authenticate=authenticate or key_authenticator(opened),
        )
    except BaseException:
        if owns_ledger:
            opened.close()
        raise
    # The live page of issue 16 (/ui, /ui/data.json): budgets and spending, no keys or prompts.
    page = ui_routes(opened)
    app = _starlette(proxy, [metrics.route(), *page, *routes], owns_ledger)
    return operated(
        app,
        metrics=metrics,
        limits=proxy_limits(max_body=settings.max_body),
        log_prompts=settings.log_prompts,
        access_log=settings.access_log if access_log is None else access_log,
    )


def proxy_of(app: Any) -> Proxy:
    """The :class:`Proxy` inside an app made by :func:`create_app` (through its wrappers)."""
    while not isinstance(app, Starlette):
        app = app.app
    found: Proxy = app.state.proxy
    return found


def _starlette(proxy: Proxy, extra: Sequence[BaseRoute], owns_ledger: bool) -> Starlette:
    async def kling_route(request: Request) -> Response:
        parts = request.path_params["rest"].strip("/").split("/")
        endpoint = _ENDPOINTS.get("/".join(parts[:2]))
        ids = parts[2:]
        if endpoint is not None and len(ids) <= 1:
            if request.method == "POST" and not ids:
                return await gate.create(proxy, request, endpoint)
            if request.method == "GET" and ids and ids[0]:
                return await traffic.query(proxy, request, endpoint, ids[0])
            if request.method == "GET" and not ids:
                return await traffic.list_tasks(proxy, request, endpoint)
        return await _no_route(proxy, request)

    async def callback(request: Request) -> Response:
        return await traffic.callback(proxy, request)

    async def healthz(request: Request) -> Response:
        try:
            await to_thread.run_sync(proxy.ledger.published_sheet)
        except errors.LedgerError:
            return JSONResponse({"status": "unavailable", "ledger": "not answering"}, 503)
        return JSONResponse({"status": "ok", "ledger": proxy.ledger.dialect, "pid": os.getpid()})

    async def elsewhere(request: Request) -> Response:
        return await _no_route(proxy, request)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as hooks:
            proxy.hook_client = hooks
            checkpoints = (
                proxy.ledger.background_checkpoints() if owns_ledger else contextlib.nullcontext()
            )
            with checkpoints:
                interval = proxy.settings.settle_interval
                loop = None
                if interval > 0:
                    import asyncio

                    loop = asyncio.create_task(traffic.settle_loop(proxy, interval))
                try:
                    yield
                finally:
                    pending = [*proxy.deliveries, *([loop] if loop else [])]
                    for task in pending:
                        task.cancel()
                    for task in pending:
                        with contextlib.suppress(BaseException):
                            await task
                    await proxy.upstream.aclose()
        if owns_ledger:
            proxy.ledger.close()

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route(CALLBACK_PREFIX + "/{key}/{signature}", callback, methods=["POST"]),
        *extra,
        Route("/v1/{rest:path}", kling_route, methods=_METHODS),
        Route("/kling/v1/{rest:path}", kling_route, methods=_METHODS),
        Route("/{rest:path}", elsewhere, methods=_METHODS),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=exception_handlers())
    app.state.proxy = proxy
    return app


async def _no_route(proxy: Proxy, request: Request) -> Response:
    """Kling's order: a request without a valid key is 401 whatever its route; then 404."""
    authorization = request.headers.get("authorization")
    key = gate.authenticated(proxy, authorization)
    if isinstance(key, gate.Refused):
        return gate.refusal(request, key)
    status = 405 if request.method not in ("GET", "POST") else 404
    message = f"{request.method} {request.url.path}: no such route"
    return kling.kling_error(status, kling.NO_ROUTE, message)


def app_from_env() -> ASGIApp:
    """The app of one ``--workers`` process: settings from ``KLINGCOST_PROXY_SETTINGS``."""
    return create_app(ProxySettings.from_env())


__all__ = ["app_from_env", "create_app", "key_authenticator", "proxy_of"]
