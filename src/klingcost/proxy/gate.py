"""The budget guard on the wire: a create is authenticated, priced, held, forwarded, attached.

:func:`admit` checks the key, reads the body, prices it and holds it, with the same
:class:`~klingcost.guard_core.GuardCore` as ``GuardedClient`` (so the same pricing, idempotency and
sheet rules). Anything it refuses is answered in Kling's envelope and never forwarded; a refusal
of a known key is recorded in the ledger (:mod:`klingcost.refusals`). :func:`create` then
forwards the body and applies GuardedClient's outcome rules to the hold: attached when the
upstream accepted the task; voided after a definite refusal; counted as ``unknown`` when the
outcome is not known.
The upstream's answer goes back as it came (scrubbed of the API key), with three headers
saying what was held.

The body sent upstream is the client's, but for the callback fields: ``callback_url`` /
``notify_hook`` point at the proxy (the client's own URL is kept on the hold, and callbacks
are passed on to it once the proxy has settled from them, see :mod:`klingcost.proxy.traffic`).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from klingcost import errors
from klingcost._json import JSONInputError, loads
from klingcost.api.envelope import parse_task, read_envelope
from klingcost.guard_core import GuardCore, job_class
from klingcost.ledger import Hold
from klingcost.money import UNIT_EXPONENT, format_amount, format_minor, to_minor
from klingcost.pricing import Estimate
from klingcost.proxy import envelope as kling
from klingcost.proxy.accesslog import note
from klingcost.proxy.state import Proxy, external_key
from klingcost.refusals import record_refusal

if TYPE_CHECKING:
    from klingcost.keys import ApiKey

logger = logging.getLogger("klingcost.proxy")

#: The callback fields of a create: Kling's own, and openai-hk's name for it.
CALLBACK_FIELDS: Final = ("callback_url", "notify_hook")
#: Headers of an upstream answer passed on to the client (no cookies, no upstream internals).
PASSED_HEADERS: Final = ("content-type", "retry-after")


@dataclass(frozen=True, slots=True)
class Refused:
    """A request the proxy answers itself, in Kling's envelope; nothing was forwarded."""

    status: int
    code: int
    message: str
    reason: str
    key: ApiKey | None = None


@dataclass(frozen=True, slots=True)
class Admitted:
    """A create that is held and may be sent: ``content`` is the body to forward."""

    key: ApiKey
    core: GuardCore
    priced: Estimate
    hold: Hold
    content: bytes


def authenticated(proxy: Proxy, authorization: str | None) -> ApiKey | Refused:
    """The key the ``Authorization`` header names, or Kling's 401 refusal (codes 1000-1004)."""
    try:
        return proxy.authenticate(authorization)
    except errors.KeyRefused as exc:
        return Refused(exc.status, exc.code, str(exc), "auth")


def admit(proxy: Proxy, authorization: str | None, endpoint: str, raw: bytes) -> Admitted | Refused:
    """Authenticate, read, price and hold a create."""
    key = authenticated(proxy, authorization)
    if isinstance(key, Refused):
        return key
    try:
        body = loads(raw)
    except (JSONInputError, ValueError) as exc:  # JSONDecodeError is a ValueError
        why = str(exc) if isinstance(exc, JSONInputError) else f"not JSON ({exc})"
        return _refuse(proxy, key, 400, kling.MALFORMED, f"the request body is {why}")
    if not isinstance(body, dict):
        message = f"the request body is JSON but not an object (given {type(body).__name__})"
        return _refuse(proxy, key, 400, kling.MALFORMED, message)
    core = proxy.core(key.team)
    try:
        priced = core.estimate(endpoint, body)
    except errors.RequestValidationError as exc:
        return _refuse(proxy, key, 400, kling.INVALID, str(exc))
    except errors.UnpricedRequestError as exc:
        record_refusal(proxy.ledger, exc, team=key.team, key_id=key.id, source="proxy")
        return Refused(400, kling.INVALID, str(exc), "unpriced", key)
    external = body.get("external_task_id")
    hold_key = external_key(key.team, external) if isinstance(external, str) and external else None
    hold_key = hold_key or uuid.uuid4().hex
    outgoing, extra_meta = _callbacks(proxy, body, hold_key)
    options: dict[str, Any] = {"key_id": key.id, "source": "proxy"}
    if key.max_concurrent is not None:
        options["max_open_for_key"] = key.max_concurrent
    try:
        # The core records a refusal by a budget or by the key's limit itself.
        priced, hold, send = core.reserve(
            endpoint, outgoing, hold_key, extra_meta=extra_meta, **options
        )
    except errors.BudgetExceeded as exc:
        return Refused(429, kling.PACK_EXHAUSTED, str(exc), "budget", key)
    except errors.ConcurrencyExceeded as exc:
        return Refused(429, kling.CONCURRENCY, str(exc), "concurrency", key)
    except errors.BudgetCannotCount as exc:
        return Refused(403, kling.NO_PERMISSION, str(exc), "cannot_count", key)
    except errors.BudgetNotFound as exc:
        message = f"{exc}: the key's team has no budget, so nothing can be held for it"
        return _refuse(proxy, key, 403, kling.NO_PERMISSION, message, priced, "no_budget")
    except (errors.RequestValidationError, errors.HoldStateError) as exc:
        return _refuse(proxy, key, 400, kling.INVALID, str(exc), priced)
    if send is None:  # the same external_task_id, held before and not voided
        message = (
            f"external_task_id {external!r} was already used by team {key.team!r} "
            f"(hold {hold.id}, task {hold.task_id or 'not known yet'}): use a new one"
        )
        return _refuse(proxy, key, 400, kling.INVALID, message, priced)
    content = json.dumps(send, ensure_ascii=False, allow_nan=False).encode("utf-8")
    return Admitted(key, core, priced, hold, content)


def _callbacks(
    proxy: Proxy, body: dict[str, Any], hold_key: str
) -> tuple[dict[str, Any], dict[str, str | int | None]]:
    """The body with the proxy's callback URL in place of the client's, and the client's own
    URLs to keep on the hold (``client_callback_url``, ``client_notify_hook``)."""
    given = {f: body[f] for f in CALLBACK_FIELDS if isinstance(body.get(f), str) and body[f]}
    ours = proxy.callback_url(hold_key, quiet=not given)
    if ours is None:  # no public URL: callbacks go where the client said, unsettled by us
        return body, {}
    outgoing = dict(body)
    for name in given or (_default_field(proxy.upstream.base_url),):
        outgoing[name] = ours
    return outgoing, {f"client_{name}": url for name, url in given.items()}


def _default_field(base_url: str) -> str:
    """Kling's own API names the field ``callback_url``; openai-hk (and others) ``notify_hook``."""
    host = base_url.split("://", 1)[-1].split("/", 1)[0].lower()
    return "callback_url" if host.endswith("klingai.com") else "notify_hook"


def _refuse(
    proxy: Proxy,
    key: ApiKey,
    status: int,
    code: int,
    message: str,
    priced: Estimate | None = None,
    reason: str = "invalid",
) -> Refused:
    """A refusal of a body the guard cannot hold (``invalid``: not JSON, not valid, a reused
    external id; ``no_budget``), recorded in the ledger as the guard's refusals are. A ledger
    that cannot record it does not change the answer."""
    try:
        proxy.ledger.record_refusal(
            key.team,
            reason=reason,
            needed=None if priced is None else to_minor(priced.units, UNIT_EXPONENT),
            left=None,
            period=None,
            unit=None if priced is None else "units",
            job_class=_job_class(priced),
            key_id=key.id,
            source="proxy",
        )
    except errors.LedgerError as exc:
        logger.warning("a refusal of key %s was not recorded: %s", key.id, exc)
    return Refused(status, code, message, reason, key)


def _job_class(priced: Estimate | None) -> dict[str, str | int | None] | None:
    return None if priced is None else job_class(priced)


# --- the create ------------------------------------------------------------------------------


def held_headers(priced: Estimate, hold: Hold, team: str) -> dict[str, str]:
    """What was held, for the client: ``X-Klingcost-Estimate`` (``units=4; pack=video;
    cost=0.56; currency=credits``), ``X-Klingcost-Hold`` (its id), ``X-Klingcost-Team``."""
    cost = priced.cost
    estimate = (
        f"units={format_amount(priced.units)}; pack={priced.pack}; "
        f"cost={format_minor(cost.minor, cost.exponent)}; currency={cost.currency}"
    )
    return {
        "X-Klingcost-Estimate": estimate,
        "X-Klingcost-Hold": str(hold.id),
        "X-Klingcost-Team": header_text(team),
    }


def header_text(text: str) -> str:
    """``text`` as a header value: itself when printable ASCII, else percent-encoded UTF-8."""
    return text if text.isascii() and text.isprintable() else quote(text, safe="")


def refusal(request: Request, refused: Refused) -> Response:
    key = refused.key
    note(
        request,
        team=key.team if key else None,
        key_id=key.id if key else None,
        refusal=refused.reason,
    )
    return kling.kling_error(refused.status, refused.code, refused.message)


def upstream_failure(error: errors.KlingAPIError, what: str) -> Response:
    """The proxy's own answer when the upstream could not be reached or did not answer."""
    if isinstance(error, errors.ConnectError):
        return kling.kling_error(502, kling.UNAVAILABLE, f"{error}; {what}")
    return kling.kling_error(504, kling.TIMEOUT, f"{error}; {what}")


def passed_on(content: bytes, status: int, headers: Any, extra: dict[str, str]) -> Response:
    """The upstream's answer, as it came (but for hop and internal headers), with ``extra``."""
    kept = {name: headers[name] for name in PASSED_HEADERS if name in headers}
    kept.setdefault("content-type", "application/json")
    return Response(content, status, headers={**kept, **extra})


async def create(proxy: Proxy, request: Request, endpoint: str) -> Response:
    """``POST /v1/{endpoint}``: see the module docstring.

    The ledger is used on the event loop's thread, as :class:`~klingcost.guard.AsyncGuardedClient`
    does: each call is one short transaction (a millisecond), and nothing can cancel the
    request between its hold and its send, or between the answer and its attach. A hop to a
    worker thread cost more than the work itself (14 ms against 1 ms, measured on the 2-core
    test machine under load), and it would open those gaps.
    """
    raw = await request.body()
    authorization = request.headers.get("authorization")
    outcome = admit(proxy, authorization, endpoint, raw)
    if isinstance(outcome, Refused):
        return refusal(request, outcome)
    key, core, hold = outcome.key, outcome.core, outcome.hold
    extra = held_headers(outcome.priced, hold, key.team)
    note(
        request,
        team=key.team,
        key_id=key.id,
        hold_id=hold.id,
        estimate=extra["X-Klingcost-Estimate"],
    )
    redact = proxy.upstream.redact
    try:
        response = await proxy.upstream.send(
            "POST", f"/v1/{endpoint}", content=outcome.content, idempotent=False
        )
    except errors.KlingAPIError as exc:
        core.failed(hold, exc, redact)
        if isinstance(exc, errors.ConnectError):
            fate = f"nothing was sent, and hold {hold.id} was voided"
        else:
            fate = f"the task may exist: hold {hold.id} stays counted until it is settled"
        return upstream_failure(exc, f"the create's outcome: {fate}")
    except BaseException as exc:  # cancelled mid-send: the request may be out
        core.failed(hold, exc, redact)
        raise
    content = proxy.upstream.scrub_bytes(response.content)
    try:
        payload = read_envelope(
            response.status_code, content, location=response.headers.get("location")
        )
        task = parse_task(outcome.priced.request.endpoint, payload)
    except errors.KlingAPIError as exc:  # refused (voided) or unreadable (counted as unknown)
        core.failed(hold, exc, redact)
        return passed_on(content, response.status_code, response.headers, extra)
    try:
        core.accepted(hold, task, redact)
    except errors.TaskNotRecorded as exc:  # the task exists: its answer goes back all the same
        logger.error("%s", redact(str(exc)))
    return passed_on(content, response.status_code, response.headers, extra)


__all__ = ["Admitted", "Refused", "admit", "create", "held_headers"]
