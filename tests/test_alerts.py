"""Alerts: the outbox written with its event, delivery to a real loopback receiver, retries
with backoff on the ledger's clock, bursts folded, URLs masked. Both backends."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from alert_receiver import receiver
from klingcost import alerts
from klingcost.budgets import HoldAmounts
from klingcost.clock import ManualClock
from klingcost.errors import BudgetNotFound, LedgerValueError
from klingcost.ledger import Ledger
from klingcost.ledger.outbox import check_url, mask_url

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
SLACK = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX"


def credits(cost: int) -> HoldAmounts:
    return HoldAmounts(1000, "video", cost, "credits")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def quiet(make_ledger: Callable[..., Ledger], clock: ManualClock) -> Ledger:
    """A ledger whose test drives delivery itself (no background thread), on a manual clock."""
    ledger = make_ledger(clock=clock)
    ledger.deliver_in_background = False
    ledger.set_budget("acme", limit=10_000, period="month")
    return ledger


def _outbox(ledger: Ledger) -> list[Any]:
    return ledger.alert_outbox()


# --- arriving ---------------------------------------------------------------------------------


def test_an_alert_reaches_a_loopback_webhook_within_a_second_of_the_crossing(
    make_ledger: Callable[..., Ledger],
) -> None:
    ledger = make_ledger()
    ledger.set_budget("acme", limit=10_000, period="month")
    with receiver() as hook:
        rule = ledger.add_alert_rule("acme", channel="webhook", url=hook.url)
        ledger.reserve("acme", credits(7_000))
        assert hook.received == []  # under the soft threshold: nothing to say
        start = time.monotonic()
        hold = ledger.reserve("acme", credits(1_500))  # 8,500 of 10,000: crosses 80%
        returned = time.monotonic()
        (got,) = hook.wait(1, timeout=1.0)
    assert got.at - start < 1.0
    assert returned - start < 0.5  # the submission did not wait for the webhook
    assert got.body["kind"] == "soft"
    assert got.body["event"]["kind"] == "soft_threshold"
    assert got.body["event"]["team"] == "acme"
    assert got.body["event"]["hold_id"] == hold.id
    assert got.body["event"]["data"] == {"period_key": "2026-12", "used": 8500, "limit": 10000}
    assert got.body["rule"] == {"id": rule.id, "team": "acme", "channel": "webhook"}
    assert "budget acme passed its soft threshold: 8500 credits used of 10000" in got.body["text"]
    assert got.headers["Idempotency-Key"] == got.body["idempotency_key"]
    deadline = time.monotonic() + 5
    while ledger.alert_counts()[rule.id].delivered != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ledger.alert_counts()[rule.id].delivered == 1


def test_no_rule_no_outbox_row_and_each_matching_rule_gets_one(quiet: Ledger) -> None:
    quiet.reserve("acme", credits(8_500))  # crosses, but nobody listens
    assert _outbox(quiet) == []
    assert [e.kind for e in quiet.events(kind="soft_threshold")] == ["soft_threshold"]
    quiet.set_budget("other", limit=10_000)
    a = quiet.add_alert_rule("acme", channel="webhook", url="https://a.example/1", on=["over"])
    b = quiet.add_alert_rule("acme", channel="webhook", url="https://a.example/2", on=["soft"])
    c = quiet.add_alert_rule("other", channel="webhook", url="https://a.example/3")
    quiet.set_budget("acme", limit=100_000)
    quiet.reserve("acme", credits(75_000))  # 83,500 of 100,000: crosses again
    rows = _outbox(quiet)
    assert [row.rule_id for row in rows] == [b.id]
    assert {a.id, c.id}.isdisjoint(row.rule_id for row in rows)


def test_the_outbox_row_is_written_in_the_events_transaction(quiet: Ledger) -> None:
    quiet.add_alert_rule("acme", channel="webhook", url="https://a.example/hook")
    at = T0.isoformat()

    def crossing_then_failure(conn: Any) -> None:
        quiet._event(conn, at, "soft_threshold", None, "acme", period_key="2026-12")
        raise RuntimeError("the transaction fails after the event")

    with pytest.raises(RuntimeError):
        quiet._write(crossing_then_failure)
    assert quiet.events(kind="soft_threshold") == []
    assert _outbox(quiet) == []  # rolled back with its event
    quiet._write(lambda conn: quiet._event(conn, at, "soft_threshold", None, "acme"))
    (row,) = _outbox(quiet)
    assert row.event_id == quiet.events(kind="soft_threshold")[0].id


def test_a_reserve_with_no_alert_reads_no_rule(tmp_path: Path) -> None:
    # SQLite only: its trace callback lists every statement a reserve runs.
    ledger = Ledger.open(tmp_path / "l.db")
    ledger.deliver_in_background = False
    ledger.set_budget("acme", limit=10_000)
    statements: list[str] = []
    conn: sqlite3.Connection = ledger.conn
    conn.set_trace_callback(statements.append)
    ledger.reserve("acme", credits(100))  # no crossing: the hot path
    assert statements and not [s for s in statements if "alert_" in s]
    statements.clear()
    ledger.reserve("acme", credits(8_000))  # a crossing: one look at the rules, nothing more
    assert len([s for s in statements if "alert_" in s]) == 1
    conn.set_trace_callback(None)
    ledger.close()


# --- retries ----------------------------------------------------------------------------------


def test_a_500_is_retried_with_backoff_on_the_ledgers_clock(
    quiet: Ledger, clock: ManualClock
) -> None:
    with receiver() as hook:
        hook.answers = [(500, "boom"), (503, "busy"), (200, "ok")]
        quiet.add_alert_rule("acme", channel="webhook", url=hook.url)
        quiet.reserve("acme", credits(9_000))
        first = alerts.deliver_due(quiet, forecasts=False)
        assert (first.delivered, first.retrying) == (0, 1)
        assert first.attempts[0].status == 500 and "HTTP 500: boom" in str(first.attempts[0].error)
        assert first.attempts[0].next_attempt_at == T0 + alerts.BACKOFF_BASE
        clock.advance(alerts.BACKOFF_BASE - timedelta(microseconds=1))
        assert alerts.deliver_due(quiet, forecasts=False).attempts == ()  # not due yet
        clock.advance(timedelta(microseconds=1))
        second = alerts.deliver_due(quiet, forecasts=False)
        assert second.attempts[0].status == 503
        # The second failure waits twice as long.
        assert second.attempts[0].next_attempt_at == clock.now() + 2 * alerts.BACKOFF_BASE
        clock.advance(2 * alerts.BACKOFF_BASE)
        third = alerts.deliver_due(quiet, forecasts=False)
        assert third.delivered == 1
        assert len(hook.received) == 3
    keys = {r.body["idempotency_key"] for r in hook.received}
    assert len(keys) == 1  # the same key on every attempt: a receiver drops repeats by it
    assert [r.body["attempt"] for r in hook.received] == [1, 2, 3]
    (row,) = _outbox(quiet)
    assert (row.state, row.attempts, row.last_error) == ("delivered", 3, None)
    clock.advance(hours=2)
    assert alerts.deliver_due(quiet, forecasts=False).attempts == ()  # delivered once only


def test_backoff_doubles_to_an_hour_and_an_alert_is_given_up_after_max_attempts(
    quiet: Ledger, clock: ManualClock
) -> None:
    assert [alerts.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert alerts.backoff(20) == timedelta(hours=1)
    with receiver() as hook:
        hook.answers = [(404, "no_service")]
        rule = quiet.add_alert_rule("acme", channel="slack", url=hook.url)
        quiet.reserve("acme", credits(9_000))
        for _ in range(alerts.MAX_ATTEMPTS):
            alerts.deliver_due(quiet, forecasts=False)
            clock.advance(hours=1)
        assert len(hook.received) == alerts.MAX_ATTEMPTS
        clock.advance(days=1)
        assert alerts.deliver_due(quiet, forecasts=False).attempts == ()
    (row,) = _outbox(quiet)
    assert row.state == "failed" and "HTTP 404: no_service" in str(row.last_error)
    assert quiet.alert_counts()[rule.id].failed == 1


def test_a_claimed_alert_is_leased_so_two_deliverers_send_it_once(
    quiet: Ledger, clock: ManualClock
) -> None:
    quiet.add_alert_rule("acme", channel="webhook", url="https://a.example/hook")
    quiet.reserve("acme", credits(9_000))
    (claimed,) = quiet.claim_due_alerts(now=clock.now(), lease=alerts.LEASE)
    assert quiet.claim_due_alerts(now=clock.now(), lease=alerts.LEASE) == []
    # A deliverer that died with it leaves it due again once the lease ends.
    clock.advance(alerts.LEASE)
    (again,) = quiet.claim_due_alerts(now=clock.now(), lease=alerts.LEASE)
    assert again.id == claimed.id and again.idempotency_key == claimed.idempotency_key


# --- bursts -----------------------------------------------------------------------------------


def test_a_burst_of_refusals_is_alerted_once_per_team_per_hour(
    quiet: Ledger, clock: ManualClock
) -> None:
    quiet.add_alert_rule("acme", channel="webhook", url="https://a.example/hook", on=["refused"])
    for _ in range(5):
        quiet.record_refusal(
            "acme", reason="budget", needed=500, left=100, period="2026-12", budget="acme"
        )
        clock.advance(minutes=5)
    assert len(quiet.refusals(team="acme")) == 5
    assert len(_outbox(quiet)) == 1
    clock.set(T0 + alerts.REFUSAL_WINDOW)
    quiet.record_refusal("acme", reason="budget", needed=500, left=100, period="2026-12")
    assert len(_outbox(quiet)) == 2
    (pending,) = [a for a in quiet.claim_due_alerts(now=clock.now(), lease=alerts.LEASE)][:1]
    text = alerts.message_text(quiet, pending)
    assert "team acme are being refused (budget) by budget acme: needed 500" in text


def test_over_limit_is_alerted_once_per_period(quiet: Ledger, clock: ManualClock) -> None:
    quiet.add_alert_rule("acme", channel="webhook", url="https://a.example/hook", on=["over"])
    holds = [quiet.reserve("acme", credits(3_000)) for _ in range(3)]
    for hold in holds:  # each settles above its hold, past the limit: an over_limit each time
        quiet.settle(hold.id, units_milli=1000, cost_minor=4_000)
    assert len(quiet.events(kind="over_limit")) == 2
    assert len(_outbox(quiet)) == 1
    clock.set(datetime(2027, 1, 2, tzinfo=UTC))  # the next period: news again
    holds = [quiet.reserve("acme", credits(5_000)) for _ in range(2)]
    for hold in holds:
        quiet.settle(hold.id, units_milli=1000, cost_minor=6_000)
    assert len(_outbox(quiet)) == 2


# --- channels ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "answer", "shape"),
    [
        ("slack", (200, "ok"), lambda b: set(b) == {"text"}),
        (
            "feishu",
            (200, '{"code":0,"msg":"success"}'),
            lambda b: b["msg_type"] == "text" and set(b["content"]) == {"text"},
        ),
        (
            "dingtalk",
            (200, '{"errcode":0,"errmsg":"ok"}'),
            lambda b: b["msgtype"] == "text" and set(b["text"]) == {"content"},
        ),
    ],
)
def test_each_channel_gets_its_own_payload(
    quiet: Ledger, channel: str, answer: tuple[int, str], shape: Callable[[Any], bool]
) -> None:
    with receiver() as hook:
        hook.answers = [answer]
        quiet.add_alert_rule("acme", channel=channel, url=hook.url)
        quiet.reserve("acme", credits(9_000))
        report = alerts.deliver_due(quiet, forecasts=False)
    assert report.delivered == 1
    (got,) = hook.received
    assert shape(got.body)
    text = str(got.body)
    assert "klingcost alert: budget acme passed its soft threshold" in text


@pytest.mark.parametrize(
    ("channel", "answer", "said"),
    [
        ("feishu", '{"code":19021,"msg":"sign match fail"}', "feishu answered code 19021"),
        ("dingtalk", '{"errcode":310000,"errmsg":"keywords not in content"}', "errcode 310000"),
    ],
)
def test_an_error_code_in_a_200_is_a_failed_attempt(
    quiet: Ledger, channel: str, answer: str, said: str
) -> None:
    with receiver() as hook:
        hook.answers = [(200, answer)]
        quiet.add_alert_rule("acme", channel=channel, url=hook.url)
        quiet.reserve("acme", credits(9_000))
        report = alerts.deliver_due(quiet, forecasts=False)
    assert report.retrying == 1 and said in str(report.attempts[0].error)


def test_alerts_test_sends_now_and_reports_the_answer(quiet: Ledger) -> None:
    with receiver() as hook:
        rule = quiet.add_alert_rule("acme", channel="dingtalk", url=hook.url)
        ok = alerts.send_test(quiet, rule.id)
        hook.answers = [(200, '{"errcode":300001,"errmsg":"token is not exist"}')]
        bad = alerts.send_test(quiet, rule.id)
    assert (ok.ok, ok.status) == (True, 200)
    assert hook.received[0].body["msgtype"] == "text"
    assert "klingcost alert test: rule" in hook.received[0].body["text"]["content"]
    assert (bad.ok, bad.status) == (False, 200) and "token is not exist" in str(bad.error)
    assert _outbox(quiet) == []  # a test does not go through the outbox


# --- secrets ----------------------------------------------------------------------------------


def test_a_webhook_url_never_shows_whole(quiet: Ledger, caplog: pytest.LogCaptureFixture) -> None:
    rule = quiet.add_alert_rule("acme", channel="slack", url=SLACK)
    assert rule.masked == "https://hooks.slack.com/…XXXX"
    shown = [repr(rule), str(rule), str(rule.to_dict()), str(quiet.alert_rules())]
    shown += [str(e.data) for e in quiet.events()]
    for text in shown:
        assert "secret" not in text and "B000" not in text and "T000" not in text
    # A delivery that fails says why without the URL, in the report, the outbox and the log.
    dead = "http://127.0.0.1:9/hook/T000/B000/XXXXsecretXXXX"
    quiet.remove_alert_rule(rule.id)
    quiet.add_alert_rule("acme", channel="webhook", url=dead)
    quiet.reserve("acme", credits(9_000))
    with caplog.at_level(logging.INFO, logger="klingcost"):
        report = alerts.deliver_due(quiet, forecasts=False)
    assert report.retrying == 1
    texts = [str(report.to_dict()), str(_outbox(quiet)), caplog.text]
    for text in texts:
        assert "secret" not in text and "B000" not in text
    assert "ConnectError" in str(report.attempts[0].error)


@pytest.mark.parametrize(
    ("channel", "url", "said"),
    [
        ("slack", "http://hooks.slack.com/services/T/B/secret", "plain http"),
        ("webhook", "notaurl", "is not an http"),
        ("webhook", "ftp://files.example/secret", "is not an http"),
        ("feishu", "https://open.feishu.cn/hook/has space", "not a URL"),
        ("dingtalk", "", "give the webhook URL"),
        ("teams", "https://a.example", "channel must be one of"),
    ],
)
def test_a_bad_url_is_refused_in_one_line_without_the_secret(
    quiet: Ledger, channel: str, url: str, said: str
) -> None:
    with pytest.raises(LedgerValueError, match=said) as caught:
        quiet.add_alert_rule("acme", channel=channel, url=url)
    assert "\n" not in str(caught.value) and "secret" not in str(caught.value)
    assert quiet.alert_rules() == []


def test_rules_are_for_known_teams_and_known_kinds(quiet: Ledger) -> None:
    with pytest.raises(BudgetNotFound):
        quiet.add_alert_rule("nosuch", channel="webhook", url="https://a.example/h")
    with pytest.raises(LedgerValueError, match="'bogus' given; allowed: soft, refused"):
        quiet.add_alert_rule("acme", channel="webhook", url="https://a.example/h", on=["bogus"])
    assert quiet.alert_rules() == []


def test_loopback_http_is_allowed_for_every_channel_and_masking_keeps_the_host() -> None:
    assert check_url("slack", "http://127.0.0.1:8080/x") == "http://127.0.0.1:8080/x"
    assert mask_url("https://oapi.dingtalk.com/robot/send?access_token=abcdef123456") == (
        "https://oapi.dingtalk.com/…3456"
    )
    assert mask_url("https://user:pw@example.com/h") == "https://example.com/…"


def test_removing_a_rule_drops_its_undelivered_alerts(quiet: Ledger) -> None:
    rule = quiet.add_alert_rule("acme", channel="webhook", url="https://a.example/hook")
    quiet.reserve("acme", credits(9_000))
    assert len(_outbox(quiet)) == 1
    quiet.remove_alert_rule(rule.id)
    assert _outbox(quiet) == [] and quiet.alert_rules() == []
    (removed,) = quiet.events(kind="alert_rule_removed")
    assert removed.data["undelivered_dropped"] == 1
    with pytest.raises(LedgerValueError, match=f"no alert rule {rule.id}"):
        quiet.remove_alert_rule(rule.id)


def test_a_given_http_client_is_used_and_not_closed(quiet: Ledger) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="ok")

    quiet.add_alert_rule("acme", channel="webhook", url="https://a.example/hook")
    quiet.reserve("acme", credits(9_000))
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        report = alerts.deliver_due(quiet, http_client=client, forecasts=False)
        assert not client.is_closed
    assert report.delivered == 1 and seen[0].url.host == "a.example"


def test_on_postgres_a_second_deliverer_skips_rows_another_is_claiming() -> None:
    # READ COMMITTED lets two transactions read the same due rows: the claim locks them and
    # the other deliverer passes over the locked ones (SKIP LOCKED) instead of sending again.
    import psycopg

    from conftest import fresh_postgres_url

    with fresh_postgres_url() as url, Ledger.open(url) as ledger:
        ledger.deliver_in_background = False
        ledger.set_budget("acme", limit=10_000)
        ledger.add_alert_rule("acme", channel="webhook", url="https://a.example/hook")
        ledger.reserve("acme", credits(9_000))
        with psycopg.connect(url) as other:  # a deliverer in the middle of its claim
            other.execute("SELECT id FROM alert_outbox FOR UPDATE").fetchall()
            assert ledger.claim_due_alerts(now=datetime.now(UTC), lease=alerts.LEASE) == []
            other.rollback()
        assert len(ledger.claim_due_alerts(now=datetime.now(UTC), lease=alerts.LEASE)) == 1


def test_a_renamed_budget_keeps_its_alert_rules(quiet: Ledger) -> None:
    rule = quiet.add_alert_rule("acme", channel="webhook", url="https://a.example/hook")
    quiet.rename_budget("acme", "acme-video")
    assert [(r.id, r.team) for r in quiet.alert_rules()] == [(rule.id, "acme-video")]
    quiet.reserve("acme-video", credits(9_000))  # its crossing reaches the same rule
    assert [row.rule_id for row in quiet.alert_outbox()] == [rule.id]


def test_closing_the_ledger_lets_an_alert_on_its_way_finish(ledger_url: str) -> None:
    # A short-lived command (submit) closes its ledger right after the crossing: the close
    # waits (at most outbox.CLOSE_WAIT) for the background delivery, which records it.
    with receiver() as hook:
        hook.delay = 0.3
        ledger = Ledger.open(ledger_url)
        ledger.set_budget("acme", limit=10_000)
        rule = ledger.add_alert_rule("acme", channel="webhook", url=hook.url)
        ledger.reserve("acme", credits(9_000))
        ledger.close()
        assert len(hook.received) == 1
    with Ledger.open(ledger_url) as again:
        assert again.alert_counts()[rule.id].delivered == 1
