"""``klingcost proxy`` in front of an https upstream, as openai-hk and Kling's own host are: the
fake Kling API serving TLS with a certificate of its own, which the operator trusts through
``SSL_CERT_FILE``. Without that trust, a create is refused before a byte is sent."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fake_fixtures import KEY
from klingcost import keys
from klingcost.ledger import Hold, Ledger
from klingcost.testing import FakeKling
from proxy_fixtures import BODY, COST, ENDPOINT, Keys
from proxy_processes import proxy_env, running_proxy


@pytest.fixture(scope="module")
def https_fake() -> Iterator[FakeKling]:
    with FakeKling(api_key=KEY, tls=True, done_after=0.1) as fake:
        assert fake.base_url.startswith("https://")
        yield fake


@contextlib.contextmanager
def proxied(fake: FakeKling, directory: Path, *, trusted: bool) -> Iterator[Proxied]:
    """``klingcost proxy --no-callbacks`` in front of ``fake``, trusting its certificate through
    ``SSL_CERT_FILE`` or not; its ledger (``directory/ledger.db``) holds a budget for one job
    and a key for it."""
    fake.reset()
    ledger_path = directory / "ledger.db"
    env = proxy_env(directory / "home", str(ledger_path), fake.base_url)
    env = {k: v for k, v in env.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    if trusted:
        env["SSL_CERT_FILE"] = str(fake.cert)
    with Ledger.open(str(ledger_path)) as ledger:  # the server secret: under env's home
        ledger.set_budget("studio", limit=COST, period="month")
        new = keys.create_key(ledger, "studio", secret=keys.server_secret(env))
    with running_proxy(env, directory, extra=("--no-callbacks",)) as proxy:
        yield Proxied(proxy.base_url, Keys.auth(new), ledger_path)


@dataclass(frozen=True)
class Proxied:
    base_url: str
    auth: dict[str, str]
    ledger_path: Path

    def only_hold(self) -> Hold:
        with Ledger.open(str(self.ledger_path)) as ledger:
            (hold,) = ledger.holds()
        return hold


@pytest.mark.slow
def test_a_job_through_an_https_upstream_is_held_forwarded_and_settled(
    https_fake: FakeKling, tmp_path: Path
) -> None:
    with proxied(https_fake, tmp_path, trusted=True) as proxy:
        auth = proxy.auth
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
    hold = proxy.only_hold()
    assert (hold.task_id, hold.state, hold.cost_minor) == (task_id, "settled", COST)


@pytest.mark.slow
def test_an_upstream_certificate_not_trusted_refuses_the_create_before_it_is_sent(
    https_fake: FakeKling, tmp_path: Path
) -> None:
    with proxied(https_fake, tmp_path, trusted=False) as proxy:
        url = f"{proxy.base_url}/v1/{ENDPOINT}"
        answer = httpx.post(url, json=BODY, headers=proxy.auth, timeout=30)
    assert (answer.status_code, answer.json()["code"]) == (502, 5001), answer.text
    assert "nothing was sent" in answer.json()["message"]
    assert https_fake.requests("POST", ENDPOINT) == []
    assert proxy.only_hold().state == "voided"  # the budget is whole again
