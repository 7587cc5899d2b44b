"""``klingcost alerts``, ``klingcost events``, and the forecast in ``budget show`` and
``report``, through the real command line (CliRunner) on both backends."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

from alert_receiver import receiver
from fake_fixtures import KEY, _fake_session, fake_server  # noqa: F401
from klingcost.budgets import HoldAmounts
from klingcost.cli import main
from klingcost.fake_server import FakeKling
from klingcost.ledger import Ledger

SECRET = "T0AAA/B0BBB/zzSECRETzz"


@pytest.fixture
def db(ledger_url: str) -> str:
    with Ledger.open(ledger_url) as ledger:
        ledger.set_budget("acme", limit=10_000, period="month")
    return ledger_url


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


def _spend(db: str, cost: int) -> None:
    with Ledger.open(db) as ledger:
        hold = ledger.reserve("acme", HoldAmounts(1000, "video", cost, "credits"))
        ledger.settle(hold.id, units_milli=1000, cost_minor=cost)


def test_add_list_test_deliver_remove(db: str) -> None:
    with receiver(f"/services/{SECRET}") as hook:
        added = run("alerts", "add", "--team", "acme", "--slack", hook.url, "--ledger", db)
        assert added.exit_code == 0, added.output
        assert "alert rule 1: soft, refused, over, forecast alerts of acme go to slack" in (
            added.output
        )
        listed = run("alerts", "list", "--ledger", db)
        assert "slack" in listed.output and "/…ETzz" in listed.output
        data = json.loads(run("alerts", "list", "--json", "--ledger", db).output)
        assert data[0]["url"].startswith("http://127.0.0.1:") and data[0]["on"] == [
            "soft",
            "refused",
            "over",
            "forecast",
        ]
        tested = run("alerts", "test", "1", "--ledger", db)
        assert tested.exit_code == 0 and "HTTP 200, test message delivered" in tested.output
        assert "klingcost alert test" in hook.received[0].body["text"]
        _spend(db, 9_000)  # crosses 80%: delivered at once by the process that wrote it
        hook.wait(2)
        assert "passed its soft threshold" in hook.received[1].body["text"]
        # 9,000 of 10,000 charged today: the budget runs out before the month ends, which
        # `alerts deliver` finds first, then delivers.
        delivered = run("alerts", "deliver", "--json", "--ledger", db)
        report = json.loads(delivered.output)
        assert delivered.exit_code == 0 and report["forecast_warnings"] == ["acme"]
        assert report["delivered"] == 1
        assert "will run out on" in hook.received[2].body["text"]
        counts = json.loads(run("alerts", "list", "--json", "--ledger", db).output)[0]
        assert (counts["pending"], counts["delivered"], counts["failed"]) == (0, 2, 0)
        removed = run("alerts", "remove", "1", "--ledger", db)
        assert removed.exit_code == 0 and "removed alert rule 1" in removed.output
    for result in (added, listed, tested, removed):
        assert SECRET not in result.output and "SECRET" not in result.output
    assert run("alerts", "list", "--ledger", db).output.startswith("no alert rules yet")


def test_a_url_from_stdin_stays_out_of_the_command_line(db: str) -> None:
    url = f"https://hooks.slack.com/services/{SECRET}"
    result = run("alerts", "add", "--team", "acme", "--slack", "-", "--on", "Soft, over",
                 "--ledger", db, stdin=url + "\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "soft, over alerts of acme go to slack https://hooks.slack.com/…ETzz" in result.output
    with Ledger.open(db) as ledger:
        assert ledger.alert_rules()[0].url == url


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--team", "nosuch", "--webhook", "https://a.example/h"], "no budget named 'nosuch'"),
        (["--team", "acme", "--webhook", "notaurl"], "--webhook: (not a URL: 7 characters)"),
        (["--team", "acme", "--slack", f"http://hooks.slack.com/{SECRET}"], "plain http"),
        (["--team", "acme"], "give exactly one of --webhook, --slack, --feishu or --dingtalk"),
        (["--team", "acme", "--webhook", "https://a/b", "--on", "sometimes"], "'sometimes'"),
    ],
)
def test_bad_input_is_exit_2_in_one_line(db: str, args: list[str], said: str) -> None:
    result = run("alerts", "add", *args, "--ledger", db)
    assert result.exit_code == 2
    assert said in result.output and SECRET not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error) == 1
    with Ledger.open(db) as ledger:
        assert ledger.alert_rules() == []


def test_a_failed_test_message_and_a_failed_delivery_exit_1(db: str) -> None:
    with receiver(f"/hook/{SECRET}") as hook:
        hook.answers = [(500, "down")]
        run("alerts", "add", "--team", "acme", "--webhook", hook.url, "--ledger", db)
        tested = run("alerts", "test", "1", "--ledger", db)
        assert tested.exit_code == 1 and "HTTP 500: down" in tested.output
        with Ledger.open(db) as ledger:
            ledger.deliver_in_background = False
            ledger.reserve("acme", HoldAmounts(1000, "video", 9_000, "credits"))
        delivered = run("alerts", "deliver", "--ledger", db)
    assert delivered.exit_code == 1
    assert "alerts: 0 delivered, 1 to retry, 0 given up" in delivered.output
    assert "HTTP 500: down; again at" in delivered.output
    assert SECRET not in tested.output + delivered.output
    assert run("alerts", "test", "7", "--ledger", db).exit_code == 2


def test_events_shows_the_log_filtered(db: str) -> None:
    with Ledger.open(db) as ledger:
        ledger.deliver_in_background = False
        for _ in range(3):
            ledger.reserve("acme", HoldAmounts(1000, "video", 3_000, "credits"))
    every = json.loads(run("events", "--json", "--ledger", db).output)
    kinds = ["budget_set", "reserve", "reserve", "reserve", "soft_threshold"]
    assert [e["kind"] for e in every] == kinds
    soft = json.loads(run("events", "--kind", "soft_threshold", "--json", "--ledger", db).output)
    assert len(soft) == 1 and soft[0]["data"]["used"] == 9_000
    last = json.loads(run("events", "--limit", "2", "--format", "json", "--ledger", db).output)
    assert [e["id"] for e in last] == [every[-2]["id"], every[-1]["id"]]
    assert run("events", "--since", "2999-01-01", "--ledger", db).output.strip() == "no events"
    assert len(run("events", "--since", "1h", "--format", "jsonl", "--ledger", db).output
               .splitlines()) == 5  # fmt: skip
    table = run("events", "--team", "acme", "--ledger", db)
    assert table.exit_code == 0 and "soft_threshold" in table.output
    assert run("events", "--team", "nosuch", "--ledger", db).exit_code == 2
    assert run("events", "--since", "yesterday", "--ledger", db).exit_code == 2


def test_budget_show_and_report_give_the_forecast(db: str) -> None:
    _spend(db, 2_000)
    shown = run("budget", "show", "acme", "--ledger", db)
    assert "burn rate" in shown.output and "credits/day" in shown.output
    assert "least-squares fit" in shown.output and "runs out" in shown.output
    data = json.loads(run("budget", "show", "acme", "--json", "--ledger", db).output)
    assert set(data["forecast"]) == {"rate_per_day", "runs_out_on", "method"}
    assert data["forecast"]["method"].endswith("open holds excluded")
    report = json.loads(run("report", "--format", "json", "--ledger", db).output)
    assert report["forecasts"]["acme"]["rate_per_day"] == data["forecast"]["rate_per_day"]
    table = run("report", "--ledger", db).output
    assert "forecast (at today's burn rate)" in table and "burn rate/day" in table
    md = run("report", "--format", "md", "--ledger", db).output
    assert "**Forecast**" in md and "| acme |" in md


def test_sync_delivers_the_alerts_that_are_due(db: str, fake: FakeKling) -> None:
    with receiver() as hook:
        hook.answers = [(500, "down"), (200, "ok")]
        with Ledger.open(db) as ledger:
            ledger.deliver_in_background = False
            ledger.add_alert_rule("acme", channel="webhook", url=hook.url, on=["soft"])
            ledger.reserve("acme", HoldAmounts(1000, "video", 9_000, "credits"))
        assert run("alerts", "deliver", "--ledger", db).exit_code == 1  # the 500
        with Ledger.open(db) as ledger:  # make the retry due now
            ledger.execute("UPDATE alert_outbox SET next_attempt_at = '2000-01-01T00:00:00+00:00'")
        env = {"KLINGCOST_API_KEY": KEY, "KLINGCOST_BASE_URL": fake.base_url}
        result = CliRunner().invoke(main, ["sync", "--ledger", db], env=env)
        assert result.exit_code == 0, result.output
        assert "alerts: 1 delivered, 0 to retry, 0 given up" in result.output
        assert len(hook.received) == 2
