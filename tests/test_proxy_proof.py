"""Proof of ``klingcost proxy`` (issue 15, item 7): concurrency, crashes, forgeries.

The real command runs as its own processes (``--workers 2``) where processes matter: 16
concurrent clients on a tight budget, and a worker killed with SIGKILL mid-request. The
forgeries (callbacks, keys, JWTs) run against the proxy in a thread. The upstream is the fake
Kling API; the ledger is a real SQLite file or the real PostgreSQL server (both, by the
``ledger_url`` fixture).
"""

# The fixtures are imported by name from proxy_fixtures, then named again as parameters.
# ruff: noqa: F401, F811

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fake_fixtures import KEY, _fake_session, fake_server
from klingcost import _jwt, keys
from klingcost.fake_server import FakeKling
from klingcost.ledger import Ledger
from klingcost.proxy.server import ProxyServer
from proxy_fixtures import (
    BODY,
    COST,
    ENDPOINT,
    Keys,
    ledger,
    post,
    proxy,
    proxy_env,
    start_proxy,
    team_keys,
)
from proxy_processes import klingcost, running_proxy
from proxy_processes import proxy_env as process_env

FITS = 5  # jobs the tight budget has room for


def _creates(fake: FakeKling) -> list[dict[str, Any]]:
    return fake.requests("POST", ENDPOINT)


def _sample(text: str, name: str, *labels: str) -> float:
    """The sum of ``name``'s samples that carry every one of ``labels`` (Prometheus' text)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(label in line for label in labels)
    )


# --- 16 concurrent clients, a tight budget -------------------------------------------------


@pytest.mark.slow
def test_16_concurrent_clients_exactly_the_jobs_that_fit_are_forwarded(
    ledger_url: str, ledger: Ledger, fake: FakeKling, proxy_env: Path, tmp_path: Path
) -> None:
    ledger.set_budget("tight", limit=FITS * COST, period="month")  # five 7-unit jobs, exactly
    new = keys.create_key(ledger, "tight", secret=keys.server_secret())
    env = process_env(proxy_env, ledger_url, fake.base_url)
    with running_proxy(env, tmp_path, workers=2, extra=("--settle-interval", "0")) as served:
        barrier = threading.Barrier(16)
        answers: list[httpx.Response] = []
        lock = threading.Lock()

        def client(number: int) -> None:
            body = {**BODY, "prompt": f"client {number}"}
            with httpx.Client(timeout=60) as http:
                barrier.wait()
                answer = http.post(
                    f"{served.base_url}/v1/{ENDPOINT}", json=body, headers=Keys.auth(new)
                )
            with lock:
                answers.append(answer)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        # Each scrape reaches one worker; every one reports what both workers counted.
        scraped = [httpx.get(f"{served.base_url}/metrics").text for _ in range(4)]
    for text in scraped:
        assert _sample(text, "klingcost_proxy_refusals_total", 'reason="budget"') == 16 - FITS
        route = 'route="/v1/videos/text2video"'
        assert _sample(text, "klingcost_proxy_requests_total", route, 'status="200"') == FITS
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * FITS + [429] * (16 - FITS)
    assert {a.json()["code"] for a in answers if a.status_code == 429} == {1102}
    forwarded = _creates(fake)
    assert len(forwarded) == FITS  # counted at the fake: nothing refused reached it
    assert len({r["body"]["prompt"] for r in forwarded}) == FITS  # five different clients
    holds = list(ledger.holds(team="tight"))
    assert len(holds) == FITS and all(h.task_id for h in holds)
    accepted = {a.json()["data"]["task_id"] for a in answers if a.is_success}
    assert {h.task_id for h in holds} == accepted
    assert ledger.budget_status("tight").available == 0
    assert len(ledger.refusals(team="tight")) == 16 - FITS
    assert ledger.check() == []


# --- a worker killed mid-request -----------------------------------------------------------


@pytest.mark.slow
def test_a_worker_killed_mid_request_leaves_the_ledger_clean_and_a_later_pass_resolves(
    ledger_url: str, ledger: Ledger, fake: FakeKling, proxy_env: Path, tmp_path: Path
) -> None:
    new = keys.create_key(ledger, "ads", secret=keys.server_secret())
    env = process_env(proxy_env, ledger_url, fake.base_url)
    # The fake creates each task, then holds its answer: the proxy is mid-request when killed.
    fake.set_faults({"kind": "timeout_after_accept", "ms": 20000, "path": ENDPOINT, "times": 2})
    bodies = [{**BODY, "external_task_id": "ext-killed-1"}, {**BODY, "prompt": "no external id"}]
    failures: list[BaseException] = []

    def client(body: dict[str, Any]) -> None:
        try:
            httpx.post(
                f"{served.base_url}/v1/{ENDPOINT}", json=body, headers=Keys.auth(new), timeout=30
            )
        except httpx.HTTPError as exc:
            failures.append(exc)

    with running_proxy(env, tmp_path, workers=2, extra=("--settle-interval", "0")) as served:
        threads = [threading.Thread(target=client, args=(b,)) for b in bodies]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(_creates(fake)) < 2:  # both creates reached the upstream
            assert time.monotonic() < deadline, "the creates never reached the fake"
            time.sleep(0.02)
        for pid in served.worker_pids():
            os.kill(pid, signal.SIGKILL)
        for thread in threads:
            thread.join(timeout=30)
    assert len(failures) == 2  # both clients lost their connection: no answer
    holds = list(ledger.holds(team="ads"))
    assert len(holds) == 2 and all(h.is_open and h.task_id is None for h in holds)
    checked = klingcost(["ledger", "check"], env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # A later pass (what the proxy's background loop runs): the hold sent with an external id
    # is found by it and settled; the other cannot be told apart from no task, and is listed.
    fake.clear_faults()
    synced = klingcost(["sync", "--json"], env)
    assert synced.returncode == 0, synced.stderr
    report = json.loads(synced.stdout)
    with_id = next(h for h in holds if h.meta.get("external_task_id") == "ext-killed-1")
    without = next(h for h in holds if h is not with_id)
    assert ledger.get_hold(with_id.id).state == "settled"
    assert ledger.get_hold(with_id.id).units_milli == 7000
    listed = {item["hold"] for item in report["unresolved"] + report["awaiting_evidence"]}
    assert without.id in listed and ledger.get_hold(without.id).is_open
    assert klingcost(["ledger", "check"], env).returncode == 0


# --- forgeries -----------------------------------------------------------------------------


def test_a_forged_callback_moves_no_hold(
    start_proxy: Callable[..., ProxyServer], team_keys: Keys, ledger: Ledger, fake: FakeKling
) -> None:
    fake.configure(done_after=30)  # the task stays running: only a forgery could end it
    served = start_proxy()
    answer = post(served, team_keys.ads, BODY)
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["data"]["task_id"]
    hold_id = int(answer.headers["X-Klingcost-Hold"])
    sent = _creates(fake)[-1]["body"]  # openai-hk's field, as the fake plays openai-hk
    url = sent.get("notify_hook") or sent["callback_url"]
    assert url.startswith(served.base_url + "/_klingcost/callback/")
    forged_failed = {"task_id": task_id, "task_status": "failed"}
    forged_cheap = {"task_id": task_id, "task_status": "succeed", "final_unit_deduction": "0"}
    bad_signature = url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB")
    prefix, _, signature = url.rsplit("/", 2)
    assert httpx.post(bad_signature, json=forged_failed).status_code == 404
    elsewhere = f"{prefix}/another-hold/{signature}"  # a signature is good for its hold only
    assert httpx.post(elsewhere, json=forged_failed).status_code == 404
    # The real URL with a lying body: the proxy asks the upstream, which says "processing".
    for lie in (forged_failed, forged_cheap, {"task_id": "someone-elses-task"}):
        httpx.post(url, json=lie)
    hold = ledger.get_hold(hold_id)
    assert hold.is_open and hold.task_id == task_id and hold.units_milli is None
    assert ledger.check() == []


def test_another_teams_key_sees_nothing_and_moves_nothing(
    proxy: ProxyServer, team_keys: Keys, ledger: Ledger, fake: FakeKling
) -> None:
    fake.configure(done_after=30)  # running: a query that settled it would be the spy's
    answer = post(proxy, team_keys.ads, BODY)
    task_id = answer.json()["data"]["task_id"]
    hold_id = int(answer.headers["X-Klingcost-Hold"])
    spy = httpx.get(
        f"{proxy.base_url}/v1/{ENDPOINT}/{task_id}", headers=Keys.auth(team_keys.studio)
    )
    assert (spy.status_code, spy.json()["code"]) == (404, 1203)
    assert ledger.get_hold(hold_id).team == "ads" and ledger.get_hold(hold_id).is_open
    listed = httpx.get(f"{proxy.base_url}/v1/{ENDPOINT}", headers=Keys.auth(team_keys.studio))
    assert task_id not in listed.text


def _token(new: keys.NewKey, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": new.api_key.access_key, "exp": now + 1800, "nbf": now - 5, **claims}
    return _jwt.encode(payload, new.secret_key.encode())


def _create_with(proxy: ProxyServer, token: str) -> httpx.Response:
    return httpx.post(
        f"{proxy.base_url}/v1/{ENDPOINT}",
        json=BODY,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_jwts_forged_expired_unsigned_or_replayed_after_revocation_all_fail(
    proxy: ProxyServer, team_keys: Keys, ledger: Ledger, fake: FakeKling
) -> None:
    new = team_keys.ads
    good = _token(new)
    assert _create_with(proxy, good).status_code == 200  # the real thing works
    now = int(time.time())
    header, payload, _ = good.split(".")
    unsigned = _jwt._b64encode(b'{"alg":"none","typ":"JWT"}') + f".{payload}."
    cases = {
        "expired": (_token(new, exp=now - 60), 1004),
        "not yet valid": (_token(new, nbf=now + 600), 1003),
        "unsigned (alg none)": (unsigned, 1002),
        "signed with another secret": (
            _jwt.encode({"iss": new.api_key.access_key, "exp": now + 600}, b"x" * 32),
            1002,
        ),
        "another key's signature": (
            _jwt.encode(
                {"iss": new.api_key.access_key, "exp": now + 600},
                team_keys.studio.secret_key.encode(),
            ),
            1002,
        ),
        # a captured token cannot be replayed for long: a lifetime over 24 h is refused
        "a lifetime of a year": (_token(new, exp=now + 365 * 86400), 1002),
        "tampered claims": (f"{header}.{_jwt._b64encode(b'{}')}.{good.split('.')[2]}", 1002),
    }
    before = len(_creates(fake))
    for name, (token, code) in cases.items():
        answer = _create_with(proxy, token)
        assert (answer.status_code, answer.json()["code"]) == (401, code), name
        assert token not in answer.text, name
    ledger.revoke_key(new.id)
    time.sleep(1.1)  # a worker trusts a key row it read for at most 1 s
    replayed = _create_with(proxy, good)  # the token that worked, replayed after revocation
    assert replayed.status_code == 401 and replayed.json()["code"] in (1000, 1002)
    assert len(_creates(fake)) == before  # none of them was forwarded
