"""The ledger's side of alerts: rules, the outbox and its marks (SQL lives here and in the ledger).

An alert rule sends a team's alert events to one channel (a generic webhook, Slack, Feishu or
DingTalk). When the ledger writes an alert event (:data:`EVENT_KINDS`), :func:`enqueue` adds one
outbox row per matching rule *in the same transaction*: an alert is recorded if and only if the
event is. :mod:`klingcost.alerts` delivers the rows later, at least once.

Bursts are folded here, where the outbox row is written, by one upsert on ``alert_marks`` that
is atomic across processes:

* ``refused``: at most one delivery per team per :data:`REFUSAL_WINDOW` (a sliding window from
  the last refusal alerted); the refusals in between are in the event log.
* ``over``: at most one per budget per period (each settlement past the limit writes an
  ``over_limit`` event; the first of the period is the news).
* ``forecast``: the ledger writes at most one ``forecast_warning`` event per budget per period
  (:meth:`klingcost.ledger.Ledger.warn_forecasts`), marked here too.
* ``soft``: a crossing happens once by construction (used goes from under the threshold to at
  or over it), so every ``soft_threshold`` event is delivered.

A webhook URL is a secret (Slack's, Feishu's and DingTalk's carry their token in the path or
query): it is stored as given, and everything that shows a rule shows :func:`mask_url` instead.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, get_args
from urllib.parse import urlsplit

from klingcost.errors import LedgerError, LedgerValueError
from klingcost.ledger.db import DB

if TYPE_CHECKING:
    from klingcost.ledger import Ledger

logger = logging.getLogger("klingcost.alerts")

Channel = Literal["webhook", "slack", "feishu", "dingtalk"]
CHANNELS: Final[tuple[str, ...]] = get_args(Channel)
AlertKind = Literal["soft", "refused", "over", "forecast"]
ALERT_KINDS: Final[tuple[str, ...]] = get_args(AlertKind)
#: The event kinds that are alerts, and the rule kind (``--on``) that each one matches.
EVENT_KINDS: Final[dict[str, str]] = {
    "soft_threshold": "soft",
    "over_limit": "over",
    "refused": "refused",
    "forecast_warning": "forecast",
}
#: One refusal alert per team in this long (the next refusal after it alerts again).
REFUSAL_WINDOW: Final = timedelta(hours=1)
#: Channels whose real endpoints are HTTPS: plain http is refused except on loopback.
_HTTPS_ONLY: Final = frozenset({"slack", "feishu", "dingtalk"})
_LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_URL: Final = 2048
#: Seconds ``Ledger.close`` waits for a background delivery still running.
CLOSE_WAIT: Final = 3.0


def mask_url(url: str) -> str:
    """``url`` without its secret: scheme, host and port, then ``…`` and its last 4 characters
    (enough to tell two rules apart). Userinfo, path and query never show."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an invalid URL)"
    if not parts.scheme or not parts.netloc:
        return f"(not a URL: {len(url)} characters)"
    if ":" in host:
        host = f"[{host}]"
    rest = url.split(parts.netloc, 1)[-1] if parts.netloc else url
    tail = rest[-4:] if len(rest) > 12 else ""
    return f"{parts.scheme}://{host}{port}/…{tail}"


def check_url(channel: str, url: str) -> str:
    """``url`` if it can receive ``channel``'s messages; LedgerValueError (one line, naming the
    field and what is allowed, the URL masked) otherwise."""
    option = f"--{channel}"
    if channel not in CHANNELS:
        raise LedgerValueError(f"channel must be one of {', '.join(CHANNELS)} (given {channel!r})")
    if not isinstance(url, str) or not url.strip():
        raise LedgerValueError(f"{option}: give the webhook URL (https://...)")
    url = url.strip()
    if len(url) > MAX_URL or re.search(r"\s", url):
        raise LedgerValueError(
            f"{option}: not a URL ({len(url)} characters, or with spaces): paste the webhook "
            "URL as the service gives it"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        raise LedgerValueError(f"{option}: not a URL ({mask_url(url)})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LedgerValueError(
            f"{option}: {mask_url(url)} is not an http(s) URL with a host: give the webhook "
            "URL, starting with https://"
        )
    if channel in _HTTPS_ONLY and parts.scheme != "https" and parts.hostname not in _LOOPBACK:
        raise LedgerValueError(
            f"{option}: {mask_url(url)} is plain http: {channel} webhooks are https "
            "(its token would travel in clear)"
        )
    return url


@dataclass(frozen=True, slots=True)
class AlertRule:
    """Send ``team``'s alerts of ``kinds`` to ``url`` over ``channel``. The URL is a secret:
    ``repr`` and ``masked`` never show it whole."""

    id: int
    team: str
    channel: Channel
    url: str = field(repr=False)
    kinds: tuple[str, ...]
    created_at: datetime

    @property
    def masked(self) -> str:
        return mask_url(self.url)

    def __repr__(self) -> str:
        return (
            f"AlertRule(id={self.id}, team={self.team!r}, channel={self.channel!r}, "
            f"url={self.masked!r}, kinds={self.kinds!r})"
        )

    __str__ = __repr__

    def to_dict(self) -> dict[str, Any]:
        """For ``--json``: the URL masked."""
        return {
            "id": self.id,
            "team": self.team,
            "channel": self.channel,
            "url": self.masked,
            "on": list(self.kinds),
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class PendingAlert:
    """An outbox row claimed for delivery, with its event and its rule."""

    id: int
    attempts: int
    rule: AlertRule
    event_id: int
    event_at: datetime
    event_kind: str
    team: str | None
    hold_id: int | None
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        """The rule kind (``soft``, ``refused``, ``over``, ``forecast``)."""
        return EVENT_KINDS.get(self.event_kind, self.event_kind)

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt at this (event, rule): a receiver drops repeats by it."""
        stamp = self.event_at.strftime("%Y%m%dT%H%M%S%f")
        return f"klingcost-{self.event_id}-{self.rule.id}-{stamp}"


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    pending: int
    delivered: int
    failed: int


_RULE_COLUMNS = "id, team, channel, url, on_soft, on_refused, on_over, on_forecast, created_at"


def _rule(row: tuple[Any, ...]) -> AlertRule:
    kinds = tuple(kind for kind, on in zip(ALERT_KINDS, row[4:8], strict=True) if on)
    return AlertRule(row[0], row[1], row[2], row[3], kinds, datetime.fromisoformat(row[8]))


def stamp(at: datetime) -> str:
    """A UTC instant as the outbox stores it: fixed width, so that text order is time order."""
    return at.isoformat(timespec="microseconds")


# --- rules --------------------------------------------------------------------------------


def insert_rule(
    conn: DB, team: str, channel: str, url: str, kinds: tuple[str, ...], at: str
) -> AlertRule:
    flags = [int(kind in kinds) for kind in ALERT_KINDS]
    row = conn.execute(
        "INSERT INTO alert_rules (team, channel, url, on_soft, on_refused, on_over,"
        f" on_forecast, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_RULE_COLUMNS}",
        (team, channel, url, *flags, at),
    ).fetchone()
    return _rule(row)


def rules(conn: DB, team: str | None = None) -> list[AlertRule]:
    where, params = ("WHERE team = ?", (team,)) if team is not None else ("", ())
    sql = f"SELECT {_RULE_COLUMNS} FROM alert_rules {where} ORDER BY id"
    return [_rule(row) for row in conn.execute(sql, params).fetchall()]


def rule(conn: DB, rule_id: int) -> AlertRule | None:
    row = conn.execute(f"SELECT {_RULE_COLUMNS} FROM alert_rules WHERE id = ?", (rule_id,))
    found = row.fetchone()
    return None if found is None else _rule(found)


def delete_rule(conn: DB, rule_id: int) -> int:
    """Delete the rule and its undelivered outbox rows; return how many rows were dropped."""
    dropped = conn.execute(
        "DELETE FROM alert_outbox WHERE rule_id = ? AND delivered_at IS NULL", (rule_id,)
    ).rowcount
    conn.execute("DELETE FROM alert_outbox WHERE rule_id = ?", (rule_id,))
    conn.execute("DELETE FROM alert_rules WHERE id = ?", (rule_id,))
    return dropped


# --- enqueueing, inside the event's transaction --------------------------------------------


def matching_rules(conn: DB, kind: str, teams: list[str]) -> list[int]:
    """The ids of the rules of any of ``teams`` that take alerts of ``kind``."""
    column = f"on_{kind}"  # kind is one of ALERT_KINDS: never caller text
    marks = ", ".join("?" * len(teams))
    sql = f"SELECT id FROM alert_rules WHERE team IN ({marks}) AND {column} = 1 ORDER BY id"
    return [row[0] for row in conn.execute(sql, teams).fetchall()]


def claim_mark(conn: DB, team: str, kind: str, mark: str, at: str, cutoff: str) -> bool:
    """Record that ``team`` was alerted of ``kind`` now, unless it already was for ``mark``
    (a period key) or after ``cutoff``; True when this call is the one that alerts.

    One upsert, atomic across processes: of two transactions racing on the same mark, the
    second waits for the first and then sees its row."""
    row = conn.execute(
        "INSERT INTO alert_marks (team, kind, mark, at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (team, kind) DO UPDATE SET mark = excluded.mark, at = excluded.at"
        " WHERE alert_marks.mark <> excluded.mark AND alert_marks.at <= ?"
        " RETURNING team",
        (team, kind, mark, at, cutoff),
    ).fetchone()
    return row is not None


def enqueue(
    conn: DB, event_id: int, event_kind: str, team: str | None, data: dict[str, Any], at: str
) -> int:
    """Add an outbox row per rule matching the alert event just written; return how many.

    Runs in the event's transaction. One indexed read when no rule matches (alert events are
    rare: a crossing, a refusal, a forecast), none at all for other events (the caller checks
    :data:`EVENT_KINDS` first)."""
    kind = EVENT_KINDS[event_kind]
    teams = sorted({name for name in (team, data.get("budget")) if isinstance(name, str)})
    if not teams:
        return 0
    ids = matching_rules(conn, kind, teams)
    if not ids:
        return 0
    if kind in ("refused", "over") and team is not None:
        instant = datetime.fromisoformat(at)
        if kind == "refused":
            mark, cutoff = f"event {event_id}", stamp(instant - REFUSAL_WINDOW)
        else:
            mark, cutoff = str(data.get("period_key")), stamp(instant)
        if not claim_mark(conn, team, kind, mark, stamp(instant), cutoff):
            return 0
    due = stamp(datetime.fromisoformat(at))
    conn.executemany(
        "INSERT INTO alert_outbox (event_id, rule_id, attempts, next_attempt_at, created_at)"
        " VALUES (?, ?, 0, ?, ?) ON CONFLICT (event_id, rule_id) DO NOTHING",
        [(event_id, rule_id, due, due) for rule_id in ids],
    )
    return len(ids)


# --- delivery ------------------------------------------------------------------------------

_PENDING_SQL = (
    "SELECT o.id, o.attempts, e.id, e.at, e.kind, e.team, e.hold_id, e.data,"
    f" {', '.join('r.' + c.strip() for c in _RULE_COLUMNS.split(','))}"
    " FROM alert_outbox AS o JOIN events AS e ON e.id = o.event_id"
    " JOIN alert_rules AS r ON r.id = o.rule_id"
)


def any_due(conn: DB, now: datetime) -> bool:
    """Whether any outbox row is due at ``now`` (one probe of the due index)."""
    sql = "SELECT 1 FROM alert_outbox WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= ?"
    return conn.execute(sql + " LIMIT 1", (stamp(now),)).fetchone() is not None


def claim_due(
    conn: DB, now: datetime, lease: timedelta, limit: int, *, skip_locked: bool = False
) -> list[PendingAlert]:
    """The outbox rows due at ``now`` (oldest first), each leased until ``now + lease``: a
    concurrent deliverer skips them, and a deliverer that dies leaves them due again after.

    ``skip_locked`` (PostgreSQL, whose READ COMMITTED lets two transactions read the same due
    rows): lock the rows read, and pass over those another deliverer has locked. SQLite's
    write transactions run one at a time, so the second reads the first's lease."""
    sql = (
        f"{_PENDING_SQL} WHERE o.next_attempt_at IS NOT NULL AND o.next_attempt_at <= ?"
        f" ORDER BY o.next_attempt_at, o.id LIMIT {int(limit)}"
        + (" FOR UPDATE OF o SKIP LOCKED" if skip_locked else "")
    )
    rows = conn.execute(sql, (stamp(now),)).fetchall()
    if rows:
        conn.executemany(
            "UPDATE alert_outbox SET next_attempt_at = ? WHERE id = ?",
            [(stamp(now + lease), row[0]) for row in rows],
        )
    return [
        PendingAlert(
            id=row[0],
            attempts=row[1],
            event_id=row[2],
            event_at=datetime.fromisoformat(row[3]),
            event_kind=row[4],
            team=row[5],
            hold_id=row[6],
            data=json.loads(row[7]),
            rule=_rule(row[8:]),
        )
        for row in rows
    ]


def record_attempt(
    conn: DB, outbox_id: int, *, at: datetime, error: str | None, next_at: datetime | None
) -> None:
    """Record a delivery attempt: delivered (``error`` None), or failed and due again at
    ``next_at`` (None: given up)."""
    if error is None:
        conn.execute(
            "UPDATE alert_outbox SET attempts = attempts + 1, delivered_at = ?,"
            " next_attempt_at = NULL, last_error = NULL WHERE id = ?",
            (stamp(at), outbox_id),
        )
    else:
        conn.execute(
            "UPDATE alert_outbox SET attempts = attempts + 1, last_error = ?,"
            " next_attempt_at = ? WHERE id = ?",
            (error[:500], None if next_at is None else stamp(next_at), outbox_id),
        )


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An outbox row as ``klingcost alerts list --outbox`` shows it."""

    id: int
    event_id: int
    rule_id: int
    attempts: int
    next_attempt_at: str | None
    delivered_at: str | None
    last_error: str | None

    @property
    def state(self) -> str:
        if self.delivered_at is not None:
            return "delivered"
        return "pending" if self.next_attempt_at is not None else "failed"


def outbox_rows(conn: DB, *, rule_id: int | None = None, limit: int = 100) -> list[OutboxRow]:
    where, params = ("WHERE rule_id = ?", (rule_id,)) if rule_id is not None else ("", ())
    sql = (
        "SELECT id, event_id, rule_id, attempts, next_attempt_at, delivered_at, last_error"
        f" FROM alert_outbox {where} ORDER BY id DESC LIMIT {int(limit)}"
    )
    return [OutboxRow(*row) for row in conn.execute(sql, params).fetchall()]


def counts(conn: DB) -> dict[int, OutboxCounts]:
    """Per rule id: pending, delivered and failed (given up) outbox rows."""
    sql = (
        "SELECT rule_id, SUM(CASE WHEN delivered_at IS NOT NULL THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN delivered_at IS NULL AND next_attempt_at IS NULL THEN 1 ELSE 0 END),"
        " COUNT(*) FROM alert_outbox GROUP BY rule_id"
    )
    found = {}
    for rule_id, delivered, failed, total in conn.execute(sql).fetchall():
        found[rule_id] = OutboxCounts(total - delivered - failed, delivered, failed)
    return found


# --- in the background, after a commit ----------------------------------------------------

_kick_lock = threading.Lock()


def kick(ledger: Ledger) -> None:
    """Deliver ``ledger``'s due alerts in a daemon thread, now; return at once (the delivery
    code, and httpx with it, is imported in that thread, never in the caller's).

    One thread per ledger object: a kick while it runs makes it go round once more."""
    with _kick_lock:
        thread = ledger._delivery
        if thread is not None and thread.is_alive():
            ledger._delivery_again = True
            return
        ledger._delivery_again = False
        thread = threading.Thread(
            target=_deliver_in_background, args=(ledger,), name="klingcost-alerts", daemon=True
        )
        ledger._delivery = thread
        thread.start()


def _deliver_in_background(ledger: Ledger) -> None:
    while True:
        try:
            from klingcost.alerts import deliver_due

            deliver_due(ledger, forecasts=False)
        except LedgerError as exc:  # closed meanwhile, or busy: the next deliverer will do
            logger.info("background alert delivery stopped: %s", exc)
        except Exception as exc:  # a thread has no caller to raise to: say it, and stop
            logger.warning("background alert delivery failed: %s: %s", type(exc).__name__, exc)
        with _kick_lock:
            if not ledger._delivery_again:
                ledger._delivery = None
                return
            ledger._delivery_again = False


__all__ = [
    "ALERT_KINDS",
    "CHANNELS",
    "EVENT_KINDS",
    "REFUSAL_WINDOW",
    "AlertKind",
    "AlertRule",
    "Channel",
    "OutboxCounts",
    "OutboxRow",
    "PendingAlert",
    "check_url",
    "kick",
    "mask_url",
]
