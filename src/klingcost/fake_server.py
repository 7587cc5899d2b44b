"""A fake Kling API for tests and demos: a Starlette app on uvicorn that speaks the seed's protocol.

It answers the four create endpoints (``POST /v1/images/generations``, ``/v1/videos/text2video``,
``/v1/videos/image2video``, ``/v1/videos/omni-video``), the task query
``GET /v1/{images|videos}/{endpoint}/{task_id}`` (by task id or ``external_task_id``) and the list
query ``GET /v1/{...}/{endpoint}?pageNum=1&pageSize=30``, in the documented envelope
``{"code", "message", "request_id", "data"}``. A task is ``submitted`` when created,
``processing`` after ``processing_after`` seconds and ``succeed`` (or ``failed``) after
``done_after`` seconds; a succeeded task reports ``final_unit_deduction``: the units of
:func:`klingcost.pricing.estimate`, times the model's ``drift`` factor if one is set, as a string.
When a request names a ``notify_hook``, each later state of its task is POSTed there.

Test controls, under ``/_fake`` (no key needed)::

    POST   /_fake/faults    a fault object or a list of them: applied to the next matching requests
    GET    /_fake/faults    the faults still queued;  DELETE /_fake/faults  drops them
    GET    /_fake/ledger    what the server charged: {"total_units", "tasks": [...]}
    GET    /_fake/requests  the requests it received: [{"method", "path", "fault"}]
    GET    /_fake/hooks     the callbacks it delivered or tried to
    POST   /_fake/config    change api_key, processing_after, done_after, drift
    POST   /_fake/reset     forget tasks, faults, requests and callbacks

A fault is ``{"kind": ..., "method": "POST", "path": "text2video", "times": 1, ...}``; ``method``
and ``path`` (a substring of the request path) are optional filters. Kinds (see :data:`FAULTS`):

* errors answered instead of the request: ``rate_limit`` (429, 1302), ``concurrency`` (429, 1303),
  ``pack_used_up`` (429, 1102), ``unauthorized`` (401, 1002), ``policy`` (400, 1301),
  ``server_error`` (500, 5000), ``unavailable`` (503, 5001), or ``error`` with your own
  ``status``, ``code`` and ``message``; ``"create": true`` creates the task first;
* ``slow``: sleep ``ms`` before answering normally;
* ``drop``: close the connection without answering (``"create": true`` creates the task first);
* ``malformed``: answer ``body`` (default: truncated JSON) with ``status`` (default 200);
  ``"create": true`` creates the task first;
* ``timeout_after_accept``: create the task, then hold the answer ``ms`` (default 5000): a client
  that times out cannot know that the task exists;
* ``fail_task``: the task created by the request ends ``failed`` and is not charged;
* ``deduction``: the task reports ``value`` as its ``final_unit_deduction`` (``null`` omits it);
  the ledger still records the units it computed.

:class:`FakeKling` runs it in a background thread for tests::

    with FakeKling(done_after=0) as fake:
        client = KlingClient("hk-test", base_url=fake.base_url)
        fake.set_faults({"kind": "rate_limit", "times": 2})
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import TracebackType
from typing import Any, Final, Self

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from klingcost._listen import address, listening_socket
from klingcost.errors import KlingcostError
from klingcost.money import exact, format_amount
from klingcost.pricing import estimate
from klingcost.request import ENDPOINTS, Endpoint

__all__ = ["FAULTS", "FakeKling", "FakeKlingState", "create_app", "serve"]

#: The error faults: kind -> (HTTP status, Kling code, message).
ERROR_FAULTS: Final[dict[str, tuple[int, int, str]]] = {
    "rate_limit": (429, 1302, "the request rate is over the account's limit"),
    "concurrency": (429, 1303, "parallel tasks are over the resource pack's limit"),
    "pack_used_up": (429, 1102, "the resource pack is used up or expired"),
    "unauthorized": (401, 1002, "authorization is invalid"),
    "policy": (400, 1301, "the content safety check refused the request"),
    "server_error": (500, 5000, "server internal error"),
    "unavailable": (503, 5001, "the service is temporarily unavailable"),
}
FAULTS: Final = frozenset(
    [
        *ERROR_FAULTS,
        "error",
        "slow",
        "drop",
        "malformed",
        "timeout_after_accept",
        "fail_task",
        "deduction",
    ]
)
_CREATE_FAULTS: Final = frozenset({"timeout_after_accept", "fail_task", "deduction"})
MALFORMED_BODY: Final = '{"code": 0, "message": "SUCCEED", "data": {"task_id": '
_TRANSPORT_KEY: Final = "klingcost.fake.transport"


@dataclass
class Fault:
    """One queued fault; see the module docstring for the kinds and their fields."""

    kind: str
    method: str | None = None
    path: str | None = None
    times: int = 1
    status: int | None = None
    code: int | None = None
    message: str | None = None
    ms: int = 0
    create: bool = False
    body: str = MALFORMED_BODY
    value: str | None = None

    @classmethod
    def from_json(cls, spec: Mapping[str, Any]) -> Fault:
        if not isinstance(spec, Mapping) or spec.get("kind") not in FAULTS:
            kind = spec.get("kind") if isinstance(spec, Mapping) else spec
            raise ValueError(f"unknown fault {kind!r}; kinds: {', '.join(sorted(FAULTS))}")
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault fields {sorted(unknown)} in {dict(spec)}")
        fault = cls(**spec)
        if fault.kind == "timeout_after_accept" and "ms" not in spec:
            fault.ms = 5000
        if fault.kind in _CREATE_FAULTS:
            fault.create = True
            # It shapes a task being created: a query or a list before the create must not
            # use it up (it would leave the test with a silent non-fault).
            if fault.method is None:
                fault.method = "POST"
        if fault.times < 1:
            raise ValueError(f"a fault applies at least once (given times={fault.times})")
        return fault

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and (
            self.path is None or self.path in path
        )

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class _Task:
    task_id: str
    endpoint: Endpoint
    model: str
    body: dict[str, Any]
    units: Fraction
    created_ms: int
    started: float  # time.monotonic() at creation
    processing_after: float
    done_after: float
    failed: bool = False
    deduction: str | None = None
    deduction_set: bool = False
    hook_delivery: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def external_task_id(self) -> str | None:
        value = self.body.get("external_task_id")
        return str(value) if value else None

    def status(self, now: float) -> str:
        elapsed = now - self.started
        if elapsed >= self.done_after:
            return "failed" if self.failed else "succeed"
        return "processing" if elapsed >= self.processing_after else "submitted"

    def view(self, status: str) -> dict[str, Any]:
        """The task object as a query answer's ``data`` (and a callback's body) show it."""
        after = {"submitted": 0.0, "processing": self.processing_after}.get(status, self.done_after)
        external = self.external_task_id
        data: dict[str, Any] = {
            "task_id": self.task_id,
            "task_status": status,
            "task_status_msg": "the fake task failed" if status == "failed" else "",
            "task_info": {"external_task_id": external} if external else {},
            "created_at": self.created_ms,
            "updated_at": self.created_ms + int(after * 1000),
        }
        if status == "succeed":
            data["task_result"] = self._result()
            if not self.deduction_set:
                data["final_unit_deduction"] = format_amount(self.units)
            elif self.deduction is not None:
                data["final_unit_deduction"] = self.deduction
        return data

    def _result(self) -> dict[str, Any]:
        cdn = f"https://cdn.fake-kling.invalid/{self.endpoint}/{self.task_id}"
        if self.endpoint == "images/generations":
            n = self.body.get("n") or 1
            images = [{"index": i, "url": f"{cdn}-{i}.png"} for i in range(int(n))]
            return {"images": images, "videos": None}
        video = {
            "id": f"{self.task_id}1",
            "url": f"{cdn}-0.mp4",
            "duration": str(self.body.get("duration") or 5),
        }
        if self.endpoint == "videos/omni-video":
            return {"videos": [video]}
        return {"images": None, "videos": [video]}


class FakeKlingState:
    """Everything the fake server knows; thread-safe, so a test can read it from its own thread."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        processing_after: float = 0.0,
        done_after: float = 0.2,
        drift: Mapping[str, Fraction | str | int] | None = None,
    ) -> None:
        self.api_key = api_key
        self.processing_after = processing_after
        self.done_after = done_after
        self.drift = {model: exact(f) for model, f in (drift or {}).items()}
        self._lock = threading.Lock()
        self._ids = itertools.count(847130448077000000 + secrets.randbelow(10**12))
        self.tasks: dict[str, _Task] = {}
        self.faults: list[Fault] = []
        self.requests: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.hooks: deque[dict[str, Any]] = deque(maxlen=10_000)

    # --- configuration and faults -----------------------------------------------------

    def configure(self, **settings: Any) -> None:
        allowed = {"api_key", "processing_after", "done_after", "drift"}
        unknown = set(settings) - allowed
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; allowed: {sorted(allowed)}")
        with self._lock:
            for name, value in settings.items():
                if name == "drift":
                    value = {model: exact(f) for model, f in (value or {}).items()}
                elif name in ("processing_after", "done_after"):
                    value = float(value)
                setattr(self, name, value)

    def settings(self) -> dict[str, Any]:
        return {
            "api_key_required": self.api_key is not None,
            "processing_after": self.processing_after,
            "done_after": self.done_after,
            "drift": {model: format_amount(f) for model, f in self.drift.items()},
        }

    def add_faults(self, specs: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list[Fault]:
        items = [specs] if isinstance(specs, Mapping) else list(specs)
        faults = [Fault.from_json(spec) for spec in items]
        with self._lock:
            self.faults.extend(faults)
        return faults

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        """Record the request; the first queued fault that matches it is used once."""
        with self._lock:
            found = next((f for f in self.faults if f.matches(method, path)), None)
            if found is not None:
                found.times -= 1
                if found.times == 0:
                    self.faults.remove(found)
            kind = found.kind if found else None
            self.requests.append({"method": method, "path": path, "fault": kind})
            return found

    def reset(self) -> None:
        with self._lock:
            for delivery in self._deliveries():
                with contextlib.suppress(RuntimeError):  # its loop has closed: nothing to stop
                    delivery.get_loop().call_soon_threadsafe(delivery.cancel)
            self.tasks.clear()
            self.faults.clear()
            self.requests.clear()
            self.hooks.clear()

    # --- tasks and the ledger ---------------------------------------------------------

    def create(
        self, endpoint: Endpoint, body: dict[str, Any], model: str, units: Fraction
    ) -> _Task:
        with self._lock:
            task = _Task(
                task_id=str(next(self._ids)),
                endpoint=endpoint,
                model=model,
                body=body,
                units=units * self.drift.get(model, 1),
                created_ms=int(time.time() * 1000),
                started=time.monotonic(),
                processing_after=self.processing_after,
                done_after=self.done_after,
            )
            self.tasks[task.task_id] = task
        return task

    def find(self, endpoint: str, task_id: str) -> _Task | None:
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None:
                task = next((t for t in self.tasks.values() if t.external_task_id == task_id), None)
        return task if task is not None and task.endpoint == endpoint else None

    def listing(self, endpoint: str) -> list[_Task]:
        with self._lock:
            return [t for t in reversed(self.tasks.values()) if t.endpoint == endpoint]

    def ledger(self) -> dict[str, Any]:
        """What the server charged: the units of every succeeded task (failed ones cost nothing)."""
        now = time.monotonic()
        with self._lock:
            tasks = list(self.tasks.values())
        rows = []
        for task in tasks:
            status = task.status(now)
            rows.append(
                {
                    "task_id": task.task_id,
                    "endpoint": task.endpoint,
                    "model": task.model,
                    "status": status,
                    "units": format_amount(task.units if status == "succeed" else Fraction(0)),
                    "reported": task.view(status).get("final_unit_deduction"),
                }
            )
        return {"total_units": format_amount(self.charged(now)), "tasks": rows}

    def charged(self, now: float | None = None) -> Fraction:
        """The sum of the units of the tasks that have succeeded by ``now``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tasks = list(self.tasks.values())
        return sum((t.units for t in tasks if t.status(now) == "succeed"), Fraction(0))

    def deliveries(self) -> list[asyncio.Task[None]]:
        """The callback deliveries still running."""
        with self._lock:
            return self._deliveries()

    def _deliveries(self) -> list[asyncio.Task[None]]:
        hooks = (t.hook_delivery for t in self.tasks.values())
        return [d for d in hooks if d is not None and not d.done()]


# --- the app ------------------------------------------------------------------------------


def _envelope(data: Any, *, code: int = 0, message: str = "SUCCEED", status: int = 200) -> Response:
    body = {"code": code, "message": message, "request_id": str(uuid.uuid4()), "data": data}
    return JSONResponse(body, status_code=status)


def _error(status: int, code: int, message: str) -> Response:
    return _envelope(None, code=code, message=message, status=status)


def _endpoint(request: Request) -> Endpoint | None:
    name = f"{request.path_params['group']}/{request.path_params['name']}"
    return next((e for e in ENDPOINTS if e == name), None)


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
    transport = request.scope.get(_TRANSPORT_KEY)
    if transport is None:  # not under uvicorn: the nearest thing is an unfinished answer
        raise ConnectionAbortedError("fake fault: dropped connection")
    transport.abort()
    for _ in range(3):
        await asyncio.sleep(0)
    return Response(status_code=500)


def _fault_answer(fault: Fault) -> Response | None:
    if fault.kind in ERROR_FAULTS or fault.kind == "error":
        status, code, message = ERROR_FAULTS.get(fault.kind, (500, 5000, "injected error"))
        return _error(fault.status or status, fault.code or code, fault.message or message)
    if fault.kind == "malformed":
        return Response(fault.body, status_code=fault.status or 200, media_type="application/json")
    return None


def create_app(state: FakeKlingState | None = None) -> Starlette:
    """The fake Kling API as an ASGI app (``app.state.fake`` is its :class:`FakeKlingState`)."""
    fake = state or FakeKlingState()

    def authorized(request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return _error(401, 1001, "authorization is empty")
        if fake.api_key is not None and key.strip() != fake.api_key:
            return _error(401, 1002, "authorization is invalid")
        return None

    async def create(request: Request) -> Response:
        fault = fake.take_fault(request.method, request.url.path)
        endpoint = _endpoint(request)
        if fault and fault.kind == "slow" and not await _pause(request, fault.ms):
            return Response(status_code=499)
        if endpoint is None:
            return _error(404, 1202, f"no such endpoint: {request.url.path}")
        if fault and not fault.create:
            if fault.kind == "drop":
                return await _drop(request)
            if (answer := _fault_answer(fault)) is not None:
                return answer
        if (refused := authorized(request)) is not None:
            return refused
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, 1200, "the request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, 1200, "the request body must be a JSON object")
        try:
            priced = estimate(endpoint, body)
        except KlingcostError as exc:  # RequestValidationError, or a request the sheet cannot price
            return _error(400, 1201, str(exc))
        task = fake.create(endpoint, body, priced.model, priced.units)
        if fault and fault.kind == "fail_task":
            task.failed = True
        if fault and fault.kind == "deduction":
            task.deduction, task.deduction_set = fault.value, True
        hook = body.get("notify_hook")
        if isinstance(hook, str) and hook:
            task.hook_delivery = asyncio.create_task(_deliver(request.app, task, hook))
        if fault and fault.create:
            if fault.kind == "drop":
                return await _drop(request)
            if fault.kind == "timeout_after_accept":
                await _pause(request, fault.ms)
            elif (answer := _fault_answer(fault)) is not None:
                return answer
        data = {
            "task_id": task.task_id,
            "task_status": "submitted",
            "created_at": task.created_ms,
            "updated_at": task.created_ms,
        }
        if task.external_task_id:
            data["task_info"] = {"external_task_id": task.external_task_id}
        return _envelope(data)

    async def query(request: Request) -> Response:
        fault = fake.take_fault(request.method, request.url.path)
        if fault and fault.kind == "slow" and not await _pause(request, fault.ms):
            return Response(status_code=499)
        if fault and fault.kind == "drop":
            return await _drop(request)
        if fault and (answer := _fault_answer(fault)) is not None:
            return answer
        if (refused := authorized(request)) is not None:
            return refused
        endpoint = _endpoint(request)
        if endpoint is None:
            return _error(404, 1202, f"no such endpoint: {request.url.path}")
        now = time.monotonic()
        if "task_id" not in request.path_params:
            page, size = _page(request, "pageNum", 1, 1000), _page(request, "pageSize", 30, 500)
            if page is None or size is None:
                return _error(400, 1201, "pageNum must be 1..1000 and pageSize 1..500")
            tasks = fake.listing(endpoint)[(page - 1) * size : page * size]
            return _envelope([t.view(t.status(now)) for t in tasks])
        task = fake.find(endpoint, request.path_params["task_id"])
        if task is None:
            return _error(404, 1203, f"task not found: {request.path_params['task_id']}")
        return _envelope(task.view(task.status(now)))

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

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=2.0) as client:
            app.state.hook_client = client
            yield
            pending = fake.deliveries()
            for delivery in pending:
                delivery.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    app = Starlette(
        routes=[
            Route("/v1/{group}/{name}", create, methods=["POST"]),
            Route("/v1/{group}/{name}", query, methods=["GET"]),
            Route("/v1/{group}/{name}/{task_id}", query, methods=["GET"]),
            Route("/_fake/faults", faults, methods=["GET", "POST", "DELETE"]),
            Route("/_fake/config", config, methods=["GET", "POST"]),
            Route("/_fake/reset", reset, methods=["POST"]),
            Route("/_fake/ledger", ledger, methods=["GET"]),
            Route("/_fake/requests", seen, methods=["GET"]),
            Route("/_fake/hooks", hooks, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.fake = fake
    return app


def _page(request: Request, name: str, default: int, top: int) -> int | None:
    text = request.query_params.get(name, str(default))
    return int(text) if text.isdigit() and 1 <= int(text) <= top else None


async def _deliver(app: Starlette, task: _Task, url: str) -> None:
    """POST the task to its ``notify_hook`` on each state change after creation; best effort."""
    fake: FakeKlingState = app.state.fake
    client: httpx.AsyncClient = app.state.hook_client
    final = "failed" if task.failed else "succeed"
    for status, after in (("processing", task.processing_after), (final, task.done_after)):
        await asyncio.sleep(max(0.0, task.started + after - time.monotonic()))
        record: dict[str, Any] = {"task_id": task.task_id, "url": url, "task_status": status}
        try:
            response = await client.post(url, json=task.view(status))
            record["status"] = response.status_code
        except httpx.HTTPError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        fake.hooks.append(record)


class _Wrapper:
    """The outermost ASGI layer: hands uvicorn's transport to the ``drop`` fault."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if transport is not None:
                scope[_TRANSPORT_KEY] = transport
        await self.app(scope, receive, send)


def _config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        _Wrapper(app),
        host=host,
        port=port,
        http="h11",
        ws="none",
        loop="asyncio",
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )


def _url(host: str, sock: socket.socket) -> str:
    return f"http://{address(host, sock.getsockname()[1])}"


def serve(
    state: FakeKlingState,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the fake API in the foreground until interrupted; ``ready(base_url)`` once bound."""
    with listening_socket(host, port) as sock:
        server = uvicorn.Server(_config(create_app(state), host, port))
        if ready is not None:
            ready(_url(host, sock))
        server.run(sockets=[sock])


class FakeKling:
    """The fake Kling API on 127.0.0.1 (a free port), served from a background thread.

    >>> with FakeKling(done_after=0) as fake:          # doctest: +SKIP
    ...     KlingClient("hk-x", base_url=fake.base_url).submit("text2video", {"prompt": "x"})
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        processing_after: float = 0.0,
        done_after: float = 0.2,
        drift: Mapping[str, Fraction | str | int] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.state = FakeKlingState(
            api_key=api_key,
            processing_after=processing_after,
            done_after=done_after,
            drift=drift,
        )
        self.host, self.port = host, port
        self.base_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the fake server is already running")
        self._socket = listening_socket(self.host, self.port)
        self.base_url = _url(self.host, self._socket)
        self._server = uvicorn.Server(_config(create_app(self.state), self.host, self.port))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake Kling server did not start")
            time.sleep(0.001)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"FakeKling(base_url={self.base_url!r})"

    # --- what a test needs ------------------------------------------------------------

    def set_faults(self, *faults: Mapping[str, Any]) -> None:
        """Queue faults (see the module docstring) for the next matching requests."""
        self.state.add_faults(faults)

    def clear_faults(self) -> None:
        self.state.clear_faults()

    def configure(self, **settings: Any) -> None:
        """Change ``api_key``, ``processing_after``, ``done_after`` or ``drift`` while running."""
        self.state.configure(**settings)

    def reset(self) -> None:
        self.state.reset()

    def charged(self) -> Fraction:
        """The units charged so far: the sum over succeeded tasks."""
        return self.state.charged()

    def ledger(self) -> dict[str, Any]:
        return self.state.ledger()

    def requests(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """The requests received (control requests excluded), optionally filtered."""
        return [
            r
            for r in list(self.state.requests)
            if (method is None or r["method"] == method) and (path is None or path in r["path"])
        ]

    def hooks(self) -> list[dict[str, Any]]:
        """The callbacks delivered (``status``) or attempted (``error``)."""
        return list(self.state.hooks)
