"""A third-party Kling client, as published, through ``klingcost proxy`` (issue 15, item 7).

PyPI ``klingai-api`` (installed by ``.ci/run``, see ``tests/test_real_clients.py``) runs its
jobs with one setting changed, its base URL, now the proxy's; it signs JWTs with the access and
secret key of a proxy key (``klingcost keys create``). The proxy forwards to the fake Kling API
with the upstream's bearer key. Each job must run to ``succeed`` and the ledger must hold
exactly what the client ran: one hold per task, settled at what the fake charged, with no
``klingcost sync`` run. The bearer side is curl's, in ``tests/test_proxy_readme.py``.
"""

# The fixtures are imported by name from fake_fixtures, then named again as parameters.

from __future__ import annotations

import json
import subprocess
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest

from fake_fixtures import KEY
from klingcost import keys
from klingcost.fake_server import FakeKling
from klingcost.ledger import Ledger
from klingcost.proxy.server import ProxyServer
from klingcost.proxy.settings import ProxySettings
from test_real_clients import DRIVERS, PYTHON, _Hooks, _need, jobs

pytestmark = [pytest.mark.slow, pytest.mark.realclients]


def test_klingai_api_through_the_proxy_runs_its_jobs_and_the_ledger_holds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _need(PYTHON, "the PyPI client klingai-api")
    monkeypatch.setenv("KLINGCOST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KLINGCOST_API_KEY", KEY)
    for name in ("KLINGCOST_PROXY_SECRET", "KLINGCOST_HOOK_SECRET", "KLINGCOST_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    hooks = _Hooks()
    hook_thread = threading.Thread(target=hooks.serve_forever, args=(0.01,), daemon=True)
    hook_thread.start()
    path = tmp_path / "ledger.db"
    try:
        with (
            FakeKling(api_key=KEY, processing_after=0.05, done_after=0.25) as fake,
            Ledger.open(path) as ledger,
        ):
            ledger.set_budget("film", limit=10_000_000, period="month")
            new = keys.create_key(ledger, "film", secret=keys.server_secret())
            hook = f"http://127.0.0.1:{hooks.server_address[1]}/hook"
            ran = [j for j in jobs(fake.base_url, hook) if j.client == "klingai-api"]
            settings = ProxySettings(upstream=fake.base_url, ledger=str(path), settle_interval=0)
            with ProxyServer(settings, access_log=False) as proxy:
                config = {
                    "base_url": proxy.base_url,  # the one change
                    "access_key": new.api_key.access_key,
                    "secret_key": new.secret_key,
                    "jobs": [{"id": j.id, **j.call} for j in ran],
                }
                done = subprocess.run(
                    [str(PYTHON), str(DRIVERS / "drive_klingai_api.py"), json.dumps(config)],
                    capture_output=True,
                    text=True,
                    timeout=180,
                    cwd=tmp_path,
                    env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                )
                assert done.returncode == 0, done.stderr[-3000:]
                lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
                deadline = time.monotonic() + 20  # the client's own callback, passed on
                while not hooks.bodies and time.monotonic() < deadline:
                    time.sleep(0.05)
            results = {line["id"]: line for line in lines}
            charged = {t["task_id"]: Fraction(t["units"]) for t in fake.ledger()["tasks"]}
            holds = {h.task_id: h for h in ledger.holds(team="film")}
            for job in ran:
                line = results[job.id]
                assert line["task"]["task_status"] == "succeed", line
                hold = holds[line["task_id"]]
                assert hold.state == "settled" and hold.key_id == new.id
                assert Fraction(hold.units_milli or 0, 1000) == charged[line["task_id"]]
                assert charged[line["task_id"]] == Fraction(job.units)
            assert len(holds) == len(ran) == len(fake.requests("POST", "/v1/videos/"))
            assert ledger.check() == []
            # the client's callback_url reached the client, through the proxy
            assert any(body.get("task_id") == results["py-t2v"]["task_id"] for body in hooks.bodies)
    finally:
        hooks.shutdown()
        hooks.server_close()
        hook_thread.join()
