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

import hmac
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from klingcost import errors
from klingcost._protocol import Task, parse_task
from klingcost.client import AsyncKlingClient
from klingcost.ledger import Ledger
from klingcost.request import normalize_endpoint
from klingcost.settlement import resolve


def create_app(ledger: Ledger, secret: str, *, client: AsyncKlingClient | None = None) -> Starlette:
    """The callback app. ``client``, when given, confirms each callback with a task query."""
    if len(secret) < 16:
        raise ValueError("the hook secret must be at least 16 characters")

    async def receive(request: Request) -> JSONResponse:
        if not hmac.compare_digest(request.path_params["secret"], secret):
            return JSONResponse({"error": "not found"}, status_code=404)
        try:
            payload: Any = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        data = payload.get("data", payload) if isinstance(payload, dict) else None
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if not isinstance(task_id, str | int) or isinstance(task_id, bool):
            return JSONResponse({"error": "no task_id in the callback"}, status_code=400)
        hold = ledger.hold_for_task(str(task_id))
        if hold is None:
            return JSONResponse({"status": "ignored", "reason": "unknown task"})
        endpoint = normalize_endpoint(str(hold.meta.get("endpoint") or ""))
        try:
            task: Task = (
                await client.get_task(endpoint, str(task_id))
                if client is not None
                else parse_task(endpoint, {}, data=data)
            )
        except errors.KlingAPIError as exc:
            # Kling retries a callback that fails; sync settles it later in any case.
            return JSONResponse({"error": f"could not confirm the task: {exc}"}, status_code=502)
        resolution = resolve(ledger, hold, task)
        return JSONResponse(
            {"status": resolution.action, "hold": resolution.hold.id, "note": resolution.note}
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/hooks/{secret}", receive, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
