"""Settled by the traffic itself: task queries, list queries, callbacks, and a background pass.

* A **task query** is answered only for the key's own team (another team's task, or a task the
  proxy never held, is Kling's 404 / 1203, and nothing is forwarded). The upstream's answer is
  passed on as it came, and applied to the hold on the way: :func:`klingcost.settlement.resolve`,
  the one rule book of ``sync``, ``hooks serve`` and ``GuardedClient.wait`` (idempotent).
* A **list query** is forwarded, and its ``data`` is filtered to the team's own tasks (each of
  them settled as a single query would be). Every number of the answer keeps its exact text.
* A **callback** comes to ``/_klingcost/callback/{hold key}/{signature}``: the signature, made
  with the server's secret for that hold only, proves the URL came from this proxy. A callback
  saying the task ended is confirmed with a query before an open hold moves, as ``hooks
  serve`` does; one saying it is on its way, or about a hold already closed, moves nothing and
  costs no query. Each is then passed on to the client's own URL(s), with bounded retries, in
  the background. A hold whose client gave no URL has its callback URL signed as "quiet": its
  callbacks on the way are answered from the signature alone, without reading the ledger.
* The **background pass** is ``klingcost sync`` (:func:`klingcost.sync.sync_holds`) every
  ``settle_interval`` seconds, for tasks nobody polls, made by one worker of all those (and all
  hosts) sharing the ledger: whichever takes the turn (:mod:`klingcost.ledger.turns`). Each pass
  queries every open hold's task upstream; N workers each making it would multiply that by N.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import secrets
import socket
from datetime import timedelta
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote

import anyio
import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from klingcost import errors
from klingcost._json import JSONInputError, loads
from klingcost.api.envelope import Task, answer_for, parse_task, read_envelope
from klingcost.hooks import _mismatch  # the one rule: which task is a hold's own
from klingcost.ledger import Hold
from klingcost.money import MAX_DIGITS
from klingcost.polling import PollPolicy
from klingcost.proxy import envelope as kling
from klingcost.proxy.accesslog import note
from klingcost.proxy.gate import (
    Refused,
    authenticated,
    header_text,
    passed_on,
    refusal,
    upstream_failure,
)
from klingcost.proxy.state import Proxy
from klingcost.request import Endpoint
from klingcost.settlement import resolve
from klingcost.sync import SyncReport, sync_holds

logger = logging.getLogger("klingcost.proxy")

#: How long a callback waits for its hold's task id (the create's answer may still be on its
#: way to the ledger when the upstream's first callback arrives).
ATTACH_WAIT: Final = 2.0
#: Seconds before the n-th retry of a callback delivery to a client: 0.5, 1, 2 ...
FORWARD_BACKOFF: Final = 0.5


def _not_found(request: Request, ref: str) -> Response:
    note(request, refusal="not_found")
    return kling.kling_error(404, kling.NOT_FOUND, f"task not found: {ref}")


async def query(proxy: Proxy, request: Request, endpoint: Endpoint, ref: str) -> Response:
    """``GET /v1/{endpoint}/{task id or external id}``, for the key's team only."""
    key = authenticated(proxy, request.headers.get("authorization"))
    if isinstance(key, Refused):
        return refusal(request, key)
    who = key.team
    note(request, team=who, key_id=key.id)
    hold = proxy.hold_for(who, ref)
    if hold is None or hold.endpoint != endpoint:
        return _not_found(request, ref)
    note(request, hold_id=hold.id)
    try:
        response = await proxy.upstream.send(
            "GET", f"/v1/{endpoint}/{quote(ref, safe='')}", idempotent=True
        )
    except errors.KlingAPIError as exc:
        return upstream_failure(exc, "the task query was not answered")
    content = proxy.upstream.scrub_bytes(response.content)
    try:
        payload = read_envelope(response.status_code, content)
        task = answer_for(parse_task(endpoint, payload), ref)
    except errors.KlingAPIError:
        pass  # passed on as it came; the hold waits for a readable answer
    else:
        _settle(proxy, hold, task)
    headers = {"X-Klingcost-Hold": str(hold.id), "X-Klingcost-Team": header_text(who)}
    return passed_on(content, response.status_code, response.headers, headers)


def _settle(proxy: Proxy, hold: Hold, task: Task) -> None:
    """Apply ``task`` to ``hold`` (once: resolve is idempotent); never fails the answer."""
    if _mismatch(hold, task) is not None:
        return
    try:
        resolve(proxy.ledger, hold, task)
    except errors.KlingcostError as exc:  # a hold voided by hand, then charged; a ledger down
        logger.warning("hold %s not settled from the answer: %s", hold.id, exc)


async def list_tasks(proxy: Proxy, request: Request, endpoint: Endpoint) -> Response:
    """``GET /v1/{endpoint}?pageNum=..&pageSize=..``: the page, holding the team's tasks only."""
    authorization = request.headers.get("authorization")
    key = authenticated(proxy, authorization)
    if isinstance(key, Refused):
        return refusal(request, key)
    note(request, team=key.team, key_id=key.id)
    try:
        response = await proxy.upstream.send(
            "GET", f"/v1/{endpoint}", params=request.query_params.multi_items(), idempotent=True
        )
    except errors.KlingAPIError as exc:
        return upstream_failure(exc, "the list query was not answered")
    content = proxy.upstream.scrub_bytes(response.content)
    team_header = {"X-Klingcost-Team": header_text(key.team)}
    try:
        read_envelope(response.status_code, content)
        # Exact numbers: each keeps its text through the filter (see _Number).
        payload = json.loads(content, parse_float=_Number, parse_int=_Number)
    except (errors.KlingAPIError, ValueError):
        return passed_on(content, response.status_code, response.headers, team_header)
    items = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        return passed_on(content, response.status_code, response.headers, team_header)
    exact = json.loads(content, parse_float=Decimal)  # what parse_task reads, as the client does
    team = key.team

    def owned() -> list[tuple[int, Hold]]:
        found = []
        for index, item in enumerate(items):
            task_id = item.get("task_id") if isinstance(item, dict) else None
            if isinstance(task_id, _Number):
                task_id = task_id.text
            if isinstance(task_id, str) and task_id:
                hold = proxy.ledger.hold_for_task(task_id)
                if hold is not None and hold.team == team:
                    found.append((index, hold))
        return found

    mine = owned()
    for index, hold in mine:
        try:
            task = parse_task(endpoint, exact, data=exact["data"][index])
        except errors.KlingAPIError:
            continue
        if hold.is_open:
            _settle(proxy, hold, task)
    payload["data"] = [items[index] for index, _ in mine]
    return passed_on(_dumps(payload), response.status_code, response.headers, team_header)


class _Number:
    """A JSON number as its text: written back exactly as it came."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _dumps(value: Any) -> bytes:
    """``value`` as JSON, each :class:`_Number` written as its original text."""
    numbers: list[str] = []
    nonce = secrets.token_hex(4)  # no string of the answer can look like a marker

    def mark(number: Any) -> str:
        if not isinstance(number, _Number):
            raise TypeError(f"not JSON: {type(number).__name__}")
        numbers.append(number.text)
        return f"\x00{nonce}{len(numbers) - 1}\x00"

    text = json.dumps(value, ensure_ascii=False, default=mark)
    for index, number in enumerate(numbers):
        text = text.replace(f'"\\u0000{nonce}{index}\\u0000"', number, 1)
    return text.encode("utf-8")


# --- callbacks --------------------------------------------------------------------------------


async def callback(proxy: Proxy, request: Request) -> Response:
    """A callback from the upstream, on the URL the proxy put in the hold's create."""
    hold_key = request.path_params["key"]
    signed = proxy.signed(hold_key, request.path_params["signature"])
    if signed is None:
        return kling.kling_error(404, kling.NO_ROUTE, "no such callback")
    try:
        payload: Any = loads(
            await request.body(), decimals=True, max_digits=MAX_DIGITS, valid_text=True
        )
    except (JSONInputError, ValueError):
        return kling.kling_error(400, kling.MALFORMED, "the callback body is not JSON")
    data = payload.get("data", payload) if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        return kling.kling_error(400, kling.MALFORMED, "the callback is not a task object")
    task_id = data.get("task_id")
    if isinstance(task_id, bool) or not isinstance(task_id, str | int) or task_id == "":
        return kling.kling_error(400, kling.MALFORMED, "no task_id in the callback")
    final = data.get("task_status") in ("succeed", "failed")
    if signed == "quiet" and not final:  # no client URL to pass it to, nothing to move
        return JSONResponse({"status": "ignored", "reason": "a state on the way"})
    hold = proxy.ledger.hold_for_key(hold_key)
    if hold is None:
        return JSONResponse({"status": "ignored", "reason": "unknown hold"})
    note(request, team=hold.team, hold_id=hold.id)
    action = "passed on" if hold.is_open else "unchanged"
    if final and hold.is_open:
        # An end moves an open hold: the task as the API reports it decides (the callback is
        # a hint), once the create's answer has attached the task id. A hold already closed
        # (by a poll) is not asked about again: resolve would change nothing.
        hold = await _attached(proxy, hold)
        endpoint = hold.endpoint
        if endpoint is None:
            return JSONResponse({"status": "ignored", "reason": "no endpoint on the hold"})
        try:
            task = await proxy.upstream.client.get_task(endpoint, str(task_id))
        except errors.KlingAPIError as exc:  # the upstream retries a failed callback
            message = f"could not confirm the task: {type(exc).__name__}"
            return kling.kling_error(502, kling.UNAVAILABLE, message)
        if (why := _mismatch(hold, task)) is not None:
            return JSONResponse({"status": "ignored", "reason": why})
        try:
            action = resolve(proxy.ledger, hold, task).action
        except errors.HoldStateError as exc:
            return JSONResponse({"error": str(exc), "hold": hold.id}, status_code=409)
    elif hold.task_id is not None and hold.task_id != str(task_id):
        # A state on the way (submitted, processing) moves nothing: it is only passed on,
        # unconfirmed (it costs no query), if it names the hold's own task.
        return JSONResponse({"status": "ignored", "reason": "the task is not the hold's"})
    body = proxy.upstream.scrub_bytes(await request.body())
    for url in _client_urls(hold):
        delivery = asyncio.create_task(_forward(proxy, url, body))
        proxy.deliveries.add(delivery)
        delivery.add_done_callback(proxy.deliveries.discard)
    return JSONResponse({"status": action, "hold": hold.id})


async def _attached(proxy: Proxy, hold: Hold) -> Hold:
    """``hold``, once its task id is attached (the create's answer may still be on its way
    to the ledger when the upstream's callback comes): waited for :data:`ATTACH_WAIT` at most."""
    deadline = anyio.current_time() + ATTACH_WAIT
    while hold.task_id is None and hold.is_open and anyio.current_time() < deadline:
        await anyio.sleep(0.02)
        hold = proxy.ledger.get_hold(hold.id)
    return hold  # still without a task id: _mismatch judges it by its external id


def _client_urls(hold: Hold) -> list[str]:
    urls = [hold.meta.get(f"client_{name}") for name in ("callback_url", "notify_hook")]
    return list(dict.fromkeys(u for u in urls if isinstance(u, str) and u))


async def _forward(proxy: Proxy, url: str, body: bytes) -> None:
    """POST a callback to the client's own URL: up to ``forward_retries`` attempts, backing
    off; a 2xx-4xx answer ends it (4xx: the client refused it; asking again changes nothing).
    Sent with no header of the upstream's: the client's URL never sees the API key."""
    client = proxy.hook_client
    if client is None:
        return
    attempts = max(1, proxy.settings.forward_retries)
    for attempt in range(attempts):
        try:
            response = await client.post(
                url, content=body, headers={"Content-Type": "application/json"}
            )
            if response.status_code < 500 and response.status_code != 429:
                return
            why = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            why = type(exc).__name__
        if attempt + 1 < attempts:
            await asyncio.sleep(FORWARD_BACKOFF * 2**attempt)
    logger.warning(
        "a callback was not delivered to the client after %d attempts (%s)", attempts, why
    )


# --- the background pass -----------------------------------------------------------------------


#: The background pass's turn in the ledger, shared by every worker and host.
SETTLE_TURN: Final = "proxy.settle"


async def settle_loop(proxy: Proxy, interval: float) -> None:
    """A pass every ``interval`` seconds, by whichever worker takes the turn, until cancelled.

    Each worker asks for the turn four times an interval (with jitter): the pass comes at most
    a quarter interval late, and the ask is one short ledger write."""
    policy = PollPolicy(interval / 4, math.inf, jitter=0.2)  # the one poll policy, no deadline
    holder = f"{socket.gethostname()}:{os.getpid()}"
    await anyio.sleep(policy.phase(random.random()))  # a phase, not a secret
    while True:
        try:
            await settle_turn(proxy, holder, interval)
        except Exception as exc:  # the next turn tries again
            logger.warning("settlement pass failed: %s", proxy.upstream.redact(str(exc)))
        await anyio.sleep(policy.delay(random.random()))


async def settle_turn(proxy: Proxy, holder: str, interval: float) -> SyncReport | None:
    """``sync`` once, if the turn is ``holder``'s (None: another process had it within
    ``interval`` seconds)."""
    if not proxy.ledger.take_turn(SETTLE_TURN, holder, timedelta(seconds=interval)):
        return None
    report = await sync_holds(proxy.ledger, proxy.upstream.client, concurrency=4)
    if report.examined:
        logger.info(
            "settlement pass: %d settled, %d voided, %d pending, %d unresolved",
            report.settled,
            report.voided,
            report.pending,
            len(report.unresolved),
        )
    return report


__all__ = ["SETTLE_TURN", "callback", "list_tasks", "query", "settle_loop", "settle_turn"]
