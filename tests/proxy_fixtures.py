"""Fixtures for the proxy's tests: the fake Kling API as upstream, a ledger on each backend with
budgets and proxy keys, the proxy on a free loopback port, and a receiver for client callbacks.

Import the fixtures a test module needs by their function's name (``proxy_fixture`` gives the
fixture ``proxy``), as ``fake_fixtures`` does."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from fake_fixtures import KEY
from klingcost import keys
from klingcost.ledger import Ledger
from klingcost.proxy.server import ProxyServer
from klingcost.proxy.settings import ProxySettings
from klingcost.testing import FakeKling

ENDPOINT = "videos/text2video"
#: kling-v1-5, pro, 10 s: 7 units = 105,000 credits at openai-hk's rate.
BODY: dict[str, Any] = {
    "model_name": "kling-v1-5",
    "prompt": "a ship in space",
    "mode": "pro",
    "duration": "10",
}
COST = 105_000


@dataclass
class Keys:
    """Proxy keys for the test's teams: ``studio`` (room for one job) and ``ads`` (plenty)."""

    studio: keys.NewKey
    ads: keys.NewKey

    @staticmethod
    def auth(new: keys.NewKey) -> dict[str, str]:
        return {"Authorization": f"Bearer {new.key}"}


@pytest.fixture(name="proxy_env")
def proxy_env_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private KLINGCOST_HOME (the server's secrets), and no inherited upstream settings."""
    home = tmp_path / "home"
    monkeypatch.setenv("KLINGCOST_HOME", str(home))
    for name in ("KLINGCOST_PROXY_SECRET", "KLINGCOST_HOOK_SECRET", "KLINGCOST_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KLINGCOST_API_KEY", KEY)
    return home


@pytest.fixture(name="ledger")
def ledger_fixture(ledger_url: str, proxy_env: Path) -> Iterator[Ledger]:
    with Ledger.open(ledger_url) as opened:
        opened.set_budget("studio", limit=150_000, period="month")  # one job fits
        opened.set_budget("ads", limit=10_000_000, period="month")
        yield opened


@pytest.fixture(name="team_keys")
def team_keys_fixture(ledger: Ledger) -> Keys:
    secret = keys.server_secret()
    return Keys(
        studio=keys.create_key(ledger, "studio", secret=secret),
        ads=keys.create_key(ledger, "ads", secret=secret),
    )


@pytest.fixture(name="start_proxy")
def start_proxy_fixture(
    ledger_url: str, fake: FakeKling, proxy_env: Path
) -> Iterator[Callable[..., ProxyServer]]:
    """Start a proxy in front of ``fake`` on the test's ledger (stopped afterwards)."""
    started: list[ProxyServer] = []

    def start(**settings: Any) -> ProxyServer:
        settings.setdefault("settle_interval", 0)
        settings.setdefault("upstream", fake.base_url)
        proxy = ProxyServer(
            ProxySettings(ledger=ledger_url, **settings),
            access_log=False,
        )
        started.append(proxy.start())
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture(name="proxy")
def proxy_fixture(start_proxy: Callable[..., ProxyServer], team_keys: Keys) -> ProxyServer:
    return start_proxy()


class Receiver:
    """A client's own callback URL: records every POST it gets (loopback, a thread)."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the stdlib's name
                length = int(self.headers.get("Content-Length") or 0)
                received.append(
                    {
                        "body": json.loads(self.rfile.read(length)),
                        "headers": dict(self.headers),
                    }
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/my-hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(name="receiver")
def receiver_fixture() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def post(proxy: ProxyServer, new: keys.NewKey, body: Any, *, prefix: str = "/v1") -> httpx.Response:
    return httpx.post(
        f"{proxy.base_url}{prefix}/{ENDPOINT}", json=body, headers=Keys.auth(new), timeout=10
    )


def get(proxy: ProxyServer, new: keys.NewKey, path: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{proxy.base_url}/v1/{path}", params=params, headers=Keys.auth(new), timeout=10
    )


def creates(fake: FakeKling) -> int:
    """Creates that reached the fake."""
    return len(fake.requests("POST", ENDPOINT))


# The names these fixtures were first published under: modules that import them so keep working.
proxy_env, ledger, team_keys = proxy_env_fixture, ledger_fixture, team_keys_fixture
start_proxy, proxy, receiver = start_proxy_fixture, proxy_fixture, receiver_fixture
