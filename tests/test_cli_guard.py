"""``klingcost submit``, ``sync``, ``hooks`` and ``demo`` through CliRunner, on the fake API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fake_fixtures import BODIES, KEY, _fake_session, fake_server  # noqa: F401
from klingcost.cli import main
from klingcost.fake_server import FakeKling
from klingcost.ledger import Ledger

ENDPOINT = "videos/text2video"
BODY = BODIES[ENDPOINT]  # 7 units = 105,000 credits


@pytest.fixture
def env(fake: FakeKling, tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("acme", limit=1_000_000, period="month")
        ledger.set_budget("studio", limit=250_000, period="month", parent="acme")
    return {
        "KLINGCOST_API_KEY": KEY,
        "KLINGCOST_BASE_URL": fake.base_url,
        "KLINGCOST_LEDGER": str(path),
        "KLINGCOST_HOME": str(tmp_path / "home"),
        "KLINGCOST_PRICING": "",
        "KLINGCOST_HOOK_URL": "",
    }


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=stdin, catch_exceptions=False)


def body_file(tmp_path: Path, body: dict[str, Any] | str = BODY) -> str:
    path = tmp_path / "job.json"
    path.write_text(body if isinstance(body, str) else json.dumps(body), encoding="utf-8")
    return str(path)


def holds(env: dict[str, str]) -> list[tuple[str, str | None]]:
    with Ledger.open(env["KLINGCOST_LEDGER"]) as ledger:
        return [(h.state, h.task_id) for h in ledger.holds()]


# --- submit -------------------------------------------------------------------------------


def test_submit_prints_the_estimate_the_hold_and_the_task(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    result = run(env, "submit", "--team", "studio", "--endpoint", "text2video", body_file(tmp_path))
    assert result.exit_code == 0, result.output
    [(state, task_id)] = holds(env)
    assert state == "submitted" and task_id is not None
    lines = result.stdout.splitlines()
    assert lines[0] == ("estimate: 7 video units = 105000 credits (videos/text2video kling-v1-5)")
    assert lines[1] == f"hold 1 on studio: submitted, task {task_id}"
    assert len(fake.requests("POST")) == 1


def test_submit_reads_stdin_and_prints_json(env: dict[str, str]) -> None:
    result = run(
        env, "submit", "-t", "studio", "-e", ENDPOINT, "--json", "-", stdin=json.dumps(BODY)
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["team"] == "studio" and data["hold"] == 1 and data["state"] == "submitted"
    assert data["estimate"]["endpoint"] == ENDPOINT and data["task_id"] == holds(env)[0][1]
    assert data["resent"] is False


def test_submit_with_a_key_twice_sends_once(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    job = body_file(tmp_path)
    first = run(env, "submit", "-t", "studio", "-e", ENDPOINT, "--key", "job-1", job)
    again = run(env, "submit", "-t", "studio", "-e", ENDPOINT, "--key", "job-1", job)
    assert first.exit_code == again.exit_code == 0
    assert "hold 1 (key job-1) already existed: nothing was sent again" in again.stdout
    assert len(fake.requests("POST")) == 1


def test_refused_submission_exits_3_and_says_why(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    job = body_file(tmp_path)
    assert run(env, "submit", "-t", "studio", "-e", ENDPOINT, job).exit_code == 0
    assert run(env, "submit", "-t", "studio", "-e", ENDPOINT, job).exit_code == 0
    result = run(env, "submit", "-t", "studio", "-e", ENDPOINT, job)
    assert result.exit_code == 3
    message = result.stderr
    assert "budget 'studio'" in message  # which team
    assert "needs 105000 credits" in message  # how much
    assert "40000 of 250000 credits left" in message  # what was left
    assert "period month" in message  # in which period
    assert result.stdout == ""
    assert len(fake.requests()) == 2  # the refused one sent nothing


@pytest.mark.parametrize(
    "job",
    [
        {"endpoint": "text2video", **BODY},  # an endpoint field beside the body's own
        {"endpoint": ENDPOINT, "body": BODY},  # the batch line's form
    ],
)
def test_submit_takes_the_endpoint_from_the_job(
    env: dict[str, str], fake: FakeKling, tmp_path: Path, job: dict[str, Any]
) -> None:
    result = run(env, "submit", "-t", "studio", "--json", body_file(tmp_path, job))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["estimate"]["endpoint"] == ENDPOINT
    [task] = fake.state.tasks.values()
    assert task.body == BODY  # what the API gets is the body alone


def test_submit_without_an_endpoint_exits_2_and_sends_nothing(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    result = run(env, "submit", "-t", "studio", body_file(tmp_path))
    assert result.exit_code == 2
    assert 'give --endpoint, or an "endpoint" field in the job' in result.stderr
    assert holds(env) == [] and fake.requests() == []


def test_a_budget_without_a_period_says_so_when_it_refuses(
    env: dict[str, str], tmp_path: Path
) -> None:
    with Ledger.open(env["KLINGCOST_LEDGER"]) as ledger:
        ledger.set_budget("acme", limit=1_000, period="none")
    result = run(env, "submit", "-t", "studio", "-e", ENDPOINT, body_file(tmp_path))
    assert result.exit_code == 3
    assert "1000 of 1000 credits left (the budget has no period)" in result.stderr


def test_a_dollar_budget_counts_dollars(env: dict[str, str], tmp_path: Path) -> None:
    assert run(env, "budget", "set", "us", "--unit", "usd", "--limit", "10").exit_code == 0
    job = body_file(tmp_path, {"prompt": "a ship"})  # kling-v1 std 5 s: 1 unit = USD 0.14
    result = run(env, "submit", "-t", "us", "-e", ENDPOINT, "--provider", "kling-global", job)
    assert result.exit_code == 0, result.output
    assert "= 0.14 usd" in result.stdout
    status = json.loads(run(env, "budget", "show", "us", "--json").stdout)
    assert (status["held"], status["available"]) == ("0.14", "9.86")


def test_refused_by_a_parent_names_the_parent(env: dict[str, str], tmp_path: Path) -> None:
    with Ledger.open(env["KLINGCOST_LEDGER"]) as ledger:
        ledger.set_budget("acme", limit=100_000, period="week")
    result = run(env, "submit", "-t", "studio", "-e", ENDPOINT, body_file(tmp_path))
    assert result.exit_code == 3
    assert "budget 'acme' (on the path of 'studio') refused" in result.stderr
    assert "100000 of 100000 credits left in period week" in result.stderr


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ({**BODY, "duration": "7"}, "duration"),
        ({"prompt": "x" * 501}, "prompt"),
        ("{not json", "not JSON"),
        ("[1, 2]", "body"),
    ],
)
def test_invalid_body_exits_2_and_sends_nothing(
    env: dict[str, str], fake: FakeKling, tmp_path: Path, body: Any, shown: str
) -> None:
    result = run(env, "submit", "-t", "studio", "-e", ENDPOINT, body_file(tmp_path, body))
    assert result.exit_code == 2, result.output
    assert shown in result.stderr
    assert fake.requests() == [] and holds(env) == []


def test_submit_wait_settles(env: dict[str, str], fake: FakeKling, tmp_path: Path) -> None:
    fake.configure(done_after=0.2, drift={"kling-v1-5": "1.1"})
    args = ["submit", "-t", "studio", "-e", ENDPOINT, "--wait", "--interval", "0.05"]
    result = run(env, *args, body_file(tmp_path))
    assert result.exit_code == 0, result.output
    assert "settled: settled at final_unit_deduction 7.7" in result.stdout
    assert holds(env)[0][0] == "settled"
    data = json.loads(run(env, *args, "--json", body_file(tmp_path)).stdout)
    assert data["settlement"] == {
        "action": "settled",
        "note": "settled at final_unit_deduction 7.7",
        "units": "7.7",
        "cost": "115500",
        "currency": "credits",
    }


def test_submit_wait_json_shows_a_dollar_cost_in_dollars(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    fake.configure(done_after=0.1)  # kling-v1 std 5 s: charged 1 unit, USD 0.14 (not "14")
    assert run(env, "budget", "set", "us", "--unit", "usd", "--limit", "10").exit_code == 0
    args = ["submit", "-t", "us", "-e", ENDPOINT, "--provider", "kling-global", "--json"]
    args += ["--wait", "--interval", "0.05", body_file(tmp_path, {"prompt": "a ship"})]
    result = run(env, *args)
    assert result.exit_code == 0, result.output
    settlement = json.loads(result.stdout)["settlement"]
    assert (settlement["units"], settlement["cost"], settlement["currency"]) == (
        "1",
        "0.14",
        "usd",
    )


def test_an_ambiguous_failure_says_what_became_of_the_hold(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    fake.set_faults({"kind": "server_error", "create": True})
    result = run(env, "submit", "-t", "studio", "-e", ENDPOINT, body_file(tmp_path))
    assert result.exit_code == 1
    assert "server internal error" in result.stderr
    assert "hold 1 on 'studio' stays counted" in result.stderr and "klingcost sync" in result.stderr
    fake.set_faults({"kind": "policy"})
    result = run(env, "submit", "-t", "studio", "-e", ENDPOINT, body_file(tmp_path))
    assert result.exit_code == 1
    assert "hold 2 on 'studio' was voided" in result.stderr
    assert KEY not in result.output


def test_submit_without_a_key_fails_cleanly(env: dict[str, str], tmp_path: Path) -> None:
    result = run({**env, "KLINGCOST_API_KEY": ""}, "submit", "-t", "studio", "-e", ENDPOINT,
                 body_file(tmp_path))  # fmt: skip
    assert result.exit_code == 1
    assert "no Kling API key" in result.stderr


def test_submit_fills_notify_hook_from_the_environment(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    hook = "http://127.0.0.1:9/hooks/0123456789abcdef0123"
    result = run({**env, "KLINGCOST_HOOK_URL": hook}, "submit", "-t", "studio", "-e", ENDPOINT,
                 "--external-ids", body_file(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    [task] = fake.state.tasks.values()
    assert task.body["notify_hook"] == hook and task.body["external_task_id"]


# --- sync ---------------------------------------------------------------------------------


def test_sync_json(env: dict[str, str], fake: FakeKling, tmp_path: Path) -> None:
    job = body_file(tmp_path)
    run(env, "submit", "-t", "studio", "-e", ENDPOINT, job)
    fake.set_faults({"kind": "fail_task"})
    run(env, "submit", "-t", "studio", "-e", ENDPOINT, job)
    result = run(env, "sync", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data.pop("alerts")["delivered"] == 0  # sync delivers alerts too (none are set up)
    assert data == {
        "examined": 2,
        "settled": 1,
        "voided": 1,
        "pending": 0,
        "unresolved": [],
        "errors": [],
        "awaiting_evidence": [],
        "replayed": 0,
        "passes": 1,
        "timed_out": False,
    }
    again = json.loads(run(env, "sync", "--json", "--team", "studio").stdout)
    assert again["examined"] == 0


def test_sync_text_lists_unresolved_and_exits_1_on_errors(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    job = body_file(tmp_path)
    fake.set_faults({"kind": "drop", "create": True})
    assert run(env, "submit", "-t", "studio", "-e", ENDPOINT, job).exit_code == 1  # lost
    run(env, "submit", "-t", "studio", "-e", ENDPOINT, job)
    fake.set_faults({"kind": "unavailable", "method": "GET"})
    result = run(env, "sync")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == (
        "examined 2: 0 settled, 0 voided, 0 still running, 1 unresolved, 0 awaiting evidence, "
        "1 errors"
    )
    assert "hold 1: unknown with no task id and no external_task_id" in result.stdout
    assert "hold 2: ServerError" in result.stdout


def test_submit_wait_on_a_failed_task_exits_1(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    fake.set_faults({"kind": "fail_task"})
    args = ["submit", "-t", "studio", "-e", ENDPOINT, "--wait", "--interval", "0.01"]
    result = run(env, *args, body_file(tmp_path))
    assert result.exit_code == 1
    assert "voided: task failed: the fake task failed" in result.stdout
    assert holds(env)[0][0] == "voided"


def test_submit_wait_that_times_out_still_shows_the_task_and_exits_1(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    fake.configure(done_after=30)
    args = ["submit", "-t", "studio", "-e", ENDPOINT, "--wait", "--interval", "0.05"]
    result = run(env, *args, "--timeout", "0.2", body_file(tmp_path))
    assert result.exit_code == 1
    [(state, task_id)] = holds(env)
    assert state == "submitted" and f"task {task_id}" in result.stdout  # shown before waiting
    assert "`klingcost sync` settles it later" in result.stderr
    assert "Traceback" not in result.output
    data = json.loads(run(env, *args, "--timeout", "0.2", "--json", body_file(tmp_path)).stdout)
    assert data["settlement"]["action"] == "timeout" and data["task_id"] is not None


def test_sync_wait_repeats_until_done(env: dict[str, str], fake: FakeKling, tmp_path: Path) -> None:
    # Long enough that the second task still runs at sync's first pass on a loaded machine
    # (0.4 s was not: a submit there takes 0.2 s to 1.4 s).
    fake.configure(done_after=1.5)
    for _ in range(2):
        run(env, "submit", "-t", "studio", "-e", ENDPOINT, body_file(tmp_path))
    result = run(env, "sync", "--wait", "--interval", "0.1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passes"] > 1 and len(fake.requests("GET")) > 2  # more than one pass
    # The counts add up over the passes: both holds, settled, each counted once.
    assert (report["examined"], report["settled"], report["pending"]) == (2, 2, 0)
    assert [state for state, _ in holds(env)] == ["settled", "settled"]


def test_sync_wait_that_times_out_says_so_and_exits_1(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    fake.configure(done_after=30)
    run(env, "submit", "-t", "studio", "-e", ENDPOINT, body_file(tmp_path))
    args = ["sync", "--wait", "--interval", "0.05", "--timeout", "0.2"]
    result = run(env, *args)
    assert result.exit_code == 1
    assert "1 task(s) still running after 0.2 s" in result.stderr
    report = json.loads(run(env, *args, "--json").stdout)
    assert (report["pending"], report["timed_out"]) == (1, True)


def test_sync_lists_a_task_the_api_does_not_know_and_goes_on(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    run(env, "submit", "-t", "studio", "-e", ENDPOINT, body_file(tmp_path))
    with Ledger.open(env["KLINGCOST_LEDGER"]) as ledger:
        lost = ledger.reserve("studio", ledger.get_hold(1).estimate, meta={"endpoint": ENDPOINT})
        ledger.attach(lost.id, "999999999999")
    result = run(env, "sync")
    assert result.exit_code == 0, result.output  # not an error of the run: a person decides
    assert "1 settled" in result.stdout and "1 unresolved" in result.stdout
    assert "the API has no task '999999999999'" in result.stdout
    assert f"klingcost holds void {lost.id} --reason" in result.stdout
    assert holds(env)[1][0] == "submitted"  # still counted


def test_sync_without_a_key_fails_cleanly(env: dict[str, str]) -> None:
    result = run({**env, "KLINGCOST_API_KEY": ""}, "sync")
    assert result.exit_code == 1 and "no Kling API key" in result.stderr


# --- hooks and demo -----------------------------------------------------------------------


def test_hooks_help(env: dict[str, str]) -> None:
    group = run(env, "hooks", "--help")
    assert group.exit_code == 0 and "serve" in group.stdout
    serve = run(env, "hooks", "serve", "--help")
    assert serve.exit_code == 0
    for option in ("--host", "--port", "--secret", "--confirm", "--ledger"):
        assert option in serve.stdout


def test_hooks_serve_without_a_key_fails_before_listening(env: dict[str, str]) -> None:
    result = run({**env, "KLINGCOST_API_KEY": ""}, "hooks", "serve", "--port", "0")
    assert result.exit_code == 1 and "no Kling API key" in result.stderr


def test_demo_runs_and_prints_budgets_and_spending(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--keep", str(tmp_path / "demo")], env={
        "KLINGCOST_API_KEY": "", "KLINGCOST_BASE_URL": "", "KLINGCOST_LEDGER": "",
        "KLINGCOST_PRICING": "",
    })  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "fake Kling API at http://127.0.0.1:" in out
    assert out.count("REFUSED") == 2 and "INVALID" in out and "UNKNOWN" in out
    assert "budget   " in out and "team     settled" in out
    for team in ("acme", "studio", "ads"):
        assert f"\n{team} " in out
    assert "7 settled, 0 voided, 0 unresolved" in out
    assert out.rstrip().endswith(
        "6 submitted, 2 refused by a budget, 1 invalid, 1 with a lost answer (resolved by sync)"
    )
    with Ledger.open(tmp_path / "demo" / "demo-ledger.db") as ledger:
        assert {h.state for h in ledger.holds()} == {"settled"}
        assert ledger.check() == []


# --- Ctrl-C during submit says which hold stays counted (issue 13, item 20) ---------------


def interrupted(env: dict[str, str], args: list[str], ready: Any) -> tuple[int, str]:
    """Run ``klingcost ARGS`` as its own process, send SIGINT once ``ready()``; (code, stderr)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cli = "from klingcost.cli import main; main(prog_name='klingcost')"
    process = subprocess.Popen(
        [sys.executable, "-c", cli, *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, err


@pytest.mark.parametrize("external_ids", [False, True])
def test_ctrl_c_while_the_api_answers_names_the_hold_and_sync(
    env: dict[str, str], fake: FakeKling, tmp_path: Path, external_ids: bool
) -> None:
    fake.set_faults({"kind": "slow", "method": "POST", "ms": 20_000})
    args = ["submit", "-t", "studio", "-e", ENDPOINT, body_file(tmp_path)]
    args += ["--external-ids"] if external_ids else []
    code, err = interrupted(env, args, lambda: bool(fake.requests("POST")))
    assert code == 1
    [(state, task_id)] = holds(env)
    assert (state, task_id) == ("unknown", None)
    assert err.startswith("Error: interrupted: hold 1 on 'studio' stays counted: ")
    assert "`klingcost sync` settles it" in err and "Traceback" not in err


def test_ctrl_c_during_submit_wait_names_the_hold_its_task_and_sync(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    fake.configure(done_after=60)
    args = ["submit", "-t", "studio", "-e", ENDPOINT, "--wait", "--interval", "0.2"]
    args += [body_file(tmp_path)]
    code, err = interrupted(env, args, lambda: len(fake.requests("GET")) >= 1)
    assert code == 1
    [(state, task_id)] = holds(env)
    assert state == "submitted" and task_id
    assert err == (
        f"Error: interrupted while waiting: hold 1 on 'studio' stays counted: task {task_id}; "
        "`klingcost sync` settles it when the task ends\n"
    )


# --- defects the review of issue 11 reproduced --------------------------------------------


@pytest.mark.parametrize("command", ["submit", "sync", "hooks serve"])
def test_a_mistyped_ledger_is_refused_not_started_empty(
    env: dict[str, str], fake: FakeKling, tmp_path: Path, command: str
) -> None:
    typo = tmp_path / "ledgr.db"
    args = {
        "submit": ["submit", "-t", "studio", "-e", ENDPOINT, body_file(tmp_path)],
        "sync": ["sync"],
        "hooks serve": ["hooks", "serve", "--port", "0", "--secret", "s" * 32],
    }[command]
    result = run(env, *args, "--ledger", str(typo))
    assert result.exit_code == 2, result.output
    assert f"no ledger at {typo}: check --ledger / KLINGCOST_LEDGER" in result.stderr
    assert not typo.exists() and fake.requests() == []
