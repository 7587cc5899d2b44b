"""``klingcost proxy``: the guard on the wire, against the fake Kling API on loopback.

Real servers: the fake upstream (klingcost.testing), the proxy on a free port, httpx as the
client, and the ledger on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx

from fake_fixtures import KEY, _fake_session, fake_server  # noqa: F401
from klingcost import keys
from klingcost.ledger import Ledger
from klingcost.proxy.server import ProxyServer
from klingcost.testing import FakeKling
from proxy_fixtures import (  # noqa: F401
    BODY,
    COST,
    ENDPOINT,
    Keys,
    creates,
    get,
    ledger_fixture,
    post,
    proxy_env_fixture,
    proxy_fixture,
    start_proxy_fixture,
    team_keys_fixture,
)


def test_a_create_is_priced_held_forwarded_and_attached(
    proxy: ProxyServer, fake: FakeKling, ledger: Ledger, team_keys: Keys
) -> None:
    answer = post(proxy, team_keys.studio, BODY)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    (hold,) = ledger.holds()
    # Held at the sheet's price for the key's team, by that key, attached to the upstream task.
    assert hold.team == "studio" and hold.estimate.cost_minor == COST
    assert hold.key_id == team_keys.studio.id
    assert hold.task_id == data["task_id"] and hold.state == "submitted"
    assert answer.headers["X-Klingcost-Hold"] == str(hold.id)
    assert answer.headers["X-Klingcost-Team"] == "studio"
    assert answer.headers["X-Klingcost-Estimate"] == (
        "units=7; pack=video; cost=105000; currency=credits"
    )
    # The answer is the upstream's own (the fake's task), and the upstream got the client's
    # body with the proxy's callback URL, signed in with the upstream key (the fake takes no
    # other), not the client's.
    assert data["task_status"] == "submitted" and answer.json()["code"] == 0
    ((path, sent),) = fake.bodies()
    assert path == f"/v1/{ENDPOINT}"
    assert {k: sent[k] for k in BODY} == BODY
    assert sent["notify_hook"].startswith(f"{proxy.base_url}/_klingcost/callback/{hold.key}/")


def test_openai_hk_prefix_reaches_the_same_guard(
    proxy: ProxyServer, fake: FakeKling, ledger: Ledger, team_keys: Keys
) -> None:
    answer = post(proxy, team_keys.ads, BODY, prefix="/kling/v1")
    assert answer.status_code == 200
    (hold,) = ledger.holds()
    assert hold.team == "ads" and hold.task_id == answer.json()["data"]["task_id"]


def test_over_budget_is_429_1102_and_nothing_is_forwarded(
    proxy: ProxyServer, fake: FakeKling, ledger: Ledger, team_keys: Keys
) -> None:
    assert post(proxy, team_keys.studio, BODY).status_code == 200
    refused = post(proxy, team_keys.studio, BODY)
    assert refused.status_code == 429
    envelope = refused.json()
    assert envelope["code"] == 1102 and envelope["data"] is None and envelope["request_id"]
    message = envelope["message"]
    assert "'studio'" in message and "needs 105000" in message
    assert "45000 of 150000 credits left" in message and "period month" in message
    assert creates(fake) == 1  # the second create never left the proxy
    assert len(list(ledger.holds())) == 1
    (event,) = ledger.refusals(team="studio")
    assert event.data["reason"] == "budget" and event.data["source"] == "proxy"
    assert event.data["key_id"] == team_keys.studio.id
    assert event.data["needed"] == COST and event.data["left"] == 45_000


def test_a_key_over_its_max_concurrent_is_429_1303(
    start_proxy: Callable[..., ProxyServer], fake: FakeKling, ledger: Ledger
) -> None:
    fake.configure(done_after=60)  # the first job stays open
    new = keys.create_key(ledger, "ads", secret=keys.server_secret(), max_concurrent=1)
    proxy = start_proxy()
    assert post(proxy, new, BODY).status_code == 200
    refused = post(proxy, new, BODY)
    assert refused.status_code == 429 and refused.json()["code"] == 1303
    assert "at most 1" in refused.json()["message"]
    assert creates(fake) == 1
    (event,) = ledger.refusals(team="ads")
    assert event.data["reason"] == "concurrency" and event.data["key_id"] == new.id


def test_a_body_the_sheet_cannot_price_is_refused_and_never_forwarded(
    proxy: ProxyServer, fake: FakeKling, ledger: Ledger, team_keys: Keys
) -> None:
    invalid = post(proxy, team_keys.ads, {**BODY, "duration": "7"})
    assert invalid.status_code == 400 and invalid.json()["code"] == 1201
    assert "duration" in invalid.json()["message"]
    unknown = post(proxy, team_keys.ads, {**BODY, "model_name": "kling-v9-unknown"})
    assert unknown.status_code == 400 and unknown.json()["code"] == 1201
    assert "kling-v9-unknown" in unknown.json()["message"]
    for raw in (b"{not json", b"[1, 2]"):
        malformed = httpx.post(
            f"{proxy.base_url}/v1/{ENDPOINT}", content=raw, headers=Keys.auth(team_keys.ads)
        )
        assert malformed.status_code == 400 and malformed.json()["code"] == 1200
    assert fake.requests() == []
    assert list(ledger.holds()) == []
    reasons = [e.data["reason"] for e in ledger.refusals(team="ads")]
    assert reasons == ["invalid"] * 4


def test_an_external_task_id_is_held_once_per_team(
    proxy: ProxyServer, fake: FakeKling, ledger: Ledger, team_keys: Keys
) -> None:
    body = {**BODY, "external_task_id": "job-7"}
    assert post(proxy, team_keys.ads, body).status_code == 200
    again = post(proxy, team_keys.ads, body)
    assert again.status_code == 400 and again.json()["code"] == 1201
    assert "'job-7' was already used" in again.json()["message"]
    assert creates(fake) == 1 and len(list(ledger.holds())) == 1
    # Another team's id space is its own: the same id is a new job there.
    assert post(proxy, team_keys.studio, body).status_code == 200
    assert creates(fake) == 2


def test_a_missing_or_unknown_key_is_401_before_anything_else(
    proxy: ProxyServer, fake: FakeKling, ledger: Ledger
) -> None:
    missing = httpx.post(f"{proxy.base_url}/v1/{ENDPOINT}", json=BODY)
    assert missing.status_code == 401 and missing.json()["code"] == 1001
    unknown = httpx.get(
        f"{proxy.base_url}/v1/no/such/route", headers={"Authorization": "Bearer kck_nope"}
    )
    assert unknown.status_code == 401 and unknown.json()["code"] == 1002
    assert fake.requests() == [] and list(ledger.holds()) == []


def test_an_unknown_route_with_a_key_is_404_1202(proxy: ProxyServer, team_keys: Keys) -> None:
    answer = get(proxy, team_keys.ads, "videos/no-such-endpoint")
    assert answer.status_code == 404 and answer.json()["code"] == 1202


def test_a_task_query_settles_the_hold_from_the_answer_it_passes_on(
    proxy: ProxyServer, fake: FakeKling, ledger: Ledger, team_keys: Keys
) -> None:
    task_id = post(proxy, team_keys.ads, BODY).json()["data"]["task_id"]
    answer = get(proxy, team_keys.ads, f"{ENDPOINT}/{task_id}")
    assert answer.status_code == 200
    data = answer.json()["data"]
    assert data["task_id"] == task_id and data["task_status"] == "succeed"
    assert data["final_unit_deduction"] == "7"  # the upstream's own answer, unchanged
    (hold,) = ledger.holds()
    assert hold.state == "settled" and hold.units_milli == 7000 and hold.cost_minor == COST
    events = len(list(ledger.events(hold_id=hold.id)))
    assert get(proxy, team_keys.ads, f"{ENDPOINT}/{task_id}").status_code == 200
    assert len(list(ledger.events(hold_id=hold.id))) == events  # settled once


def test_a_failed_task_is_voided_by_the_query(
    proxy: ProxyServer, fake: FakeKling, ledger: Ledger, team_keys: Keys
) -> None:
    fake.set_faults({"kind": "fail_task"})
    task_id = post(proxy, team_keys.ads, BODY).json()["data"]["task_id"]
    assert get(proxy, team_keys.ads, f"{ENDPOINT}/{task_id}").json()["data"]["task_status"] == (
        "failed"
    )
    (hold,) = ledger.holds()
    assert hold.state == "voided"


def test_another_teams_task_is_unknown_and_lists_are_filtered(
    proxy: ProxyServer, fake: FakeKling, ledger: Ledger, team_keys: Keys
) -> None:
    mine = post(proxy, team_keys.ads, {**BODY, "external_task_id": "ads-job-1"})
    task_id = mine.json()["data"]["task_id"]
    # A task made on the upstream directly (not through the proxy) is nobody's.
    httpx.post(
        f"{fake.base_url}/v1/{ENDPOINT}", json=BODY, headers={"Authorization": f"Bearer {KEY}"}
    )
    queries_before = len(fake.requests("GET"))
    for ref in (task_id, "ads-job-1"):
        other = get(proxy, team_keys.studio, f"{ENDPOINT}/{ref}")
        assert other.status_code == 404 and other.json()["code"] == 1203
    assert len(fake.requests("GET")) == queries_before  # never asked upstream
    by_external = get(proxy, team_keys.ads, f"{ENDPOINT}/ads-job-1")
    assert by_external.status_code == 200 and by_external.json()["data"]["task_id"] == task_id
    listed = get(proxy, team_keys.ads, ENDPOINT, pageNum=1, pageSize=30)
    assert listed.status_code == 200 and listed.json()["code"] == 0
    assert [t["task_id"] for t in listed.json()["data"]] == [task_id]
    assert get(proxy, team_keys.studio, ENDPOINT).json()["data"] == []
    (hold,) = ledger.holds()
    assert hold.state == "settled"  # the list answer settled it on its way too


def test_the_upstream_key_never_reaches_a_client(
    proxy: ProxyServer, fake: FakeKling, ledger: Ledger, team_keys: Keys
) -> None:
    fake.set_faults(
        {"kind": "error", "status": 400, "code": 1201, "message": f"bad key {KEY} given"},
        {"kind": "malformed", "status": 200, "body": f'{{"echo": "{KEY.upper()}"}}'},
    )
    answers = [post(proxy, team_keys.ads, BODY), post(proxy, team_keys.ads, BODY)]
    for answer in answers:
        shown = answer.text + str(answer.headers)
        assert KEY[:12] not in shown and KEY.upper()[:12] not in shown
        assert "<redacted>" in answer.text
    assert answers[0].status_code == 400 and answers[0].json()["code"] == 1201
    refused, unknown = ledger.holds()
    assert refused.state == "voided"  # a definite refusal: nothing is charged
    assert unknown.state == "unknown"  # an unreadable answer: it stays counted
    for hold in (refused, unknown):
        assert KEY[:12] not in (hold.reason or "")


def test_an_upstream_that_cannot_be_reached_voids_the_hold(
    start_proxy: Callable[..., ProxyServer], fake: FakeKling, ledger: Ledger, team_keys: Keys
) -> None:
    proxy = start_proxy(upstream="http://127.0.0.1:9")  # nothing listens on the discard port
    answer = post(proxy, team_keys.ads, BODY)
    assert answer.status_code == 502 and answer.json()["code"] == 5001
    (hold,) = ledger.holds()
    assert f"nothing was sent, and hold {hold.id} was voided" in answer.json()["message"]
    assert hold.state == "voided"


def test_a_create_whose_answer_is_lost_stays_counted(
    proxy: ProxyServer, fake: FakeKling, ledger: Ledger, team_keys: Keys
) -> None:
    fake.set_faults({"kind": "drop", "create": True})  # the task exists; its answer is lost
    answer = post(proxy, team_keys.ads, BODY)
    assert answer.status_code == 504 and answer.json()["code"] == 5002
    (hold,) = ledger.holds()
    assert f"hold {hold.id} stays counted" in answer.json()["message"]
    assert hold.state == "unknown" and hold.cost_minor is None
    assert creates(fake) == 1


def test_healthz(proxy: ProxyServer) -> None:
    answer = httpx.get(f"{proxy.base_url}/healthz")
    assert answer.status_code == 200 and answer.json()["status"] == "ok"


def wait_for(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_proxy_serves_the_live_page_without_a_key(
    proxy: ProxyServer, ledger: Ledger, team_keys: Keys
) -> None:
    post(proxy, team_keys.ads, BODY)
    page = httpx.get(f"{proxy.base_url}/ui")
    assert page.status_code == 200 and "uPlot" in page.text
    data = httpx.get(f"{proxy.base_url}/ui/data.json").json()
    ads = next(b for b in data["budgets"] if b["team"] == "ads")
    assert ads["used"] == str(COST)  # the job the create held (or settled), exactly
    assert team_keys.ads.key not in page.text + json.dumps(data)  # spending, never a key


def test_without_callbacks_the_clients_fields_go_unchanged_and_a_query_settles(
    start_proxy: Callable[..., ProxyServer], fake: FakeKling, ledger: Ledger, team_keys: Keys
) -> None:
    # `klingcost proxy --no-callbacks`: for a proxy the upstream cannot reach.
    proxy = start_proxy(callbacks=False)
    mine = "https://client.example/hook"
    fake.configure(done_after=0)
    answer = post(proxy, team_keys.studio, {**BODY, "notify_hook": mine})
    assert answer.status_code == 200, answer.text
    ((_, sent),) = fake.bodies()
    assert sent["notify_hook"] == mine  # the client's own, not the proxy's
    (hold,) = ledger.holds()
    assert hold.state == "submitted" and "client_notify_hook" not in hold.meta
    task_id = answer.json()["data"]["task_id"]
    assert get(proxy, team_keys.studio, f"{ENDPOINT}/{task_id}").status_code == 200
    assert ledger.get_hold(hold.id).state == "settled"  # the task query settled it
