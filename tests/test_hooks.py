"""The notify_hook callback app: in process over httpx.ASGITransport, and for real.

The in-process tests run on both ledger backends (SQLite and PostgreSQL): the callback rules
of issue 13 (items 7 and 8) are the ledger's promises whichever backend keeps it.

The real run starts ``klingcost hooks serve`` (uvicorn) as a separate process on loopback; the
fake Kling API posts each task's callbacks to it and the hold settles without any sync.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fake_fixtures import BODIES, KEY, _fake_session, fake_server  # noqa: F401
from klingcost import errors
from klingcost.api.client import AsyncKlingClient
from klingcost.fake_server import FakeKling
from klingcost.guard import GuardedClient, Submission
from klingcost.hooks import create_app
from klingcost.ledger import Hold, Ledger

ENDPOINT = "videos/text2video"
BODY = BODIES[ENDPOINT]  # 7 units = 105,000 credits
COST = 105_000
SECRET = "s3cret-hook-path-0123456789"


@pytest.fixture
def ledger(make_ledger: Callable[..., Ledger]) -> Ledger:
    """The hooks' ledger, on SQLite and on PostgreSQL (the callback rules hold on both)."""
    opened = make_ledger()
    opened.set_budget("studio", limit=10_000_000, period="month")
    return opened


def submit(fake: FakeKling, ledger: Ledger, **options: Any) -> Submission:
    with GuardedClient(
        "studio", ledger=ledger, api_key=KEY, base_url=fake.base_url, **options
    ) as guard:
        return guard.submit(ENDPOINT, BODY)


def view(fake: FakeKling, task_id: str, status: str, **changes: Any) -> dict[str, Any]:
    """The task object as the fake (and Kling) posts it to the notify_hook."""
    return {**fake.state.tasks[task_id].view(status), **changes}


@pytest.fixture
async def app_client(ledger: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ledger, SECRET))
    async with httpx.AsyncClient(transport=transport, base_url="http://hooks") as client:
        yield client


@pytest.fixture
async def confirming(ledger: Ledger, fake: FakeKling) -> AsyncIterator[httpx.AsyncClient]:
    async with AsyncKlingClient(KEY, base_url=fake.base_url, max_retries=0) as kling:
        transport = httpx.ASGITransport(app=create_app(ledger, SECRET, client=kling))
        async with httpx.AsyncClient(transport=transport, base_url="http://hooks") as client:
            yield client


def snapshot(ledger: Ledger) -> tuple[object, ...]:
    return (list(ledger.holds()), ledger.budget_status("studio"), len(ledger.events()))


# --- the door -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_wrong_secret_is_404(
    app_client: httpx.AsyncClient, fake: FakeKling, ledger: Ledger
) -> None:
    submission = submit(fake, ledger)
    before = snapshot(ledger)
    body = view(fake, submission.task_id or "", "succeed")
    for path in ("/hooks/wrong-secret-0123456789", f"/hooks/{SECRET}x", "/hooks/"):
        answer = await app_client.post(path, json=body)
        assert answer.status_code == 404
    assert snapshot(ledger) == before


def test_a_short_secret_is_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        create_app(ledger, "short")


@pytest.mark.anyio
async def test_health(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.get("/health")).json() == {"ok": True}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"not json", "the body is not JSON"),
        (b"\xff\xfe", "the body is not JSON"),
        (b"[1, 2]", "no task_id in the callback"),
        (b'{"task_status": "succeed"}', "no task_id in the callback"),
        (b'{"task_id": true}', "no task_id in the callback"),
        (b'{"data": "x"}', "no task_id in the callback"),
    ],
)
async def test_bad_bodies_are_400(
    app_client: httpx.AsyncClient, content: bytes, error: str
) -> None:
    answer = await app_client.post(f"/hooks/{SECRET}", content=content)
    assert answer.status_code == 400 and answer.json()["error"] == error


@pytest.mark.anyio
async def test_unknown_task_is_ignored(
    app_client: httpx.AsyncClient, fake: FakeKling, ledger: Ledger
) -> None:
    submit(fake, ledger)
    before = snapshot(ledger)
    answer = await app_client.post(
        f"/hooks/{SECRET}",
        json={"task_id": "999", "task_status": "succeed", "final_unit_deduction": "1"},
    )
    assert answer.status_code == 200
    assert answer.json() == {"status": "ignored", "reason": "unknown task"}
    assert snapshot(ledger) == before


# --- settling from callbacks --------------------------------------------------------------


@pytest.mark.anyio
async def test_callback_settles_and_a_duplicate_changes_nothing(
    app_client: httpx.AsyncClient, fake: FakeKling, ledger: Ledger
) -> None:
    fake.configure(drift={"kling-v1-5": "1.1"})
    submission = submit(fake, ledger)
    task_id = submission.task_id or ""
    running = await app_client.post(f"/hooks/{SECRET}", json=view(fake, task_id, "processing"))
    assert running.json()["status"] == "pending"
    done = await app_client.post(f"/hooks/{SECRET}", json=view(fake, task_id, "succeed"))
    assert done.status_code == 200
    assert done.json() == {
        "status": "settled",
        "hold": submission.hold.id,
        "note": "settled at final_unit_deduction 7.7",
    }
    hold = ledger.get_hold(submission.hold.id)
    assert (hold.state, hold.units_milli, hold.cost_minor) == ("settled", 7700, 115_500)
    before = snapshot(ledger)
    for status in ("succeed", "processing", "failed"):  # repeats, late and out of order
        again = await app_client.post(f"/hooks/{SECRET}", json=view(fake, task_id, status))
        assert again.json()["status"] == "unchanged"
    assert snapshot(ledger) == before
    assert ledger.check() == []


@pytest.mark.anyio
async def test_a_callback_in_an_envelope_is_read_too(
    app_client: httpx.AsyncClient, fake: FakeKling, ledger: Ledger
) -> None:
    submission = submit(fake, ledger)
    body = {"code": 0, "data": view(fake, submission.task_id or "", "succeed")}
    answer = await app_client.post(f"/hooks/{SECRET}", json=body)
    assert answer.json()["status"] == "settled"


@pytest.mark.anyio
async def test_failed_callback_confirmed_voids(
    confirming: httpx.AsyncClient, fake: FakeKling, ledger: Ledger
) -> None:
    fake.set_faults({"kind": "fail_task"})
    submission = submit(fake, ledger)
    answer = await confirming.post(
        f"/hooks/{SECRET}", json=view(fake, submission.task_id or "", "failed")
    )
    assert answer.json()["status"] == "voided"
    assert ledger.budget_status("studio").held == 0


# --- without confirmation a callback may settle at most (issue 13, item 8) ----------------


@pytest.mark.anyio
async def test_an_unconfirmed_callback_never_voids(
    app_client: httpx.AsyncClient, fake: FakeKling, ledger: Ledger
) -> None:
    """Anyone with the URL posting "failed" for a task that succeeded: nothing is voided."""
    fake.configure(done_after=30)
    submission = submit(fake, ledger)
    before = snapshot(ledger)
    forged = view(fake, submission.task_id or "", "failed")
    answer = await app_client.post(f"/hooks/{SECRET}", json=forged)
    assert answer.status_code == 200
    assert answer.json()["status"] == "ignored" and "never voids" in answer.json()["reason"]
    assert snapshot(ledger) == before
    assert ledger.budget_status("studio").held == COST


@pytest.mark.anyio
@pytest.mark.parametrize("deduction", ["1", "0", None, "abc", "-7"])
async def test_an_unconfirmed_callback_never_lowers(
    app_client: httpx.AsyncClient, fake: FakeKling, ledger: Ledger, deduction: str | None
) -> None:
    fake.configure(done_after=30)
    submission = submit(fake, ledger)
    before = snapshot(ledger)
    forged = view(fake, submission.task_id or "", "succeed")
    forged["final_unit_deduction"] = deduction
    answer = await app_client.post(f"/hooks/{SECRET}", json=forged)
    assert answer.json()["status"] == "ignored" and "never lowers" in answer.json()["reason"]
    assert snapshot(ledger) == before


@pytest.mark.anyio
async def test_an_unconfirmed_callback_may_settle_at_or_above_the_estimate(
    app_client: httpx.AsyncClient, fake: FakeKling, ledger: Ledger
) -> None:
    submission = submit(fake, ledger)
    body = view(fake, submission.task_id or "", "succeed", final_unit_deduction="7")
    answer = await app_client.post(f"/hooks/{SECRET}", json=body)
    assert answer.json()["status"] == "settled"
    hold = ledger.get_hold(submission.hold.id)
    assert (hold.state, hold.units_milli, hold.cost_minor) == ("settled", 7000, COST)


@pytest.mark.anyio
async def test_a_callback_that_is_not_a_task_is_400(
    app_client: httpx.AsyncClient, fake: FakeKling, ledger: Ledger
) -> None:
    submission = submit(fake, ledger)
    answer = await app_client.post(
        f"/hooks/{SECRET}", json={"task_id": submission.task_id, "task_status": "done?"}
    )
    assert answer.status_code == 400 and "task_status" in answer.json()["error"]
    assert ledger.get_hold(submission.hold.id).state == "submitted"


@pytest.mark.anyio
async def test_a_callback_resolves_a_hold_whose_answer_was_lost(
    app_client: httpx.AsyncClient, fake: FakeKling, ledger: Ledger
) -> None:
    fake.set_faults({"kind": "drop", "create": True})
    with pytest.raises(errors.AmbiguousSubmitError):
        submit(fake, ledger, external_ids=True)
    [lost] = ledger.holds()
    assert lost.state == "unknown"
    [task] = fake.state.tasks.values()
    forged = view(fake, task.task_id, "succeed", task_info={"external_task_id": "other"})
    ignored = await app_client.post(f"/hooks/{SECRET}", json=forged)
    assert ignored.json()["status"] == "ignored"
    answer = await app_client.post(f"/hooks/{SECRET}", json=view(fake, task.task_id, "succeed"))
    assert answer.json()["status"] == "settled"
    hold = ledger.get_hold(lost.id)
    assert hold.state == "settled" and hold.task_id == task.task_id


@pytest.mark.anyio
async def test_a_voided_hold_then_charged_is_a_conflict(
    app_client: httpx.AsyncClient, fake: FakeKling, ledger: Ledger
) -> None:
    submission = submit(fake, ledger)
    stale: Hold = submission.hold
    ledger.void(stale.id, reason="voided by hand")
    answer = await app_client.post(
        f"/hooks/{SECRET}", json=view(fake, submission.task_id or "", "succeed")
    )
    assert answer.json()["status"] == "unchanged"  # a closed hold is never reopened


# --- confirming each callback with a query, as Kling advises ------------------------------


@pytest.mark.anyio
async def test_confirmed_callback_settles_at_what_the_api_says(
    confirming: httpx.AsyncClient, fake: FakeKling, ledger: Ledger
) -> None:
    submission = submit(fake, ledger)
    task_id = submission.task_id or ""
    forged = view(fake, task_id, "succeed", final_unit_deduction="0.5")
    answer = await confirming.post(f"/hooks/{SECRET}", json=forged)
    assert answer.json()["status"] == "settled"
    hold = ledger.get_hold(submission.hold.id)
    assert (hold.units_milli, hold.cost_minor, hold.raw_deduction) == (7000, COST, "7")
    assert len(fake.requests("GET", task_id)) == 1
    again = await confirming.post(f"/hooks/{SECRET}", json=forged)
    assert again.json()["status"] == "unchanged"


@pytest.mark.anyio
async def test_confirmed_callback_ahead_of_the_api_stays_pending(
    confirming: httpx.AsyncClient, fake: FakeKling, ledger: Ledger
) -> None:
    fake.configure(done_after=30)
    submission = submit(fake, ledger)
    early = view(fake, submission.task_id or "", "succeed")
    answer = await confirming.post(f"/hooks/{SECRET}", json=early)
    assert answer.json()["status"] == "pending"
    assert ledger.get_hold(submission.hold.id).state == "submitted"


@pytest.mark.anyio
@pytest.mark.parametrize("fault", ["server_error", "malformed"])
async def test_a_failed_confirmation_is_502_and_settles_nothing(
    confirming: httpx.AsyncClient, fake: FakeKling, ledger: Ledger, fault: str
) -> None:
    submission = submit(fake, ledger)
    fake.set_faults({"kind": fault, "method": "GET"})
    answer = await confirming.post(
        f"/hooks/{SECRET}", json=view(fake, submission.task_id or "", "succeed")
    )
    assert answer.status_code == 502 and "could not confirm" in answer.json()["error"]
    assert KEY not in answer.text
    assert ledger.get_hold(submission.hold.id).state == "submitted"


# --- for real: klingcost hooks serve, uvicorn, the fake posting callbacks -----------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def hooks_server(fake: FakeKling, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    path = tmp_path / "served.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("studio", limit=10_000_000, period="month")
    port = free_port()
    env = {
        **os.environ,
        "KLINGCOST_API_KEY": KEY,
        "KLINGCOST_BASE_URL": fake.base_url,
        "KLINGCOST_HOME": str(tmp_path / "home"),
    }
    cli = "from klingcost.cli import main; main(prog_name='klingcost')"
    command = [sys.executable, "-c", cli, "hooks", "serve", "--port", str(port)]
    command += ["--secret", SECRET, "--ledger", str(path)]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hooks serve did not start: {server.communicate()}")
            time.sleep(0.05)
        yield f"{base}/hooks/{SECRET}", path
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=15)
    assert f"hook URL: http://127.0.0.1:{port}/hooks/{SECRET}" in out
    assert "Traceback" not in err and KEY not in out + err


def test_the_fake_posts_callbacks_to_a_real_hooks_server(
    hooks_server: tuple[str, Path], fake: FakeKling
) -> None:
    url, path = hooks_server
    fake.configure(done_after=0.3, drift={"kling-v1-5": "1.1"})
    with Ledger.open(path) as ledger:
        submissions = [submit(fake, ledger, hook_url=url) for _ in range(3)]
        deadline = time.monotonic() + 10
        while any(h.state != "settled" for h in ledger.holds()):
            assert time.monotonic() < deadline, [h.state for h in ledger.holds()]
            time.sleep(0.05)
        holds = list(ledger.holds())
        assert [h.task_id for h in holds] == [s.task_id for s in submissions]
        assert {(h.units_milli, h.cost_minor) for h in holds} == {(7700, 115_500)}
        assert ledger.budget_status("studio").posted == 3 * 115_500
        assert len(ledger.events(kind="settle")) == 3
    delivered = fake.hooks()
    assert {(d["task_status"], d.get("status")) for d in delivered} == {
        ("processing", 200),
        ("succeed", 200),
    }
    assert all(d["url"] == url for d in delivered)
    assert len(fake.requests("GET")) >= 3  # each callback confirmed with a query


# --- a forged callback naming a real task and a lost hold's external id (issue 13, item 7) --


@pytest.mark.anyio
@pytest.mark.parametrize("confirm", [True, False])
async def test_a_forged_callback_cannot_attach_an_unrelated_task(
    app_client: httpx.AsyncClient,
    confirming: httpx.AsyncClient,
    fake: FakeKling,
    ledger: Ledger,
    confirm: bool,
) -> None:
    """A real cheap task without an external id, named with a lost 7-unit hold's external id:
    the task the API reports does not carry the hold's external id, so nothing is applied."""
    fake.set_faults({"kind": "drop", "create": True})
    with pytest.raises(errors.AmbiguousSubmitError):
        submit(fake, ledger, external_ids=True)
    [lost] = ledger.holds()
    external = lost.meta["external_task_id"]
    async with AsyncKlingClient(KEY, base_url=fake.base_url) as kling:  # not through the guard
        cheap = await kling.submit(ENDPOINT, {"prompt": "a dot", "mode": "std", "duration": "5"})
    before = snapshot(ledger)
    forged = {
        "task_id": cheap.task_id,
        "task_status": "succeed",
        "final_unit_deduction": "7",
        "task_info": {"external_task_id": external},
    }
    answer = await (confirming if confirm else app_client).post(f"/hooks/{SECRET}", json=forged)
    if confirm:  # the API's own view of the cheap task has no external id
        assert answer.json() == {"status": "ignored", "reason": "external_task_id differs"}
    else:  # the body's claim is all there is: at most it settles at the estimate, 7 units
        assert answer.json()["status"] in ("ignored", "settled")
    if confirm:
        assert snapshot(ledger) == before
        assert ledger.get_hold(lost.id).state == "unknown"
    else:
        hold = ledger.get_hold(lost.id)
        assert hold.state in ("unknown", "settled") and (hold.units_milli or 7000) >= 7000
    assert ledger.budget_status("studio").posted + ledger.budget_status("studio").held == COST
