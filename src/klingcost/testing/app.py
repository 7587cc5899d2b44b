"""The fake Kling API as a Starlette app: routes, the Kling envelope, auth, faults and callbacks.

Routes (Kling's own, which openai-hk serves under ``/kling``)::

    POST /v1/{images|videos}/{endpoint}            create a task
    GET  /v1/{images|videos}/{endpoint}/{id}       one task, by task_id or external_task_id
    GET  /v1/{images|videos}/{endpoint}?pageNum=1&pageSize=30     a page of tasks
    GET  /account/costs                            the resource packs and what they have used

Every answer, errors included (an unknown route, a wrong method, a body that is not JSON, a
refused key), is the envelope ``{"code", "message", "request_id", "data"}`` with Kling's codes.
The order is Kling's: authentication first (so an unknown route without a key is 401), then the
route, then the body. A queued fault (:mod:`klingcost.testing.faults`) comes before all of them.

Test controls, under ``/_fake`` (no key needed)::

    POST   /_fake/faults    a fault object or a list of them: applied to the next matching requests
    GET    /_fake/faults    the faults still queued;  DELETE /_fake/faults  drops them
    GET    /_fake/ledger    what the server charged: {"total_units", "tasks": [...]}
    GET    /_fake/requests  the requests it received: [{"method", "path", "fault", "auth", "body"}]
    GET    /_fake/hooks     the callbacks it delivered or tried to
    GET    /_fake/files/N   a task's result file (PNG or MP4), and sample.png, an input image
    POST   /_fake/config    change api_key, auth, access_key, secret_key, profile,
                            processing_after, done_after, drift
    POST   /_fake/reset     forget tasks, faults, requests and callbacks

A create request that names a ``callback_url`` (Kling's field) or a ``notify_hook`` (openai-hk's)
gets each later state of its task POSTed there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from klingcost.api.redact import redact
from klingcost.money import format_amount
from klingcost.testing.faults import Fault
from klingcost.testing.media import mp4, png
from klingcost.testing.postman import Postman
from klingcost.testing.prices import GROUP_OF
from klingcost.testing.rules import Refused, read_job
from klingcost.testing.state import FakeKlingState, Task

__all__ = ["TRANSPORT_KEY", "create_app"]

#: Where the runner puts uvicorn's transport in the ASGI scope, for the ``drop`` fault.
TRANSPORT_KEY: Final = "klingcost.fake.transport"
#: The callback fields: Kling's own, and openai-hk's name for it.
CALLBACK_FIELDS: Final = ("callback_url", "notify_hook")
_ALL_METHODS: Final = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def envelope(data: Any, *, code: int = 0, message: str = "SUCCEED", status: int = 200) -> Response:
    body = {"code": code, "message": message, "request_id": str(uuid.uuid4()), "data": data}
    return JSONResponse(body, status_code=status)


def error(status: int, code: int, message: str) -> Response:
    return envelope(None, code=code, message=message, status=status)


async def _pause(request: Request, ms: int) -> bool:
    """Sleep ``ms``; False as soon as the client has gone."""
    await request.body()  # read (and keep) it first: is_disconnected() would swallow it
    deadline = time.monotonic() + ms / 1000
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, 0.02))
        if await request.is_disconnected():
            return False
    return True


async def _drop(request: Request) -> Response:
    """Close the connection without answering (uvicorn discards the response returned after)."""
    transport = request.scope.get(TRANSPORT_KEY)
    if transport is None:  # not under uvicorn: the nearest thing is an unfinished answer
        raise ConnectionAbortedError("fake fault: dropped connection")
    transport.abort()
    for _ in range(3):
        await asyncio.sleep(0)
    return Response(status_code=500)


def _fault_answer(fault: Fault) -> Response | None:
    if (answer := fault.error()) is not None:
        return error(*answer)
    if fault.kind == "malformed":
        return Response(fault.body, status_code=fault.status or 200, media_type="application/json")
    return None


def _recorded(raw: bytes) -> Any:
    """A request body as ``/_fake/requests`` shows it: its JSON, else its text, else None."""
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _scrubbed(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` with every secret replaced, in its strings and keys: /_fake/requests shows what
    a client sent, never a key, even one a client put in a body."""
    if not secrets:
        return value
    if isinstance(value, str):
        return redact(value, *secrets)
    if isinstance(value, list):
        return [_scrubbed(item, secrets) for item in value]
    if isinstance(value, dict):
        return {redact(str(k), *secrets): _scrubbed(v, secrets) for k, v in value.items()}
    return value


def _page(request: Request, name: str, default: int, top: int) -> int | None:
    text = request.query_params.get(name, str(default))
    return int(text) if text.isdigit() and 1 <= int(text) <= top else None


def create_app(state: FakeKlingState | None = None) -> Starlette:
    """The fake Kling API as an ASGI app (``app.state.fake`` is its :class:`FakeKlingState`)."""
    fake = state or FakeKlingState()

    async def api(request: Request) -> Response:
        """Every request outside /_fake: fault, then auth, then route, then body."""
        raw = await request.body()
        method, path = request.method, request.url.path
        secrets = fake.auth.secrets(request.headers.get("authorization"))
        fault, record = fake.take_fault(method, path, _scrubbed(_recorded(raw), secrets))
        if fault and fault.kind == "slow" and not await _pause(request, fault.ms):
            return Response(status_code=499)
        endpoint, rest = _endpoint_of(path)
        creating = method == "POST" and endpoint is not None and not rest
        # A create fault waits for a create; on any other route it acts at once.
        if fault and (not fault.create or not creating):
            if fault.kind == "drop":
                return await _drop(request)
            if (answer := _fault_answer(fault)) is not None:
                return answer
        scheme, refused = fake.auth.check(request.headers.get("authorization"))
        record["auth"] = scheme
        if refused is not None:
            return error(401, refused.code, refused.message)
        if path == "/account/costs":
            return account(request) if method == "GET" else _wrong_method(method, path)
        if endpoint is None or len(rest) > 1:
            return error(404, 1202, f"no such endpoint: {path}")
        if creating:
            return await create(request, endpoint, raw, fault)
        if method != "GET":
            return _wrong_method(method, path)
        return query(request, endpoint, rest[0] if rest else None)

    async def create(request: Request, endpoint: str, raw: bytes, fault: Fault | None) -> Response:
        try:
            body = json.loads(raw)
        except ValueError:
            return error(400, 1200, "the request body is not JSON")
        try:
            job = read_job(endpoint, body, fake.table, fake.profile)
        except Refused as exc:
            return error(400, exc.code, str(exc))
        task = fake.create(job, body, origin=str(request.base_url).rstrip("/"))
        if fault and fault.kind == "fail_task":
            task.failed = True
        if fault and fault.kind == "deduction":
            task.deduction, task.deduction_set = fault.value, True
        urls = {body[f]: f for f in CALLBACK_FIELDS if isinstance(body.get(f), str) and body[f]}
        for url, name in urls.items():
            task.callbacks.append(asyncio.create_task(_deliver(request.app, task, url, name)))
        if fault:
            if fault.kind == "drop":
                return await _drop(request)
            if fault.kind == "timeout_after_accept":
                await _pause(request, fault.ms)
            elif (answer := _fault_answer(fault)) is not None:
                return answer
        data: dict[str, Any] = {
            "task_id": task.task_id,
            "task_status": "submitted",
            "created_at": task.created_ms,
            "updated_at": task.created_ms,
        }
        if task.external_task_id:
            data["task_info"] = {"external_task_id": task.external_task_id}
        return envelope(data)

    def query(request: Request, endpoint: str, task_id: str | None) -> Response:
        now = time.monotonic()
        if task_id is None:
            page, size = _page(request, "pageNum", 1, 1000), _page(request, "pageSize", 30, 500)
            if page is None or size is None:
                return error(400, 1201, "pageNum must be 1..1000 and pageSize 1..500")
            tasks = fake.listing(endpoint)[(page - 1) * size : page * size]
            return envelope([t.view(t.status(now)) for t in tasks])
        task = fake.find(endpoint, task_id)
        if task is None:
            return error(404, 1203, f"task not found: {task_id}")
        return envelope(task.view(task.status(now)))

    def account(request: Request) -> Response:
        """``GET /account/costs``: one pack per kind, with what the fake has charged to it.

        Quantities are exact decimal strings (the real API sends JSON numbers)."""
        used = fake.used_by_pack()
        packs = [
            {
                "resource_pack_name": f"fake {kind} pack",
                "resource_pack_id": f"fake-{kind}",
                "resource_pack_type": "decreasing_total",
                "total_quantity": "1000000",
                "remaining_quantity": format_amount(1000000 - used[kind]),
                "status": "online",
            }
            for kind in ("video", "image")
        ]
        return envelope({"code": 0, "msg": "success", "resource_pack_subscribe_infos": packs})

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                fake.add_faults(json.loads(await request.body()))
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        elif request.method == "DELETE":
            fake.clear_faults()
        return JSONResponse([f.as_json() for f in fake.faults])

    async def config(request: Request) -> Response:
        if request.method == "POST":
            try:
                fake.configure(**json.loads(await request.body()))
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(fake.settings())

    async def reset(request: Request) -> Response:
        fake.reset()
        return JSONResponse({"reset": True})

    async def ledger(request: Request) -> Response:
        return JSONResponse(fake.ledger())

    async def seen(request: Request) -> Response:
        return JSONResponse(list(fake.requests))

    async def hooks(request: Request) -> Response:
        return JSONResponse(list(fake.hooks))

    async def files(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "sample.png":
            return Response(png(), media_type="image/png")
        task = fake.task_of_file(name)
        if task is None:
            return error(404, 1203, f"no such file: {name}")
        if name.endswith(".png"):
            return Response(png(), media_type="image/png")
        return Response(mp4(task.job.seconds or 5), media_type="video/mp4")

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = {404: 1202, 405: 1202}.get(status, 5000)
        return error(status, code, f"{request.method} {request.url.path}: HTTP {status}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            fallback = await stack.enter_async_context(httpx.AsyncClient(timeout=2.0))
            postman = Postman(fallback, timeout=2.0)
            stack.push_async_callback(postman.aclose)
            app.state.postman = postman
            yield
            pending = fake.deliveries()
            for delivery in pending:
                delivery.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    app = Starlette(
        routes=[
            Route("/_fake/faults", faults, methods=["GET", "POST", "DELETE"]),
            Route("/_fake/config", config, methods=["GET", "POST"]),
            Route("/_fake/reset", reset, methods=["POST"]),
            Route("/_fake/ledger", ledger, methods=["GET"]),
            Route("/_fake/requests", seen, methods=["GET"]),
            Route("/_fake/hooks", hooks, methods=["GET"]),
            Route("/_fake/files/{name}", files, methods=["GET"]),
            Route("/{path:path}", api, methods=_ALL_METHODS),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.fake = fake
    return app


def _endpoint_of(path: str) -> tuple[str | None, list[str]]:
    """``/v1/videos/text2video/123`` -> (``videos/text2video``, [``123``]); (None, []) if none."""
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "v1":
        name = f"{parts[1]}/{parts[2]}"
        if name in GROUP_OF:
            return name, parts[3:]
    return None, []


def _wrong_method(method: str, path: str) -> Response:
    return error(405, 1202, f"{method} is not a method of {path}")


async def _deliver(app: Starlette, task: Task, url: str, field: str) -> None:
    """POST the task to a callback URL on each state change after creation; best effort."""
    fake: FakeKlingState = app.state.fake
    postman: Postman = app.state.postman
    final = "failed" if task.failed else "succeed"
    for status, after in (("processing", task.processing_after), (final, task.done_after)):
        await asyncio.sleep(max(0.0, task.started + after - time.monotonic()))
        record: dict[str, Any] = {
            "task_id": task.task_id,
            "url": url,
            "field": field,
            "task_status": status,
        }
        try:
            record["status"] = await postman.post(url, task.view(status))
        except (httpx.HTTPError, OSError, ValueError, asyncio.IncompleteReadError) as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        fake.hooks.append(record)
