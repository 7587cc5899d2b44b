"""``klingcost proxy``: holds settled by the traffic itself, without ``klingcost sync``:
the upstream's callbacks (confirmed, then passed on to the client's own URL) and the
background pass for tasks nobody polls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from fake_fixtures import KEY, _fake_session, fake_server  # noqa: F401
from klingcost.ledger import Ledger
from klingcost.proxy.app import create_app, proxy_of
from klingcost.proxy.server import ProxyServer
from klingcost.proxy.settings import ProxySettings
from klingcost.proxy.traffic import SETTLE_TURN, settle_turn
from klingcost.sync import SyncReport
from klingcost.testing import FakeKling
from proxy_fixtures import (  # noqa: F401
    BODY,
    COST,
    ENDPOINT,
    Keys,
    Receiver,
    ledger_fixture,
    post,
    proxy_env_fixture,
    proxy_fixture,
    receiver_fixture,
    start_proxy_fixture,
    team_keys_fixture,
)


def wait_for(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def slow_fake(fake: FakeKling) -> Iterator[FakeKling]:
    fake.configure(processing_after=0.0, done_after=0.3)
    yield fake


def test_a_callback_settles_the_hold_then_reaches_the_clients_url(
    slow_fake: FakeKling,
    proxy: ProxyServer,
    ledger: Ledger,
    team_keys: Keys,
    receiver: Receiver,
) -> None:
    answer = post(proxy, team_keys.ads, {**BODY, "callback_url": receiver.url})
    task_id = answer.json()["data"]["task_id"]
    (hold,) = ledger.holds()
    assert hold.meta["client_callback_url"] == receiver.url
    # Nobody polls: the upstream's callbacks, to the proxy's URL, settle it.
    wait_for(lambda: ledger.get_hold(hold.id).state == "settled")
    settled = ledger.get_hold(hold.id)
    assert settled.units_milli == 7000 and settled.cost_minor == COST
    assert all("/_klingcost/callback/" in hook["url"] for hook in slow_fake.hooks())
    # ... and are passed on to the client's own URL, as the upstream sent them.
    wait_for(lambda: [r["body"]["task_status"] for r in receiver.bodies][-1:] == ["succeed"])
    assert {r["body"]["task_id"] for r in receiver.bodies} == {task_id}
    for received in receiver.bodies:
        assert "Authorization" not in received["headers"]
        assert KEY not in str(received)


def test_a_callback_with_a_wrong_signature_is_refused(
    slow_fake: FakeKling, proxy: ProxyServer, ledger: Ledger, team_keys: Keys
) -> None:
    slow_fake.configure(done_after=60)
    post(proxy, team_keys.ads, BODY)
    (hold,) = ledger.holds()
    forged = httpx.post(
        f"{proxy.base_url}/_klingcost/callback/{hold.key}/{'0' * 40}",
        json={"task_id": hold.task_id, "task_status": "failed"},
    )
    assert forged.status_code == 404 and forged.json()["code"] == 1202
    assert ledger.get_hold(hold.id).state == "submitted"


def test_a_forged_callback_on_a_real_url_moves_nothing_the_upstream_does_not_confirm(
    slow_fake: FakeKling, proxy: ProxyServer, ledger: Ledger, team_keys: Keys
) -> None:
    slow_fake.configure(done_after=60)
    post(proxy, team_keys.ads, BODY)
    (hold,) = ledger.holds()
    url = proxy_of(proxy.app).callback_url(hold.key)
    assert url is not None
    claimed = {"task_id": hold.task_id, "task_status": "failed", "task_status_msg": "forged"}
    answer = httpx.post(url, json=claimed)
    assert answer.status_code == 200 and answer.json()["status"] == "pending"
    assert ledger.get_hold(hold.id).state == "submitted"  # the upstream says: processing


def test_the_background_pass_settles_tasks_nobody_polls(
    start_proxy: Callable[..., ProxyServer], fake: FakeKling, ledger: Ledger, team_keys: Keys
) -> None:
    # Callbacks cannot reach this proxy (its public URL is wrong), and nobody polls.
    proxy = start_proxy(public_url="http://127.0.0.1:9", settle_interval=0.2)
    post(proxy, team_keys.ads, BODY)
    (hold,) = ledger.holds()
    wait_for(lambda: ledger.get_hold(hold.id).state == "settled")
    assert all("error" in hook for hook in fake.hooks())  # no callback got through


def test_callbacks_that_cannot_move_the_hold_cost_no_upstream_query(
    slow_fake: FakeKling, proxy: ProxyServer, ledger: Ledger, team_keys: Keys
) -> None:
    slow_fake.configure(done_after=60)  # no callback of the fake's own in the way
    post(proxy, team_keys.ads, BODY)
    (hold,) = ledger.holds()
    url = proxy_of(proxy.app).callback_url(hold.key)
    assert url is not None
    queries = len(slow_fake.requests("GET"))
    on_the_way = httpx.post(url, json={"task_id": hold.task_id, "task_status": "processing"})
    assert on_the_way.json()["status"] == "passed on"
    ledger.void(hold.id, reason="closed by hand, for the test")
    ended = httpx.post(url, json={"task_id": hold.task_id, "task_status": "succeed"})
    assert ended.json()["status"] == "unchanged"
    assert len(slow_fake.requests("GET")) == queries  # neither asked the upstream
    assert ledger.get_hold(hold.id).state == "voided"


def test_a_client_without_its_own_url_gets_a_quiet_url_whose_states_on_the_way_read_nothing(
    slow_fake: FakeKling,
    proxy: ProxyServer,
    ledger: Ledger,
    team_keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow_fake.configure(done_after=60)
    post(proxy, team_keys.ads, BODY)  # no callback URL of the client's own
    (hold,) = ledger.holds()
    state = proxy_of(proxy.app)
    (create,) = slow_fake.requests("POST")
    url = create["body"]["notify_hook"]
    assert url == state.callback_url(hold.key, quiet=True) != state.callback_url(hold.key)

    def no_reading(key: str) -> None:
        raise AssertionError(f"the ledger was read for {key}")

    monkeypatch.setattr(state.ledger, "hold_for_key", no_reading)
    on_the_way = httpx.post(url, json={"task_id": hold.task_id, "task_status": "processing"})
    assert on_the_way.status_code == 200 and on_the_way.json()["status"] == "ignored"
    monkeypatch.undo()
    # An end is still confirmed upstream (which says: processing), whichever the signature.
    ended = httpx.post(url, json={"task_id": hold.task_id, "task_status": "succeed"})
    assert ended.status_code == 200 and ended.json()["status"] == "pending"
    assert ledger.get_hold(hold.id).state == "submitted"
    # The quiet signature is the proxy's own: another hold's does not open this one.
    other = url.replace(hold.key, "0" * len(hold.key))
    assert httpx.post(other, json={"task_id": hold.task_id}).status_code == 404


Report = SyncReport | None


def test_one_background_pass_per_interval_whichever_worker_takes_the_turn(
    slow_fake: FakeKling, proxy: ProxyServer, ledger_url: str, ledger: Ledger, team_keys: Keys
) -> None:
    """Two workers (two apps, each its own ledger connection) ask for the pass at once: one
    queries the open hold's task, the other nothing; after the interval, the turn is free."""
    slow_fake.configure(done_after=60)  # the task stays open through the test
    post(proxy, team_keys.ads, BODY)
    (hold,) = ledger.holds()
    settings = ProxySettings(ledger=ledger_url, upstream=slow_fake.base_url, settle_interval=0)
    one, two = (proxy_of(create_app(settings, api_key=KEY, access_log=False)) for _ in "12")
    task_queries = f"{ENDPOINT}/{hold.task_id}"

    async def turns() -> tuple[Report, Report, int, Report]:
        try:
            first = await settle_turn(one, "host:1", 0.3)
            second = await settle_turn(two, "host:2", 0.3)
            queried = len(slow_fake.requests("GET", task_queries))
            await asyncio.sleep(0.35)  # the interval passes: the turn is free again
            return first, second, queried, await settle_turn(two, "host:2", 0.3)
        finally:
            for worker in (one, two):
                await worker.upstream.aclose()
                worker.ledger.close()

    first, second, queried, later = asyncio.run(turns())
    assert first is not None and (first.examined, first.pending) == (1, 1)
    assert second is None  # no pass, no query: the turn was host:1's
    assert queried == 1
    assert later is not None and later.examined == 1
    assert len(slow_fake.requests("GET", task_queries)) == 2
    last = ledger.last_turn(SETTLE_TURN)
    assert last is not None and last[0] == "host:2"
