"""Redaction catches any run of 8 or more characters of a secret, in any case (issue 13, item 12).

The review had an API error echo the key upper-cased, or its first 20 characters: the exact-form
redaction missed both, and they were printed and stored in ``holds.reason`` and the append-only
``events``. Here the real fake API echoes the key so, through the guard, ``sync`` and the CLI, on
both backends, and nothing with a run of the key reaches the ledger or the terminal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from fake_fixtures import BODIES, KEY, _fake_session, fake_server  # noqa: F401
from klingcost import errors
from klingcost.api.client import AsyncKlingClient
from klingcost.api.redact import MIN_RUN, redact, shows
from klingcost.cli import main
from klingcost.fake_server import FakeKling
from klingcost.guard import GuardedClient
from klingcost.ledger import Ledger
from klingcost.sync import sync_holds

ENDPOINT = "videos/text2video"
BODY = BODIES[ENDPOINT]
ECHOES = {
    "upper": KEY.upper(),
    "first-20": KEY[:20],
    "last-8": KEY[-8:],
    "lower-middle": KEY[4:16].lower(),
    "bearer": f"Bearer {KEY.swapcase()}",
}


def leaks(text: str) -> list[str]:
    """Every run of MIN_RUN characters of KEY that ``text`` holds, case-insensitively."""
    folded, key = text.casefold(), KEY.casefold()
    return [
        key[i : i + MIN_RUN]
        for i in range(len(key) - MIN_RUN + 1)
        if key[i : i + MIN_RUN] in folded
    ]


# --- the helper ---------------------------------------------------------------------------


@pytest.mark.parametrize("echo", list(ECHOES.values()), ids=list(ECHOES))
def test_any_run_of_eight_is_redacted(echo: str) -> None:
    text = f"invalid key {echo}: check it"
    cleaned = redact(text, KEY)
    assert leaks(cleaned) == [] and "<redacted>" in cleaned
    assert cleaned.startswith("invalid key ") and cleaned.endswith(": check it")


def test_seven_characters_are_not_a_secret() -> None:
    text = f"model {KEY[:7]} is fine"  # "hk-test": too common to be the key
    assert redact(text, KEY) == text and not shows(text, KEY)


def test_escaped_forms_are_redacted() -> None:
    key = "sk-x'y\"z\\0123456789"
    for form in (repr(key), ascii(key), repr(key.encode())):
        assert "0123456789" not in redact(f"got {form}", key)


def test_a_short_secret_is_redacted_whole_in_any_case() -> None:
    assert redact("token AbC123 and abc123", "abc123") == "token <redacted> and <redacted>"


def test_several_secrets_at_once() -> None:
    hook = "s3cret-hook-path-0123456789"
    cleaned = redact(f"{KEY[:12]} posted to /hooks/{hook[:10]}", KEY, hook)
    assert cleaned == "<redacted> posted to /hooks/<redacted>"


@given(st.text(max_size=60), st.text(max_size=60), st.integers(0, len(KEY) - MIN_RUN))
def test_no_run_survives_anywhere(prefix: str, suffix: str, start: int) -> None:
    run = KEY[start:][: MIN_RUN + (start % 5)]
    cleaned = redact(prefix + run.upper() + suffix, KEY)
    assert run.casefold() not in cleaned.casefold()


# --- through the guard, sync and the CLI, on both backends --------------------------------


@pytest.fixture
def ledger(make_ledger: Callable[..., Ledger]) -> Ledger:
    opened = make_ledger()
    opened.set_budget("studio", limit=10_000_000, period="month")
    return opened


def stored(ledger: Ledger) -> str:
    """Everything the ledger holds that text can hide in: reasons and event data."""
    holds = [h.reason or "" for h in ledger.holds()]
    return "\n".join(holds + [json.dumps(e.data) for e in ledger.events()])


@pytest.mark.parametrize("echo", list(ECHOES.values()), ids=list(ECHOES))
@pytest.mark.parametrize(("kind", "state"), [("policy", "voided"), ("server_error", "unknown")])
def test_an_echoed_key_never_reaches_the_ledger(
    fake: FakeKling, ledger: Ledger, echo: str, kind: str, state: str
) -> None:
    fake.set_faults({"kind": kind, "message": f"the key {echo} is not allowed here"})
    with (
        GuardedClient("studio", ledger=ledger, api_key=KEY, base_url=fake.base_url) as guard,
        pytest.raises(errors.KlingAPIError) as caught,
    ):
        guard.submit(ENDPOINT, BODY)
    [hold] = ledger.holds()
    assert hold.state == state and "<redacted>" in (hold.reason or "")
    assert leaks(stored(ledger)) == []
    assert leaks(str(caught.value) + repr(caught.value)) == []


def test_an_echoed_key_never_reaches_syncs_report(fake: FakeKling, ledger: Ledger) -> None:
    with GuardedClient("studio", ledger=ledger, api_key=KEY, base_url=fake.base_url) as guard:
        guard.submit(ENDPOINT, BODY)
    fake.set_faults({"kind": "error", "method": "GET", "message": f"who is {KEY.upper()}?"})

    async def run() -> Any:
        async with AsyncKlingClient(KEY, base_url=fake.base_url, max_retries=0) as client:
            return await sync_holds(ledger, client)

    report = anyio.run(run)
    assert len(report.errors) == 1 and leaks(json.dumps(report.to_dict())) == []
    assert leaks(stored(ledger)) == []


def test_an_echoed_key_never_reaches_the_terminal(fake: FakeKling, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("studio", limit=10_000_000, period="month")
    job = tmp_path / "job.json"
    job.write_text(json.dumps(BODY), encoding="utf-8")
    fake.set_faults({"kind": "server_error", "message": f"bad {KEY[:20]} / {KEY.upper()}"})
    env = {
        "KLINGCOST_API_KEY": KEY,
        "KLINGCOST_BASE_URL": fake.base_url,
        "KLINGCOST_LEDGER": str(path),
        "KLINGCOST_HOME": str(tmp_path / "home"),
        "KLINGCOST_PRICING": "",
        "KLINGCOST_HOOK_URL": "",
    }
    result = CliRunner().invoke(main, ["submit", "-t", "studio", "-e", ENDPOINT, str(job)], env=env)
    assert result.exit_code == 1 and "<redacted>" in result.stderr
    assert leaks(result.output) == []
    holds = CliRunner().invoke(main, ["holds", "--json"], env=env)
    assert holds.exit_code == 0 and leaks(holds.output) == []


def test_an_answer_echoing_the_key_is_stored_redacted(fake: FakeKling, ledger: Ledger) -> None:
    """The texts a settlement stores come from the API: a failure message echoing the key."""
    with GuardedClient("studio", ledger=ledger, api_key=KEY, base_url=fake.base_url) as guard:
        submission = guard.submit(ENDPOINT, BODY)
    answer = {
        "code": 0,
        "data": {
            "task_id": submission.task_id,
            "task_status": "failed",
            "task_status_msg": f"quota of {KEY.upper()} exhausted",
        },
    }
    fake.set_faults({"kind": "malformed", "method": "GET", "body": json.dumps(answer)})

    async def run() -> Any:
        async with AsyncKlingClient(KEY, base_url=fake.base_url, max_retries=0) as client:
            return await sync_holds(ledger, client)

    assert anyio.run(run).voided == 1
    hold = ledger.get_hold(submission.hold.id)
    assert hold.reason == "task failed: quota of <redacted> exhausted"
    assert leaks(stored(ledger)) == []
