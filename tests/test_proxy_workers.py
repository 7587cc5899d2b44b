"""``klingcost proxy --workers 2``: worker processes that share nothing but the ledger.

Concurrent creates from several clients land on either worker: the ledger alone decides which
fit, on SQLite and on PostgreSQL, and any worker settles any hold."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from fake_fixtures import KEY, _fake_session, fake_server  # noqa: F401
from klingcost import keys
from klingcost.ledger import Ledger
from klingcost.testing import FakeKling
from proxy_fixtures import BODY, COST, ENDPOINT, Keys, proxy_env_fixture  # noqa: F401

CLI = "from klingcost.cli import main; main()"


@pytest.fixture
def workers(
    ledger_url: str, fake: FakeKling, proxy_env: Path, tmp_path: Path
) -> Iterator[tuple[str, Ledger]]:
    """``klingcost proxy --workers 2`` on a free port; its URL, and the ledger it uses."""
    with Ledger.open(ledger_url) as ledger:
        ledger.set_budget("studio", limit=3 * COST, period="month")  # exactly three jobs
        env = {**os.environ, "KLINGCOST_LEDGER": ledger_url, "KLINGCOST_BASE_URL": fake.base_url}
        command = [sys.executable, "-c", CLI, "proxy", "--port", "0", "--workers", "2"]
        server = subprocess.Popen(
            [*command, "--settle-interval", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            first = server.stdout.readline()
            match = re.match(r"klingcost proxy on (http://127\.0\.0\.1:\d+) ", first)
            exited = server.poll() is not None and server.stderr is not None
            assert match, (first, server.stderr.read() if exited and server.stderr else "")
            yield match[1], ledger
        finally:
            server.send_signal(signal.SIGINT)
            try:
                _, err = server.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                _, err = server.communicate()
    assert "Traceback" not in err, err


@pytest.mark.slow
def test_two_workers_hold_exactly_what_fits_and_settle_from_any_worker(
    workers: tuple[str, Ledger], fake: FakeKling
) -> None:
    url, ledger = workers
    new = keys.create_key(ledger, "studio", secret=keys.server_secret())
    with httpx.Client(base_url=url, headers=Keys.auth(new), timeout=30) as client:

        def create(_: int) -> httpx.Response:
            return client.post(f"/v1/{ENDPOINT}", json=BODY)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(create, range(8)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] * 3 + [429] * 5, [a.text for a in answers]
        assert {a.json()["code"] for a in answers if a.status_code == 429} == {1102}
        assert len(fake.requests("POST", ENDPOINT)) == 3  # exactly the jobs that fit
        task_ids = [a.json()["data"]["task_id"] for a in answers if a.status_code == 200]
        for task_id in task_ids:  # each poll reaches whichever worker accepts it
            assert client.get(f"/v1/{ENDPOINT}/{task_id}").status_code == 200
    holds = list(ledger.holds())
    assert sorted(h.task_id or "" for h in holds) == sorted(task_ids)
    assert {h.state for h in holds} == {"settled"}
    assert len(ledger.refusals(team="studio")) == 5
    assert ledger.check() == []
