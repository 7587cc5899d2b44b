"""Alerts that arrive: the ledger's outbox delivered to webhooks, Slack, Feishu and DingTalk.

The ledger writes an outbox row for each alert event and matching rule in the event's own
transaction (:mod:`klingcost.ledger.outbox`). This module sends them::

    report = deliver_due(ledger)      # what is due now; never raises for a failed webhook
    report.delivered, report.retrying, report.gave_up

**At least once.** A row is leased (:data:`LEASE`) before it is sent and marked delivered only
after a 2xx answer (and, for Feishu and DingTalk, a body whose code says success). A process
that dies between the two leaves the row due again when the lease ends, so a receiver may see
an alert twice: every message carries the same ``idempotency_key`` on each attempt (in the
JSON body of a generic webhook, and in an ``Idempotency-Key`` header for all), to drop repeats.

**Retries.** A failed attempt (a network error, a timeout, a non-2xx answer, or Feishu's and
DingTalk's error codes) is tried again after :func:`backoff`: 10 s, 20 s, 40 s ... doubling to
at most an hour, measured on the ledger's clock; after :data:`MAX_ATTEMPTS` attempts the row is
given up (``klingcost alerts list`` shows it, with its last error).

**Never in a submission's way.** After a transaction that enqueued alerts commits, the
ledger calls :func:`klingcost.ledger.outbox.kick`: a daemon thread delivers while the caller goes on
(at most one per ledger object; a kick while it runs makes it go round once more).
``Ledger.close`` waits for it at most ``outbox.CLOSE_WAIT`` seconds, so that a short-lived
command's alert usually leaves with it; ``klingcost sync``, ``klingcost alerts deliver`` and
the proxy's loop deliver whatever is left.

A webhook URL is a secret: nothing here logs, returns or raises it; errors name the rule and
its masked URL (:func:`klingcost.ledger.outbox.mask_url`).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import httpx

from klingcost.errors import BudgetNotFound, LedgerError
from klingcost.ledger.outbox import (
    ALERT_KINDS,
    CHANNELS,
    EVENT_KINDS,
    REFUSAL_WINDOW,
    AlertRule,
    PendingAlert,
    check_url,
    mask_url,
)

if TYPE_CHECKING:
    from klingcost.ledger import Ledger

logger = logging.getLogger("klingcost.alerts")

#: How many attempts an alert gets before it is given up.
MAX_ATTEMPTS: Final = 10
BACKOFF_BASE: Final = timedelta(seconds=10)
BACKOFF_CAP: Final = timedelta(hours=1)
#: How long a deliverer holds the rows it claimed before another may take them.
LEASE: Final = timedelta(seconds=60)
#: Seconds a webhook has to answer.
TIMEOUT: Final = 5.0
_SUCCESS_CODES: Final = {"feishu": ("code", "StatusCode"), "dingtalk": ("errcode",)}


def backoff(attempts: int) -> timedelta:
    """How long after its ``attempts``-th failed attempt an alert is tried again."""
    delay: timedelta = BACKOFF_BASE * 2 ** max(0, attempts - 1)
    return min(delay, BACKOFF_CAP)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt at sending one alert (or a test message)."""

    rule_id: int
    channel: str
    url: str  #: masked
    ok: bool
    status: int | None
    error: str | None
    outbox_id: int | None = None
    event_id: int | None = None
    #: When it is tried again (None: delivered, given up, or a test).
    next_attempt_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "outbox_id": self.outbox_id,
            "event_id": self.event_id,
            "rule": self.rule_id,
            "channel": self.channel,
            "url": self.url,
            "ok": self.ok,
            "status": self.status,
            "error": self.error,
            "next_attempt_at": None
            if self.next_attempt_at is None
            else self.next_attempt_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one :func:`deliver_due` pass did."""

    attempts: tuple[Attempt, ...] = ()
    #: Budgets that got a forecast warning in this pass.
    forecasts: tuple[str, ...] = field(default=())

    @property
    def delivered(self) -> int:
        return sum(a.ok for a in self.attempts)

    @property
    def retrying(self) -> int:
        return sum(not a.ok and a.next_attempt_at is not None for a in self.attempts)

    @property
    def gave_up(self) -> int:
        return sum(not a.ok and a.next_attempt_at is None for a in self.attempts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "retrying": self.retrying,
            "gave_up": self.gave_up,
            "forecast_warnings": list(self.forecasts),
            "attempts": [a.to_dict() for a in self.attempts],
        }

    def describe(self) -> str:
        return (
            f"alerts: {self.delivered} delivered, {self.retrying} to retry, {self.gave_up} given up"
        )


# --- messages -------------------------------------------------------------------------------


def _amount(ledger: Ledger, team: str | None, minor: object) -> str:
    """An amount of ``team``'s budget in major units with its unit, or as stored."""
    if not isinstance(minor, int) or team is None:
        return str(minor)
    try:
        budget = ledger.get_budget(team)
    except (BudgetNotFound, LedgerError):
        return str(minor)
    return f"{budget.format(minor)} {budget.unit_label}"


def message_text(ledger: Ledger, alert: PendingAlert) -> str:
    """The alert in one or two sentences, for a person (starts with "klingcost", the keyword
    a Feishu or DingTalk bot's keyword filter can be set to)."""
    d, team = alert.data, alert.team
    if alert.kind == "soft":
        what = (
            f"budget {team} passed its soft threshold: {_amount(ledger, team, d.get('used'))}"
            f" used of {_amount(ledger, team, d.get('limit'))} in {d.get('period_key')}"
        )
    elif alert.kind == "over":
        what = (
            f"budget {team} was charged past its limit: {_amount(ledger, team, d.get('used'))}"
            f" used of {_amount(ledger, team, d.get('limit'))} in {d.get('period_key')}"
        )
    elif alert.kind == "refused":
        budget = d.get("budget") or team
        what = f"submissions of team {team} are being refused ({d.get('reason', 'refused')})"
        if d.get("budget"):
            what += f" by budget {budget}"
        if d.get("needed") is not None:
            unit = f" {d['unit']}" if d.get("unit") else ""
            what += f": needed {d['needed']}{unit}, {d.get('left')} left"
            what += f" in {d['period']}" if d.get("period") else ""
        minutes = int(REFUSAL_WINDOW.total_seconds() // 60)
        what += f" (further refusals in the next {minutes} minutes are not alerted again)"
    elif alert.kind == "forecast":
        what = (
            f"budget {team} will run out on {d.get('runs_out_on')} at {d.get('rate_per_day')}"
            f" {d.get('unit', '')}/day, before its period {d.get('period_key')} ends"
            f" {d.get('period_ends_on')} ({d.get('available')} left)"
        )
    else:
        what = f"{alert.event_kind} for {team}"
    return f"klingcost alert: {what}. [event {alert.event_id} at {alert.event_at.isoformat()}]"


def payload(
    channel: str, text: str, *, key: str, event: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON body ``channel`` takes: a generic webhook gets the event itself; Slack an
    incoming-webhook ``text``; Feishu a ``msg_type: text`` message; DingTalk ``msgtype: text``."""
    if channel == "slack":
        return {"text": text}
    if channel == "feishu":
        return {"msg_type": "text", "content": {"text": text}}
    if channel == "dingtalk":
        return {"msgtype": "text", "text": {"content": text}}
    if channel == "webhook":
        return {"source": "klingcost", "idempotency_key": key, "text": text, **(event or {})}
    raise ValueError(f"channel must be one of {', '.join(CHANNELS)} (given {channel!r})")


def _event_body(alert: PendingAlert) -> dict[str, Any]:
    return {
        "kind": alert.kind,
        "event": {
            "id": alert.event_id,
            "at": alert.event_at.isoformat(),
            "kind": alert.event_kind,
            "team": alert.team,
            "hold_id": alert.hold_id,
            "data": alert.data,
        },
        "rule": {"id": alert.rule.id, "team": alert.rule.team, "channel": alert.rule.channel},
        "attempt": alert.attempts + 1,
    }


# --- sending --------------------------------------------------------------------------------


def _scrub(text: str, url: str) -> str:
    """``text`` with ``url`` and its secret parts (path, query) replaced by the masked URL."""
    shown = mask_url(url)
    try:
        parts = urlsplit(url)
        secrets = [url, url.split(parts.netloc, 1)[-1] if parts.netloc else url, parts.query]
    except ValueError:
        secrets = [url]
    for secret in sorted((s for s in secrets if len(s) > 3), key=len, reverse=True):
        text = text.replace(secret, shown)
    return text[:300]


def _verdict(channel: str, response: httpx.Response) -> str | None:
    """None when ``response`` says the message was taken; else why not, in one line."""
    if not 200 <= response.status_code < 300:
        return (
            f"HTTP {response.status_code}: {response.text[:200].strip() or response.reason_phrase}"
        )
    names = _SUCCESS_CODES.get(channel)
    if names is None:
        return None
    try:
        body = response.json()
    except ValueError:
        return None  # a 2xx without JSON: taken (a proxy in front, an older API)
    if not isinstance(body, dict):
        return None
    for name in names:
        code = body.get(name)
        if code not in (None, 0):
            message = body.get("msg") or body.get("errmsg") or body.get("StatusMessage") or ""
            return f"{channel} answered {name} {code}: {str(message)[:200]}"
    return None


def send(
    rule: AlertRule, body: dict[str, Any], *, key: str, client: httpx.Client
) -> tuple[int | None, str | None]:
    """POST ``body`` to the rule's URL; (HTTP status or None, error or None). Never raises for
    the network or the receiver; no error text holds the URL."""
    try:
        response = client.post(
            rule.url,
            content=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": key},
        )
    except httpx.HTTPError as exc:
        return None, _scrub(f"{type(exc).__name__}: {exc}", rule.url)
    error = _verdict(rule.channel, response)
    return response.status_code, None if error is None else _scrub(error, rule.url)


_shared: httpx.Client | None = None
_shared_lock = threading.Lock()


def _client(http_client: httpx.Client | None) -> httpx.Client:
    """``http_client``, else this process's own (made once: building a client loads the CA
    bundle, which costs more than a loopback delivery; httpx's client is thread-safe)."""
    global _shared
    if http_client is not None:
        return http_client
    with _shared_lock:
        if _shared is None:
            _shared = httpx.Client(timeout=TIMEOUT, follow_redirects=False)
        return _shared


def deliver_due(
    ledger: Ledger,
    *,
    http_client: httpx.Client | None = None,
    now: datetime | None = None,
    limit: int = 50,
    forecasts: bool = True,
) -> DeliveryReport:
    """Send every alert due at ``now`` (default: the ledger's clock), ``limit`` at a time,
    until none is due; record each attempt. With ``forecasts``, first write the forecast
    warnings due (:meth:`klingcost.ledger.Ledger.warn_forecasts`, at most every 5 minutes).

    ``http_client`` sends (default: this process's own, kept for the next pass); a failed
    webhook is an attempt in the report, never an exception."""
    warned = tuple(ledger.warn_forecasts(now=now)) if forecasts else ()
    attempts: list[Attempt] = []
    seen: set[int] = set()
    while True:
        at = ledger.clock.now() if now is None else now
        due = ledger.claim_due_alerts(now=at, lease=LEASE, limit=limit)
        fresh = [a for a in due if a.id not in seen]
        if fresh:  # the HTTP client is made only when something is to be sent
            client = _client(http_client)
        for alert in fresh:
            seen.add(alert.id)
            attempts.append(_deliver_one(ledger, alert, client, now))
        if len(due) < limit or not fresh:
            return DeliveryReport(tuple(attempts), warned)


def _deliver_one(
    ledger: Ledger, alert: PendingAlert, client: httpx.Client, now: datetime | None
) -> Attempt:
    rule = alert.rule
    text = message_text(ledger, alert)
    key = alert.idempotency_key
    body = payload(rule.channel, text, key=key, event=_event_body(alert))
    status, error = send(rule, body, key=key, client=client)
    at = ledger.clock.now() if now is None else now
    tries = alert.attempts + 1
    next_at = None if error is None or tries >= MAX_ATTEMPTS else at + backoff(tries)
    ledger.record_alert_attempt(alert.id, at=at, error=error, next_at=next_at)
    if error is not None:
        logger.warning(
            "alert %s (event %s) to rule %s, %s %s: attempt %s failed: %s%s",
            alert.id,
            alert.event_id,
            rule.id,
            rule.channel,
            rule.masked,
            tries,
            error,
            "" if next_at is None else f"; next attempt at {next_at.isoformat()}",
        )
    return Attempt(
        rule.id,
        rule.channel,
        rule.masked,
        error is None,
        status,
        error,
        outbox_id=alert.id,
        event_id=alert.event_id,
        next_attempt_at=next_at,
    )


def send_test(ledger: Ledger, rule_id: int, *, http_client: httpx.Client | None = None) -> Attempt:
    """Send a test message to rule ``rule_id`` now, outside the outbox; the answer as it
    came. LedgerValueError when there is no such rule."""
    rule = ledger.alert_rule(rule_id)
    at = ledger.clock.now()
    key = f"klingcost-test-{rule.id}-{at.strftime('%Y%m%dT%H%M%S%f')}"
    text = (
        f"klingcost alert test: rule {rule.id} sends team {rule.team}'s "
        f"{', '.join(rule.kinds)} alerts here."
    )
    event = {"kind": "test", "rule": {"id": rule.id, "team": rule.team, "channel": rule.channel}}
    client = _client(http_client)
    status, error = send(
        rule, payload(rule.channel, text, key=key, event=event), key=key, client=client
    )
    return Attempt(rule.id, rule.channel, rule.masked, error is None, status, error)


__all__ = [
    "ALERT_KINDS",
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "CHANNELS",
    "EVENT_KINDS",
    "LEASE",
    "MAX_ATTEMPTS",
    "REFUSAL_WINDOW",
    "AlertRule",
    "Attempt",
    "DeliveryReport",
    "backoff",
    "check_url",
    "deliver_due",
    "mask_url",
    "message_text",
    "payload",
    "send",
    "send_test",
]
