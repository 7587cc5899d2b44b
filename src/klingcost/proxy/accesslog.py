"""The proxy's access log: one JSON line per request, for operators.

Each line says what an operator needs to answer "who spent what, and was anything refused"::

    {"ts": "2026-12-03T15:01:02.345Z", "method": "POST", "route": "/v1/videos/text2video",
     "status": 200, "ms": 4.1, "team": "film", "key_id": "k_7f3a", "hold_id": 12,
     "estimate": "3.5", "refusal": null}

and never a secret: no key, no Authorization header, no query string, no path beyond its route
template (a callback path carries a secret; a task path is logged as ``.../{task_id}``), and no
prompt unless the server runs with ``--log-prompts``.

What the middleware cannot see on the wire (which key, which hold, why a request was refused) the
proxy's handlers tell it through :func:`note`, which writes into the request's state (the same
dict as Starlette's ``request.state``). The team, hold and estimate also come from the answer's
``X-Klingcost-*`` headers, so a handler that only sets those is logged as well.

:class:`AccessLog` is pure ASGI (no Starlette ``BaseHTTPMiddleware``, which would copy the body
through a task group): it wraps ``send`` to read the status and headers, and costs a few
microseconds a request. Whoever else needs the same facts (the Prometheus counters) registers a
listener instead of wrapping the app again.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from klingcost.proxy.labels import route_of

logger = logging.getLogger("klingcost.proxy.access")

#: The key under ``scope["state"]`` (``request.state``) where :func:`note` keeps its facts.
STATE_KEY: Final = "klingcost"
#: Prompt fields logged with ``--log-prompts``, cut to this many characters each.
PROMPT_FIELDS: Final = ("prompt", "negative_prompt")
PROMPT_CHARS: Final = 500
_HEADERS: Final = {
    b"x-klingcost-team": "team",
    b"x-klingcost-hold": "hold_id",
    b"x-klingcost-estimate": "estimate",
}


@dataclass(slots=True)
class RequestFacts:
    """What one request did, as the access log line and the metrics report it."""

    method: str = ""
    route: str = "other"
    status: int = 0
    ms: float = 0.0
    team: str | None = None
    key_id: str | None = None
    hold_id: int | str | None = None
    estimate: str | None = None
    refusal: str | None = None
    prompts: dict[str, str] = field(default_factory=dict)


_FIELDS: Final = tuple(f.name for f in fields(RequestFacts))


def note(
    request: Any,
    *,
    team: str | None = None,
    key_id: str | None = None,
    hold_id: int | str | None = None,
    estimate: str | None = None,
    refusal: str | None = None,
) -> None:
    """Tell the access log (and the metrics) what this request did; unset arguments stay.

    ``request`` is a Starlette ``Request`` or an ASGI scope. ``refusal`` is a short reason
    (``budget``, ``concurrency``, ``unpriced``, ``invalid``, ``auth``, ``not_found``...): it
    becomes the ``reason`` label of ``klingcost_proxy_refusals_total``, so keep it to a few
    fixed words, never a message with values in it.
    """
    scope: Any = getattr(request, "scope", request)
    facts = scope.setdefault("state", {}).get(STATE_KEY)
    if facts is None:  # a request the middleware did not see (a unit test's own scope)
        facts = scope["state"][STATE_KEY] = RequestFacts()
    if team is not None:
        facts.team = team
    if key_id is not None:
        facts.key_id = key_id
    if hold_id is not None:
        facts.hold_id = hold_id
    if estimate is not None:
        facts.estimate = estimate
    if refusal is not None:
        facts.refusal = refusal


Listener = Callable[[RequestFacts], None]


class AccessLog:
    """ASGI middleware: one JSON line per HTTP request on :data:`logger`, and the listeners.

    ``log_prompts`` adds the request's ``prompt`` and ``negative_prompt`` (cut to
    :data:`PROMPT_CHARS`); without it the body is never looked at. ``enabled=False`` keeps the
    listeners (metrics) and writes no line.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        log_prompts: bool = False,
        enabled: bool = True,
        listeners: tuple[Listener, ...] = (),
    ) -> None:
        self.app = app
        self.log_prompts = log_prompts
        self.enabled = enabled
        self.listeners = listeners

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        facts = RequestFacts(method=scope["method"], route=route_of(scope["path"]))
        scope.setdefault("state", {})[STATE_KEY] = facts

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                facts.status = message["status"]
                for name, value in message.get("headers", ()):
                    attribute = _HEADERS.get(name.lower())
                    if attribute is not None and getattr(facts, attribute) is None:
                        setattr(facts, attribute, value.decode("latin-1"))
            await send(message)

        if self.log_prompts:
            receive = _peeking(receive, facts)
        try:
            await self.app(scope, receive, sending)
        finally:
            if facts.status == 0:  # the app raised before answering: the server answers 500
                facts.status = 500
            facts.ms = round((time.perf_counter() - start) * 1000, 3)
            for listener in self.listeners:
                listener(facts)
            if self.enabled and logger.isEnabledFor(logging.INFO):
                logger.info(line(facts))


def line(facts: RequestFacts) -> str:
    """The JSON access-log line of ``facts`` (prompts only when they were collected)."""
    # Not dataclasses.asdict: its deep copy cost 25 µs a request, 20 times this.
    record: dict[str, Any] = {"ts": _now()} | {name: getattr(facts, name) for name in _FIELDS}
    if not record["prompts"]:
        del record["prompts"]
    if isinstance(record["hold_id"], str) and record["hold_id"].isdigit():
        record["hold_id"] = int(record["hold_id"])
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _peeking(receive: Receive, facts: RequestFacts) -> Receive:
    """``receive``, reading the prompts out of the body on the way (``--log-prompts`` only)."""
    chunks: list[bytes] = []

    async def peek() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                facts.prompts = _prompts(b"".join(chunks))
        return message

    return peek


def _prompts(body: bytes) -> dict[str, str]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, Mapping):
        return {}
    return {
        name: data[name][:PROMPT_CHARS]
        for name in PROMPT_FIELDS
        if isinstance(data.get(name), str) and data[name]
    }


def configure(stream: TextIO | None = None, *, enabled: bool = True) -> logging.Handler | None:
    """Send :data:`logger`'s lines, as they are (one JSON object a line), to ``stream``.

    The server's own log level (uvicorn's, often ``warning``) does not hide them: the access
    log has its own handler and does not propagate. Call it once per process (each worker).
    Returns the handler added (None when ``enabled`` is False, which silences the log).
    """
    for old in list(logger.handlers):
        if getattr(old, "_klingcost_access", False):
            logger.removeHandler(old)
    logger.propagate = False
    if not enabled:
        logger.setLevel(logging.CRITICAL + 1)
        return None
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._klingcost_access = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


__all__ = ["STATE_KEY", "AccessLog", "RequestFacts", "configure", "line", "note"]
