"""Refused submissions are recorded (:mod:`klingcost.refusals`): by ``GuardedClient``,
``AsyncGuardedClient`` and ``klingcost submit``, listed by ``klingcost holds --refused`` and
counted by ``klingcost report``; a failure to record never changes the refusal."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner, Result

from fake_fixtures import BODIES, KEY, _fake_session, fake_server  # noqa: F401
from klingcost import errors
from klingcost.budgets import HoldAmounts
from klingcost.cli import main
from klingcost.fake_server import FakeKling
from klingcost.guard import AsyncGuardedClient, GuardedClient
from klingcost.keys import create_key
from klingcost.ledger import Ledger
from klingcost.refusals import record_refusal

ENDPOINT = "videos/text2video"
BODY = BODIES[ENDPOINT]  # 7 units = 105,000 credits
COST = 105_000


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.db") as opened:
        opened.set_budget("company", limit=1_000_000, period="month")
        opened.set_budget("studio", limit=150_000, period="month", parent="company")
        yield opened


def test_a_guarded_client_records_the_refusal_and_sends_nothing(
    fake: FakeKling, ledger: Ledger
) -> None:
    with GuardedClient("studio", ledger=ledger, api_key=KEY, base_url=fake.base_url) as guard:
        guard.submit(ENDPOINT, BODY)  # 105,000 of 150,000
        with pytest.raises(errors.BudgetExceeded):
            guard.submit(ENDPOINT, BODY)
    assert len(fake.requests("POST")) == 1
    [refusal] = ledger.refusals()
    assert refusal.team == "studio" and refusal.hold_id is None
    data = refusal.data
    assert (data["reason"], data["needed"], data["left"], data["budget"]) == (
        "budget",
        COST,
        45_000,
        "studio",
    )
    assert data["period"] == "month" and data["source"] == "guard" and data["key_id"] is None
    assert data["job_class"]["model"] == "kling-v1-5" and data["job_class"]["duration"] == 10
    assert "external_task_id" not in data["job_class"]  # the job class, not the request
    assert len(list(ledger.holds())) == 1


def test_an_async_guarded_client_records_the_refusal(fake: FakeKling, ledger: Ledger) -> None:
    ledger.set_budget("studio", limit=1000)

    async def submit() -> None:
        async with AsyncGuardedClient(
            "studio", ledger=ledger, api_key=KEY, base_url=fake.base_url
        ) as guard:
            await guard.submit(ENDPOINT, BODY)

    with pytest.raises(errors.BudgetExceeded):
        anyio.run(submit)
    [refusal] = ledger.refusals(team="studio")
    assert refusal.data["reason"] == "budget" and refusal.data["left"] == 1000
    assert fake.requests("POST") == []


def test_a_failure_to_record_leaves_the_refusal_as_it_was(
    fake: FakeKling,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise errors.LedgerError("disk full")

    monkeypatch.setattr(ledger, "record_refusal", broken)
    ledger.set_budget("studio", limit=1000)
    with (
        caplog.at_level(logging.WARNING, logger="klingcost.refusals"),
        GuardedClient("studio", ledger=ledger, api_key=KEY, base_url=fake.base_url) as guard,
        pytest.raises(errors.BudgetExceeded, match="needs 105000"),
    ):
        guard.submit(ENDPOINT, BODY)
    assert "not recorded: LedgerError: disk full" in caplog.text


def test_the_proxy_records_concurrency_and_unpriced_refusals_with_its_key(ledger: Ledger) -> None:
    key = create_key(ledger, "studio", secret=b"s" * 48, max_concurrent=1).api_key
    amounts = HoldAmounts(1000, "video", 10, "credits")
    ledger.reserve("studio", amounts, key_id=key.id, max_open_for_key=1)
    with pytest.raises(errors.ConcurrencyExceeded) as caught:
        ledger.reserve("studio", amounts, key_id=key.id, max_open_for_key=1)
    assert record_refusal(ledger, caught.value, team="studio", key_id=key.id, source="proxy")
    unpriced = errors.UnpricedRequestError.__new__(errors.UnpricedRequestError)
    assert record_refusal(ledger, unpriced, team="studio", key_id=key.id, source="proxy")
    assert not record_refusal(ledger, ValueError("not a refusal"), team="studio")
    first, second = ledger.refusals()
    assert (first.data["reason"], first.data["needed"], first.data["left"]) == ("concurrency", 1, 0)
    assert second.data["reason"] == "unpriced"
    assert {first.data["key_id"], second.data["key_id"]} == {key.id}
    assert {first.data["source"], second.data["source"]} == {"proxy"}


# --- the command line -----------------------------------------------------------------------


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def env(fake: FakeKling, ledger: Ledger, tmp_path: Path) -> dict[str, str]:
    body = tmp_path / "job.json"
    body.write_text(json.dumps(BODY), encoding="utf-8")
    return {
        "KLINGCOST_API_KEY": KEY,
        "KLINGCOST_BASE_URL": fake.base_url,
        "KLINGCOST_LEDGER": str(ledger.path),
        "KLINGCOST_HOME": str(tmp_path / "home"),
        "KLINGCOST_PRICING": "",
        "KLINGCOST_HOOK_URL": "",
        "BODY": str(body),
    }


def test_submit_refused_is_recorded_and_listed_by_holds_refused(
    env: dict[str, str], fake: FakeKling
) -> None:
    assert run(env, "submit", "-t", "studio", "-e", ENDPOINT, env["BODY"]).exit_code == 0
    refused = run(env, "submit", "-t", "studio", "-e", ENDPOINT, env["BODY"])
    assert refused.exit_code == 3 and "needs 105000" in refused.stderr
    assert len(fake.requests("POST")) == 1
    listed = run(env, "holds", "--refused", "--json")
    assert listed.exit_code == 0
    [row] = json.loads(listed.stdout)
    assert (row["team"], row["reason"], row["needed"], row["left"]) == (
        "studio",
        "budget",
        COST,
        45_000,
    )
    table = run(env, "holds", "--refused").stdout
    assert "studio" in table and "budget" in table and "105000 credits" in table
    assert "videos/text2video kling-v1-5 pro 10" in table
    assert (
        run(env, "holds", "--refused", "--team", "company").stdout
        == "no refusals for team company\n"
    )
    # The holds themselves are listed as before.
    assert len(json.loads(run(env, "holds", "--json").stdout)) == 1


def test_report_counts_refusals(env: dict[str, str], ledger: Ledger) -> None:
    run(env, "submit", "-t", "studio", "-e", ENDPOINT, env["BODY"])
    for _ in range(2):
        run(env, "submit", "-t", "studio", "-e", ENDPOINT, env["BODY"])
    report = run(env, "report")
    assert report.exit_code == 0
    assert "refused: 2 (studio: budget 2); `klingcost holds --refused` lists them" in report.stdout
    data = json.loads(run(env, "report", "--format", "json").stdout)
    assert data["refusals"] == [{"team": "studio", "reason": "budget", "count": 2}]
    other_day = json.loads(
        run(
            env, "report", "--format", "json", "--since", "2000-01-01", "--until", "2000-01-02"
        ).stdout
    )
    assert other_day["refusals"] == []
