"""``hooks serve`` logs each callback it receives: one line a callback, on stdout, saying when,
which task, what became of its hold, and the HTTP status answered. The secret path is never
printed (it is the only thing that lets a callback in)."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

from klingcost._json import loads

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The most of an answer kept for its log line (answers of the hooks app are a few fields).
_KEEP = 4096


def logged(app: ASGIApp) -> ASGIApp:
    """``app`` with a log line for each POST to ``/hooks/...`` once it has been answered."""

    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or not str(scope.get("path", "")).startswith("/hooks/"):
            await app(scope, receive, send)
            return
        status = 0
        body = bytearray()
        asked = bytearray()

        async def read() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(asked) < _KEEP * 16:
                asked.extend(message.get("body", b"")[: _KEEP * 16 - len(asked)])
            return message

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and len(body) < _KEEP:
                body.extend(message.get("body", b"")[: _KEEP - len(body)])
            await send(message)

        try:
            await app(scope, read, capture)
        finally:
            print(_line(status, bytes(body), _task_id(bytes(asked))), file=sys.stdout, flush=True)

    return wrapper


def _task_id(request: bytes) -> str | None:
    """The task a callback is about, if its body names one (it is checked by the app)."""
    try:  # bounded, as the app reads it: a hostile body must not break the log line
        payload = loads(request)
    except (ValueError, RecursionError):  # JSONInputError is a ValueError
        return None
    data = payload.get("data", payload) if isinstance(payload, dict) else None
    task = data.get("task_id") if isinstance(data, dict) else None
    if not isinstance(task, str | int):
        return None
    # A lone surrogate in a task id cannot be written to a UTF-8 terminal: escape it.
    return str(task)[:80].encode("utf-8", "backslashreplace").decode("utf-8")


def _line(status: int, body: bytes, task: str | None) -> str:
    at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    try:
        answer = loads(body) if body else {}
    except (ValueError, RecursionError):
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    if status == 404:  # a wrong secret: nothing about it is worth more than that
        return f"{at} callback refused: wrong path (404)"
    parts = [f"{at} callback {status}" + (f" task {task}:" if task else ":")]
    if "status" in answer:
        parts.append(str(answer["status"]))
    if "hold" in answer:
        parts.append(f"hold {answer['hold']}")
    for field in ("note", "reason", "error"):
        if answer.get(field):
            parts.append(f"- {answer[field]}")
    return " ".join(parts)
