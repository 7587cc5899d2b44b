"""The live page as Starlette routes: ``/ui`` (the page), ``/ui/data.json`` (its data) and
``/ui/static/...`` (its scripts, styles and the vendored uPlot).

    app = create_app(ledger)                          # klingcost ui
    routes = ui_routes(lambda request: request.app.state.proxy.ledger)   # inside another app

The page is a small HTML shell; ``app.js`` reads ``data.json`` every ``refresh`` seconds and
redraws in place (no reload). Every URL in the page is built from the request, so the routes
work mounted under a prefix too. Nothing comes from another host: the page works offline.

The endpoints are plain functions, which Starlette runs in its thread pool: a ledger read never
blocks the event loop of the app they are mounted in (the Ledger serialises its own reads).
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from klingcost.errors import KlingcostError
from klingcost.ledger import Ledger
from klingcost.ui.assets import STATIC, asset
from klingcost.ui.data import page_data

#: Seconds between two reads of data.json by the page.
REFRESH: Final = 5

LedgerSource = Ledger | Callable[[Request], Ledger]


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>klingcost budgets</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{static}vendor/uPlot.min.css">
<link rel="stylesheet" href="{static}charts.css">
<link rel="stylesheet" href="{static}ui.css">
</head>
<body data-src="{data}" data-refresh="{refresh}">
<header>
<h1>klingcost budgets</h1>
<p id="status" class="meta">Loading…</p>
</header>
<main>
<section><h2>Budgets</h2><div id="budgets" class="cards"></div></section>
<section><h2>Burn-down</h2>
<div id="charts" class="charts"></div>
<p class="note">Step line: posted + held in the budget's period at the end of each UTC day,
children included (a new period starts from zero). Dashed: the limit, and the forecast from
today's total to the day the budget runs out.</p></section>
<section><h2>Recent tasks</h2><div class="scroll"><table id="tasks">
<thead><tr><th>reserved (UTC)</th><th>team</th><th>job</th><th>state</th>
<th class="num">estimate</th><th class="num">charged</th><th class="num">variance</th>
<th>currency</th></tr></thead>
<tbody id="tasks-body"></tbody></table></div></section>
<section><h2>Refusals</h2><div class="scroll"><table id="refusals">
<thead><tr><th>at (UTC)</th><th>team</th><th>what</th></tr></thead>
<tbody id="refusals-body"></tbody></table></div></section>
<section><h2>Price drift</h2><div class="scroll"><table id="drift">
<thead><tr><th>job class</th><th class="num">compared</th><th class="num">agreeing</th>
<th class="num">estimated units</th><th class="num">charged units</th>
<th class="num">drift</th></tr></thead><tbody id="drift-body"></tbody></table></div>
<p id="drift-notes" class="note"></p></section>
</main>
<script src="{static}vendor/uPlot.iife.min.js"></script>
<script src="{static}charts.js"></script>
<script src="{static}app.js"></script>
</body>
</html>
"""


def _ledger_of(source: LedgerSource, request: Request) -> Ledger:
    return source if isinstance(source, Ledger) else source(request)


def ui_routes(ledger: LedgerSource, *, refresh: int = REFRESH) -> list[BaseRoute]:
    """The page's routes, for any Starlette app: ``ledger`` is a Ledger, or a function of the
    request that returns one (for an app that opens its ledger at startup)."""

    def page(request: Request) -> Response:
        static = request.url_for("ui-static", name="x").path[: -len("x")]
        data = request.url_for("ui-data").path
        html = _PAGE.format(
            static=escape(static, quote=True), data=escape(data, quote=True), refresh=refresh
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def slash(request: Request) -> Response:
        return RedirectResponse(request.url_for("ui-page").path)

    def data(request: Request) -> Response:
        try:
            body = page_data(_ledger_of(ledger, request))
        except KlingcostError as exc:
            # The page keeps what it showed and says why it could not refresh.
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(
            asset(name),
            media_type=STATIC[name],
            headers={"Cache-Control": "public, max-age=300"},
        )

    return [
        Route("/ui", page, methods=["GET"], name="ui-page"),
        Route("/ui/", slash, methods=["GET"]),
        Route("/ui/data.json", data, methods=["GET"], name="ui-data"),
        Route("/ui/static/{name:path}", static, methods=["GET"], name="ui-static"),
    ]


def create_app(ledger: LedgerSource, *, refresh: int = REFRESH) -> Starlette:
    """A Starlette app serving only the page (``klingcost ui``); ``/`` leads to ``/ui``."""

    def home(request: Request) -> Response:
        return RedirectResponse(request.url_for("ui-page").path)

    return Starlette(routes=[Route("/", home), *ui_routes(ledger, refresh=refresh)])


__all__ = ["REFRESH", "STATIC", "asset", "create_app", "ui_routes"]
