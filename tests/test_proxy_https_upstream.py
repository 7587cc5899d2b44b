"""``klingcost proxy`` in front of an https upstream, as openai-hk and Kling's own host are: the
fake Kling API serving TLS with a certificate of its own, which the operator trusts through
``SSL_CERT_FILE``. Without that trust, a create is refused before a byte is sent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fake_fixtures import KEY
from klingcost import keys
from klingcost.ledger import Ledger
from klingcost.testing import FakeKling
from proxy_fixtures import BODY, COST, ENDPOINT, Keys
from proxy_processes import proxy_env, running_proxy


@pytest.fixture(scope="module")
def https_fake() -> Iterator[FakeKling]:
    with FakeKling(api_key=KEY, tls=True, done_after=0.1) as fake:
        assert fake.base_url.startswith("https://")
        yield fake


def started(ledger_path: Path, home: Path, fake: FakeKling, *, trusted: bool) -> dict[str, str]:
    """The proxy's environment, its ledger holding a budget for one job and a key for it."""
    env = proxy_env(home, str(ledger_path), fake.base_url)
    env = {k: v for k, v in env.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    if trusted:
        env["SSL_CERT_FILE"] = str(fake.cert)
    with Ledger.open(str(ledger_path)) as ledger:
        ledger.set_budget("studio", limit=COST, period="month")
    return env


def make_key(ledger_path: Path, env: dict[str, str]) -> keys.NewKey:
    with Ledger.open(str(ledger_path)) as ledger:  # the server secret: under env's home
        return keys.create_key(ledger, "studio", secret=keys.server_secret(env))


@pytest.mark.slow
def test_a_job_through_an_https_upstream_is_held_forwarded_and_settled(
    https_fake: FakeKling, tmp_path: Path
) -> None:
    https_fake.reset()
    ledger_path = tmp_path / "ledger.db"
    env = started(ledger_path, tmp_path / "home", https_fake, trusted=True)
    new = make_key(ledger_path, env)
    with running_proxy(env, tmp_path, extra=("--no-callbacks",)) as proxy:
        auth = Keys.auth(new)
        made = httpx.post(f"{proxy.base_url}/v1/{ENDPOINT}", json=BODY, headers=auth, timeout=30)
        assert made.status_code == 200, made.text
        task_id = made.json()["data"]["task_id"]
        assert made.headers["X-Klingcost-Team"] == "studio"
        status = ""
        for _ in range(100):  # the client's own polls, through the proxy, settle the hold
            query = f"{proxy.base_url}/v1/{ENDPOINT}/{task_id}"
            status = httpx.get(query, headers=auth, timeout=30).json()["data"]["task_status"]
            if status == "succeed":
                break
            time.sleep(0.05)
        assert status == "succeed"
    assert len(https_fake.requests("POST", ENDPOINT)) == 1
    with Ledger.open(str(ledger_path)) as ledger:
        (hold,) = ledger.holds()
    assert (hold.task_id, hold.state, hold.cost_minor) == (task_id, "settled", COST)


@pytest.mark.slow
def test_an_upstream_certificate_not_trusted_refuses_the_create_before_it_is_sent(
    https_fake: FakeKling, tmp_path: Path
) -> None:
    https_fake.reset()
    ledger_path = tmp_path / "ledger.db"
    env = started(ledger_path, tmp_path / "home", https_fake, trusted=False)
    new = make_key(ledger_path, env)
    with running_proxy(env, tmp_path, extra=("--no-callbacks",)) as proxy:
        url = f"{proxy.base_url}/v1/{ENDPOINT}"
        answer = httpx.post(url, json=BODY, headers=Keys.auth(new), timeout=30)
    assert (answer.status_code, answer.json()["code"]) == (502, 5001), answer.text
    assert "nothing was sent" in answer.json()["message"]
    assert https_fake.requests("POST", ENDPOINT) == []
    with Ledger.open(str(ledger_path)) as ledger:
        (hold,) = ledger.holds()
    assert hold.state == "voided"  # the budget is whole again
