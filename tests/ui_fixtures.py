"""A real ledger for the live page's tests, and `klingcost ui` started on it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from klingcost.budgets import HoldAmounts
from klingcost.clock import ManualClock
from klingcost.ledger import Ledger
from klingcost.money import format_minor

CLI = "from klingcost.cli import main; main(prog_name='klingcost')"
META: dict[str, str | int | None] = {
    "endpoint": "videos/text2video",
    "mode": "std",
    "duration": 5,
    "n": 1,
}


def record_refusal(ledger: Ledger, team: str, *, needed: int, left: int) -> None:
    """A refused submission, as the guard records it."""
    ledger.record_refusal(
        team, reason="budget", needed=needed, left=left, unit="credits", budget=team, period="all"
    )


def spend(path: Path | str, days: int = 10) -> None:
    """Two budgets (studio: 200,000 credits a month; ads: 50,000 a week, under studio) and
    ``days`` days of spending up to now: settled tasks (every third charged 10% over, with a
    trusted deduction) and one open hold per team today; then one refusal."""
    now = datetime.now(UTC)
    clock = ManualClock(now - timedelta(days=days - 1))
    with Ledger.open(path, clock=clock) as ledger:
        ledger.set_budget("studio", limit=200_000, period="month")
        ledger.set_budget("ads", limit=50_000, period="week", parent="studio")
        for day in range(days):
            for team, model, cost in (("studio", "kling-v1-6", 4500), ("ads", "kling-v1", 1500)):
                units = cost // 15 * 10  # milli-units: 1 unit = 15 credits here
                hold = ledger.reserve(
                    team,
                    HoldAmounts(units, "video", cost, "credits"),
                    meta={**META, "model": model},
                )
                if day < days - 1:
                    over = day % 3 == 0
                    charged = units * 11 // 10 if over else units
                    ledger.settle(
                        hold.id,
                        units_milli=charged,
                        cost_minor=cost * 11 // 10 if over else cost,
                        raw_deduction=format_minor(charged, 3),
                    )
            clock.advance(timedelta(days=1))
        clock.set(now)
        record_refusal(ledger, "ads", needed=60_000, left=41_000)


@contextmanager
def ui_server(ledger: Path, *args: str) -> Iterator[str]:
    """`klingcost ui --port 0` on ``ledger`` in a subprocess; yields its base URL."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-c", CLI, "ui", "--port", "0", "--ledger", str(ledger), *args]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"on (http://\S+)/ui ", line)
        assert match, f"no URL in {line!r}"
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """``app`` on a real uvicorn server on loopback, from a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
