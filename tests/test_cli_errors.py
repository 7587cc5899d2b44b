"""The errors of issue 16 in the house style: one line, the cause and what to do, the exit
code as documented, and nothing written."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from fake_fixtures import BODIES, KEY, _fake_session, fake_server  # noqa: F401
from klingcost.cli import main
from klingcost.fake_server import FakeKling
from klingcost.ledger import Ledger

ENDPOINT = "videos/text2video"
BODY = BODIES[ENDPOINT]
CLI = [sys.executable, "-c", "from klingcost.cli import main; main(prog_name='klingcost')"]
SECRET = "s3cret-hook-path-0123456789"


@pytest.fixture
def env(fake: FakeKling, tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("studio", limit=1_000_000, period="month")
    return {
        "KLINGCOST_API_KEY": KEY,
        "KLINGCOST_BASE_URL": fake.base_url,
        "KLINGCOST_LEDGER": str(path),
        "KLINGCOST_HOME": str(tmp_path / "home"),
        "KLINGCOST_PRICING": "",
        "KLINGCOST_HOOK_URL": "",
        "KLINGCOST_HOOK_SECRET": "",
    }


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def body(tmp_path: Path, value: object = BODY, name: str = "job.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(value), encoding="utf-8")
    return str(path)


def holds(env: dict[str, str]) -> list[str]:
    with Ledger.open(env["KLINGCOST_LEDGER"]) as ledger:
        return [h.state for h in ledger.holds()]


def one_line(result: Result) -> str:
    [line] = result.stderr.strip().splitlines()[-1:]
    assert "Traceback" not in result.output and "unexpected" not in result.output
    return line


def test_a_postgres_ledger_without_psycopg_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "klingcost.ledger._postgres", raising=False)
    result = run({}, "budget", "list", "--ledger", "postgresql://u:pw@localhost/db")
    assert result.exit_code == 2
    assert one_line(result) == (
        "Error: a postgresql:// ledger needs psycopg, which is not installed: "
        "pip install 'klingcost[postgres]'"
    )
    assert "pw" not in result.output


def test_a_key_reused_for_another_body_is_one_line(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    assert run(env, "submit", "-t", "studio", "-e", ENDPOINT, "--key", "k1",
               body(tmp_path)).exit_code == 0  # fmt: skip
    other = body(tmp_path, {**BODY, "duration": "5"}, "other.json")
    result = run(env, "submit", "-t", "studio", "-e", ENDPOINT, "--key", "k1", other)
    assert result.exit_code == 2
    line = one_line(result)
    assert line.startswith("Error: key 'k1' already names hold 1 of studio (7 video units,")
    assert "give another key for another job" in line and "HoldAmounts" not in result.output
    assert len(fake.requests("POST")) == 1 and holds(env) == ["submitted"]


@pytest.mark.parametrize("url", ["notaurl", "ftp://x", "http://"])
def test_a_base_url_that_is_no_url_is_refused_before_any_hold(
    env: dict[str, str], fake: FakeKling, tmp_path: Path, url: str
) -> None:
    result = run({**env, "KLINGCOST_BASE_URL": url}, "submit", "-t", "studio", "-e", ENDPOINT,
                 body(tmp_path))  # fmt: skip
    assert result.exit_code == 2
    assert f"{url!r} is not an http(s) URL with a host" in result.stderr
    assert "KLINGCOST_BASE_URL" in result.stderr
    assert holds(env) == [] and fake.requests() == []


def test_submit_without_a_key_names_the_variable(env: dict[str, str], tmp_path: Path) -> None:
    result = run({**env, "KLINGCOST_API_KEY": ""}, "submit", "-t", "studio", "-e", ENDPOINT,
                 body(tmp_path))  # fmt: skip
    assert result.exit_code == 1
    assert "export KLINGCOST_API_KEY=<your key>" in one_line(result)
    assert "api_key=" not in result.output and holds(env) == []


def test_a_home_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    env = {"KLINGCOST_HOME": str(blocker / "home"), "KLINGCOST_LEDGER": ""}
    result = run(env, "budget", "set", "acme", "--limit", "5")
    assert result.exit_code == 2
    line = one_line(result)
    assert line.startswith(f"Error: cannot create the klingcost home {blocker / 'home'}: ")
    assert "set KLINGCOST_HOME to a folder you can write" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes any folder: no permission to deny")
def test_a_home_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o500)
    result = run({"KLINGCOST_HOME": str(home), "KLINGCOST_LEDGER": ""}, "budget", "set", "acme",
                 "--limit", "5")  # fmt: skip
    assert result.exit_code == 2 and "permission denied" in one_line(result)
    assert list(home.iterdir()) == []


def test_a_ledger_in_a_missing_folder_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "l.db"
    result = run({}, "budget", "set", "acme", "--limit", "5", "--ledger", str(missing))
    assert result.exit_code == 2
    assert f"no ledger at {missing}, and no folder {missing.parent}" in result.stderr
    assert f"mkdir -p {missing.parent}" in result.stderr
    assert not (tmp_path / "nonexistent").exists()


def test_help_lists_every_environment_variable_the_code_reads() -> None:
    source = Path(__file__).parent.parent / "src" / "klingcost"
    names = set()
    for path in source.rglob("*.py"):
        names |= set(re.findall(r"KLINGCOST_[A-Z_]*[A-Z]", path.read_text(encoding="utf-8")))
    shown = CliRunner().invoke(main, ["--help"]).output
    assert names >= {"KLINGCOST_HOME", "KLINGCOST_LEDGER", "KLINGCOST_API_KEY"}
    assert sorted(n for n in names if n not in shown) == []


# --- servers, in real processes -------------------------------------------------------------


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def server_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KLINGCOST_HOME": str(tmp_path / "home"),
        "KLINGCOST_LEDGER": str(tmp_path / "ledger.db"),
        "KLINGCOST_HOOK_SECRET": "",
        "PYTHONUNBUFFERED": "1",
    }


def test_the_two_servers_default_to_different_ports() -> None:
    fake = CliRunner().invoke(main, ["fake-server", "--help"]).output
    hooks = CliRunner().invoke(main, ["hooks", "serve", "--help"]).output
    assert re.search(r"default:\s+8787", fake) and re.search(r"default:\s+8788", hooks)


@pytest.mark.parametrize("server", [["fake-server"], ["hooks", "serve", "--no-confirm"]])
def test_a_busy_port_says_what_to_do(server: list[str], tmp_path: Path, taken_port: int) -> None:
    result = subprocess.run([*CLI, *server, "--port", str(taken_port)], env=server_env(tmp_path),
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{taken_port}" in result.stderr
    assert "pick another port with --port N; --port 0 takes any free one" in result.stderr


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()


def test_the_fake_prints_the_key_it_made_and_takes_only_it(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*CLI, "fake-server", "--port", "0"],
        env=server_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        exports = dict(
            line.split("export ", 1)[1].strip().split("=", 1) for line in lines if "export" in line
        )
        url, key = exports["KLINGCOST_BASE_URL"], exports["KLINGCOST_API_KEY"]
        assert key.startswith("fake-") and len(key) > 12
        task = f"{url}/v1/videos/text2video/nope"
        assert httpx.get(task, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(task, headers={"Authorization": f"Bearer {key}"}).status_code != 401
    finally:
        stop(process)


def test_hooks_serve_prints_the_real_export_line_and_logs_callbacks(tmp_path: Path) -> None:
    Ledger.open(tmp_path / "ledger.db").close()  # hooks serve settles holds: it must exist
    command = [*CLI, "hooks", "serve", "--no-confirm", "--port", "0", "--secret", SECRET]
    process = subprocess.Popen(command, env=server_env(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert process.stdout is not None
        url = process.stdout.readline().removeprefix("hook URL: ").strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith(f"/hooks/{SECRET}")
        assert process.stdout.readline().strip() == (
            f"set it for submitters: export KLINGCOST_HOOK_URL={url}"
        )
        process.stdout.readline()  # "each callback is logged below"
        answer = httpx.post(url, json={"task_id": "12345", "task_status": "succeed"})
        assert answer.status_code == 200
        logged = process.stdout.readline()
        assert "callback 200 task 12345: ignored - unknown task" in logged
        assert SECRET not in logged
        wrong = url.replace(SECRET, "x" * len(SECRET))
        assert httpx.post(wrong, json={}).status_code == 404
        assert "callback refused: wrong path (404)" in process.stdout.readline()
    finally:
        stop(process)


def test_ctrl_c_while_waiting_says_the_hold_stays_open(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    fake.configure(done_after=120)
    command = [*CLI, "submit", "-t", "studio", "-e", ENDPOINT, "--wait", "--interval", "0.2",
               body(tmp_path)]  # fmt: skip
    process = subprocess.Popen(
        command,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(2)]
    assert lines[1].startswith("hold 1 on studio: submitted, task "), lines
    _, err = stop(process)
    assert process.returncode == 1, err
    assert "interrupted while waiting: hold 1 on 'studio' stays counted" in err, (lines, err)
    assert "`klingcost sync` settles it when the task ends" in err and "Traceback" not in err
    assert holds(env) == ["submitted"]


@pytest.mark.parametrize("command", [["sync", "--team", "nosuch"], ["submit", "-t", "nosuch"]])
def test_an_unknown_team_is_invalid_input(
    env: dict[str, str], fake: FakeKling, tmp_path: Path, command: list[str]
) -> None:
    extra = ["-e", ENDPOINT, body(tmp_path)] if command[0] == "submit" else []
    result = run(env, *command, *extra)
    assert result.exit_code == 2
    assert "no budget named 'nosuch'" in one_line(result)
    assert holds(env) == [] and fake.requests() == []
