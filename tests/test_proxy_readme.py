"""The README's "Proxy" section, run as written (issue 15, "done when").

The commands are read from the README itself (its ``$`` lines), so the section cannot drift
from what works: they run in one bash script, in a fresh ``KLINGCOST_HOME``, with only the
ports (8787, 8790: maybe taken on a shared machine) and the example file's path changed. A
command sent to the background is followed by a wait until its port answers, as a person
typing the next command would have waited.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from proxy_processes import free_port
from test_real_clients import CLIENTS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def section_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Proxy", 1)[1].split("\n## ", 1)[0]
    return [line.strip()[2:] for line in section.splitlines() if line.strip().startswith("$ ")]


def script(home: Path, extra: list[str]) -> str:
    fake, proxy = free_port(), free_port()
    work = home.parent / "work"  # a user's own folder: key.json is written there
    work.mkdir(parents=True, exist_ok=True)
    cleanup = "trap 'kill ${pids[@]} 2>/dev/null || true' EXIT"
    lines = ["set -euo pipefail", f"cd {work}", "pids=()", cleanup]
    for command in section_commands():
        command = command.replace("/tmp/kc-proxy", str(home))
        command = command.replace(":8787", f":{fake}").replace(":8790", f":{proxy}")
        command = command.replace("klingcost fake-server ", f"klingcost fake-server --port {fake} ")
        command = command.replace("klingcost proxy ", f"klingcost proxy --port {proxy} ")
        command = command.replace("@examples/", f"@{ROOT}/examples/")
        command = re.sub(r"\s+#.*$", "", command)  # the README's comments
        lines.append(f"echo {shlex.quote('>>> ' + command[:60])}")
        if command.endswith("&"):
            port = fake if "fake-server" in command else proxy
            lines.append(f"{command[:-1]} >{work}/bg-{port}.log 2>&1 & pids+=($!)")
            lines.append(
                f"for _ in $(seq 300); do curl -s -o /dev/null http://127.0.0.1:{port}/healthz "
                f"&& break; sleep 0.1; done"
            )
        else:
            lines.append(command)
    lines += [
        c.replace(":8790", f":{proxy}").replace("examples/", f"{ROOT}/examples/") for c in extra
    ]
    return "\n".join(lines) + "\n"


def run(tmp_path: Path, extra: list[str] = ()) -> str:  # type: ignore[assignment]
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLINGCOST_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["bash", "-c", script(home, list(extra))],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        start_new_session=True,
    )
    with_logs = done.stdout + done.stderr
    for log in (tmp_path / "work").glob("bg-*.log"):
        with_logs += f"\n--- {log.name}\n{log.read_text()}"
    assert done.returncode == 0, with_logs[-4000:]
    return done.stdout


def test_the_readme_proxy_section_prices_holds_refuses_and_settles(tmp_path: Path) -> None:
    out = run(tmp_path)
    held, refused, holds = (
        out.split(">>> curl")[1],
        out.split(">>> curl")[2],
        out.split(">>> sleep")[1],
    )
    assert "HTTP/1.1 200 OK" in held
    assert "x-klingcost-estimate: units=7; pack=video; cost=105000; currency=credits" in held
    assert "x-klingcost-hold: 1" in held and "x-klingcost-team: studio" in held
    envelope, _ = json.JSONDecoder().raw_decode(refused.split("\n", 1)[1])  # no newline after it
    assert envelope["code"] == 1102 and envelope["data"] is None
    assert (
        "needs 105000 credits, 45000 of 150000 credits left in period month" in envelope["message"]
    )
    row = next(line.split() for line in holds.splitlines() if line.strip().startswith("1 "))
    assert row[1:3] == ["studio", "settled"] and row[4:6] == ["105000", "credits"]


@pytest.mark.realclients
def test_the_readme_third_party_client_runs_through_the_proxy(tmp_path: Path) -> None:
    python = CLIENTS / "venv/bin/python"
    if not python.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, yet klingai-api is not installed at {python}")
        pytest.skip(f"klingai-api is not installed at {python}: run .ci/run")
    out = run(
        tmp_path,
        [
            f"{python} examples/proxy_client.py key.json http://127.0.0.1:8790 > client.json",
            "cat client.json",
            "echo '>>> holds'",
            "sleep 2; klingcost holds --team studio",
        ],
    )
    lines = out.splitlines()
    client = json.loads(next(line for line in lines if line.startswith('{"task_id"')))
    assert client["statuses"][-1] == "succeed" and client["units"] == "1"
    holds = out.rsplit(">>> holds", 1)[1]
    row = next(line.split() for line in holds.splitlines() if client["task_id"] in line)
    assert row[1:3] == ["studio", "settled"] and row[4:6] == ["15000", "credits"]
