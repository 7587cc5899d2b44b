"""``klingcost hooks serve``: settle tasks from Kling's ``notify_hook`` callbacks.

Kling POSTs the task object (``task_id``, ``task_status``, ``task_result``,
``final_unit_deduction`` ...) to the URL given as ``notify_hook`` whenever the task changes
state. This small ASGI app receives them on a secret path, ``/hooks/<secret>``, so that only
someone who knows the URL the guard handed to Kling can post to it.

As Kling advises, a callback is a hint, not the truth: when the app has an API client it
queries the task before acting on it. It settles exactly as ``sync`` does (the same
:func:`klingcost.settlement.resolve`), idempotently, and ignores tasks it has no hold for.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator, Mapping
from typing import Any

from anyio import to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from klingcost import errors
from klingcost._json import JSONInputError, loads
from klingcost._protocol import Task, parse_task
from klingcost.client import AsyncKlingClient
from klingcost.ledger import Hold, Ledger
from klingcost.money import MAX_DIGITS
from klingcost.request import normalize_endpoint
from klingcost.settlement import resolve

#: The shortest secret path accepted: shorter ones would be guessable.
MIN_SECRET_LENGTH = 16


def create_app(
    ledger: Ledger,
    secret: str,
    *,
    client: AsyncKlingClient | None = None,
    close_client: bool = False,
) -> Starlette:
    """The callback app. ``client``, when given, confirms each callback with a task query.

    A callback for a task no hold knows by its id is matched by ``task_info.external_task_id``
    to an open hold whose create answer was lost (sent with ``external_ids``), and settles it.
    ``close_client`` closes ``client`` when the app shuts down (its lifespan).
    """
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"the hook secret must be at least {MIN_SECRET_LENGTH} characters")
    # compare_digest takes str only when it is ASCII (TypeError otherwise, a 500 for any
    # path with an "é"), so compare bytes; surrogatepass encodes every str, one to one.
    expected = secret.encode("utf-8", "surrogatepass")

    async def receive(request: Request) -> JSONResponse:
        given = request.path_params["secret"].encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(given, expected):
            return JSONResponse({"error": "not found"}, status_code=404)
        try:
            # Read as the client reads answers (numbers exact), bounded: a hostile body is a
            # 400, never a 500.
            payload: Any = loads(
                await request.body(), decimals=True, max_digits=MAX_DIGITS, valid_text=True
            )
        except JSONInputError as exc:
            return JSONResponse({"error": f"the body is not JSON klingcost reads: {exc}"}, 400)
        except ValueError:  # JSONDecodeError
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        data = payload.get("data", payload) if isinstance(payload, dict) else None
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if (
            not isinstance(data, dict)
            or not isinstance(task_id, str | int)
            or isinstance(task_id, bool)
        ):
            return JSONResponse({"error": "no task_id in the callback"}, status_code=400)
        external = _external_id(data)
        # Ledger work in a worker thread: the server keeps answering while a write waits.
        hold = await to_thread.run_sync(
            lambda: ledger.hold_for_task(str(task_id)) or _lost_hold(ledger, external)
        )
        endpoint = hold.meta.get("endpoint") if hold is not None else None
        if hold is None or not isinstance(endpoint, str):
            return JSONResponse({"status": "ignored", "reason": "unknown task"})
        try:
            task: Task = (
                await client.get_task(endpoint, str(task_id))
                if client is not None
                else parse_task(normalize_endpoint(endpoint), {}, data=data)
            )
        except errors.KlingAPIError as exc:
            if client is None:  # the callback's own body is not a task
                return JSONResponse({"error": f"not a task: {exc}"}, status_code=400)
            # Kling retries a callback that fails; sync settles it later in any case.
            return JSONResponse({"error": f"could not confirm the task: {exc}"}, status_code=502)
        if hold.task_id is None and task.external_task_id not in (None, external):
            return JSONResponse({"status": "ignored", "reason": "external_task_id differs"})
        try:
            resolution = await to_thread.run_sync(resolve, ledger, hold, task)
        except errors.HoldStateError as exc:  # e.g. a hold voided by hand, then charged
            return JSONResponse({"error": str(exc), "hold": hold.id}, status_code=409)
        return JSONResponse(
            {"status": resolution.action, "hold": resolution.hold.id, "note": resolution.note}
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if client is not None and close_client:
            await client.aclose()

    return Starlette(
        routes=[
            Route("/hooks/{secret}", receive, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def _external_id(data: Mapping[str, Any]) -> str | None:
    info = data.get("task_info")
    external = info.get("external_task_id") if isinstance(info, Mapping) else None
    return external if isinstance(external, str) and external else None


def _lost_hold(ledger: Ledger, external: str | None) -> Hold | None:
    """An open hold without a task (its create answer was lost) sent as ``external``."""
    if external is None:
        return None
    hold = ledger.hold_for_key(external)
    if hold is None or not hold.is_open or hold.task_id is not None:
        return None
    return hold if hold.meta.get("external_task_id") == external else None
