"""``klingcost hooks serve`` and ``klingcost fake-server`` at their edges: a taken port, bad
arguments, port 0, and a hook path that is not ASCII.

Whatever may start a server runs as a subprocess with a timeout (killed when it passes), so no
test can leave a server behind or hang; only argument errors, which fail before anything
listens, go through CliRunner.
"""

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
from click.testing import CliRunner

from klingcost.cli import main
from klingcost.hooks import create_app
from klingcost.ledger import Ledger

SECRET = "s3cret-hook-path-0123456789"
CLI = "from klingcost.cli import main; main(prog_name='klingcost')"
#: The arguments that start each server without an API key or a real ledger.
SERVERS = {
    "hooks serve": ["hooks", "serve", "--no-confirm", "--secret", SECRET],
    "fake-server": ["fake-server"],
}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    Ledger.open(tmp_path / "ledger.db").close()  # hooks serve refuses a ledger that is not there
    return {
        **os.environ,
        "KLINGCOST_HOME": str(tmp_path / "home"),
        "KLINGCOST_LEDGER": str(tmp_path / "ledger.db"),
        "KLINGCOST_HOOK_SECRET": "",
        "PYTHONUNBUFFERED": "1",  # the first line (the URL) arrives while the server runs
    }


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run klingcost in a subprocess; a server that starts after all is killed at the timeout."""
    command = [sys.executable, "-c", CLI, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=10)


# --- a port that is taken, out of range, or 0 ---------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
def test_a_taken_port_is_an_error_not_a_refusal(
    server: str, env: dict[str, str], taken_port: int
) -> None:
    result = cli(env, *SERVERS[server], "--port", str(taken_port))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"Error: cannot listen on 127.0.0.1:{taken_port}: " in result.stderr
    assert "in use" in result.stderr  # the reason, as the OS gives it
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    assert "hook URL" not in result.stdout and "fake Kling API on" not in result.stdout


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_a_usage_error(server: str, port: str, env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, [*SERVERS[server], "--port", port], env=env)
    assert result.exit_code == 2, result.output
    assert "--port" in result.stderr and "0<=x<=65535" in result.stderr
    assert "unexpected" not in result.stderr


def start(server: str, env: dict[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", CLI, *SERVERS[server], "--port", "0"]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _stderr(server: subprocess.Popen[str]) -> str:
    """What a server that already exited wrote to stderr (for an assertion's message)."""
    if server.poll() is None or server.stderr is None:
        return ""
    return server.stderr.read()


def stop_with_ctrl_c(server: subprocess.Popen[str]) -> tuple[str, str]:
    server.send_signal(signal.SIGINT)
    try:
        return server.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        server.kill()
        return server.communicate()


def test_hooks_serve_on_port_0_prints_the_port_it_listens_on(env: dict[str, str]) -> None:
    server = start("hooks serve", env)
    try:
        assert server.stdout is not None
        first = server.stdout.readline()  # printed once the socket is bound
        match = re.fullmatch(rf"hook URL: http://127\.0\.0\.1:(\d+)/hooks/{SECRET}\n", first)
        assert match, (first, _stderr(server))
        port = int(match[1])
        assert port != 0
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json() == {"ok": True}
        assert (
            httpx.post(f"http://127.0.0.1:{port}/hooks/{SECRET}", content=b"x").status_code == 400
        )
    finally:
        out, err = stop_with_ctrl_c(server)
    assert server.returncode == 0, (out, err)  # Ctrl-C is how it is meant to stop
    assert "Traceback" not in err


def test_fake_server_stops_on_ctrl_c_with_exit_0(env: dict[str, str]) -> None:
    server = start("fake-server", env)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("fake Kling API on http://127.0.0.1:")
    finally:
        out, err = stop_with_ctrl_c(server)
    assert server.returncode == 0, (out, err)
    assert "interrupted" not in err and "Traceback" not in err


# --- the secret ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret", ["a/b-0123456789abcdef", "0123456789abcdef?x", "0123456789%2Fabcdef"]
)
def test_a_hook_secret_that_is_no_url_segment_is_a_usage_error(
    secret: str, env: dict[str, str]
) -> None:
    args = ["hooks", "serve", "--no-confirm", "--port", "0", "--secret", secret]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 2, result.output
    assert "letters, digits and - . _ ~ only" in result.stderr
    assert secret not in result.stderr


@pytest.mark.parametrize("how", ["--secret", "KLINGCOST_HOOK_SECRET"])
def test_a_short_hook_secret_is_a_usage_error(how: str, env: dict[str, str]) -> None:
    args = ["hooks", "serve", "--no-confirm", "--port", "0"]
    if how == "--secret":
        args += ["--secret", "short"]
    else:
        env = {**env, "KLINGCOST_HOOK_SECRET": "short"}
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 2, result.output
    assert "--secret" in result.stderr and "at least 16 characters" in result.stderr
    assert "'short'" not in result.stderr  # a secret is not echoed back
    assert "unexpected" not in result.stderr


def test_a_short_stored_hook_secret_is_reported_with_its_file(env: dict[str, str]) -> None:
    stored = Path(env["KLINGCOST_HOME"]) / "hook-secret"
    stored.parent.mkdir(parents=True)
    stored.write_text("short\n", encoding="utf-8")
    stored.chmod(0o600)
    result = CliRunner().invoke(main, ["hooks", "serve", "--no-confirm", "--port", "0"], env=env)
    assert result.exit_code == 2, result.output
    assert str(stored) in result.stderr and "at least 16 characters" in result.stderr
    assert "unexpected" not in result.stderr


def hooks_client(ledger: Ledger, secret: str) -> httpx.AsyncClient:
    # raise_app_exceptions=False: an error in the app answers 500, as under uvicorn.
    transport = httpx.ASGITransport(app=create_app(ledger, secret), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://hooks")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "path", ["/hooks/%C3%A9", f"/hooks/{SECRET[:-1]}%C3%A9", "/hooks/%F0%9F%94%91"]
)
async def test_a_non_ascii_hook_path_is_a_wrong_secret(path: str, tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        async with hooks_client(ledger, SECRET) as client:
            wrong = await client.post("/hooks/not-the-secret-at-all", json={"task_id": "1"})
            answer = await client.post(path, json={"task_id": "1"})
    assert wrong.status_code == 404
    assert (answer.status_code, answer.json()) == (404, wrong.json())


@pytest.mark.anyio
async def test_a_non_ascii_secret_still_opens_its_own_path(tmp_path: Path) -> None:
    secret = "clé-secrète-du-crochet"
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        async with hooks_client(ledger, secret) as client:
            answer = await client.post(f"/hooks/{secret}", json={"task_id": "1"})
    assert answer.status_code == 200 and answer.json()["status"] == "ignored"


# --- the stored hook secret is the owner's alone (issue 13, item 13) ----------------------


def test_the_hook_secret_file_is_created_0600_in_one_step(tmp_path: Path) -> None:
    import os
    import stat
    import threading

    from klingcost.hooks import stored_secret

    home = tmp_path / "home"
    old = os.umask(0)  # a umask that would leave a plainly created file world-readable
    try:
        found: list[str] = []
        threads = [
            threading.Thread(target=lambda: found.append(stored_secret(home))) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        os.umask(old)
    path = home / "hook-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Eight servers starting at once: one secret, made once, the one every server uses.
    assert len(set(found)) == 1 and path.read_text(encoding="utf-8") == found[0] + "\n"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_readable_stored_hook_secret_is_refused_with_the_fix(
    env: dict[str, str], mode: int
) -> None:
    stored = Path(env["KLINGCOST_HOME"]) / "hook-secret"
    stored.parent.mkdir(parents=True)
    secret = "a-real-looking-secret-0123456789"
    stored.write_text(secret + "\n", encoding="utf-8")
    stored.chmod(mode)
    result = CliRunner().invoke(main, ["hooks", "serve", "--no-confirm", "--port", "0"], env=env)
    assert result.exit_code == 2, result.output
    assert f"run `chmod 600 {stored}`" in result.stderr
    assert secret not in result.output and "hook URL" not in result.output


# --- a model an overlay adds: priced by the sheet, accepted by a fake told of it ----------

SHEET_OVERLAY = """\
sources:
  my-contract: "our Kling contract, 2026-12"
catalog:
  videos/text2video:
    kling-v3-1: { source: my-contract, durations: "3-15" }
per_second:
  kling-v3-1:
    std: { silent: { units: "0.7", source: my-contract }, sound: { units: 1, source: my-contract } }
"""
FAKE_OVERLAY = """\
sources:
  my-contract: "our Kling contract, 2026-12"
video:
  kling-v3-1:
    source: my-contract
    durations: "3-15"
    per_second: { std: "0.7", std+sound: 1 }
"""


def test_a_model_added_by_overlays_is_held_sent_and_settled_through_the_fake(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The sheet learns kling-v3-1 from an overlay alone; `fake-server --prices` plays an API
    that has launched it, so `klingcost submit` holds, sends and settles it at the charge."""
    (tmp_path / "sheet.yaml").write_text(SHEET_OVERLAY)
    (tmp_path / "fake.yaml").write_text(FAKE_OVERLAY)
    job = tmp_path / "job.json"
    job.write_text('{"model_name": "kling-v3-1", "prompt": "snow", "duration": 7}')
    command = [sys.executable, "-c", CLI, "fake-server", "--port", "0", "--key", "sk-test"]
    server = subprocess.Popen(
        [*command, "--prices", str(tmp_path / "fake.yaml")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        match = re.match(r"fake Kling API on (http://\S+)", first)
        assert match, (first, _stderr(server))
        env = {**env, "KLINGCOST_BASE_URL": match[1], "KLINGCOST_API_KEY": "sk-test"}
        env["KLINGCOST_PRICING"] = str(tmp_path / "sheet.yaml")
        made = cli(env, "budget", "set", "team", "--limit", "1000000")
        assert made.returncode == 0, made.stderr
        sent = cli(
            env, "submit", "-t", "team", "-e", "text2video", str(job), "--wait", "--interval", "0.2"
        )
        assert sent.returncode == 0, sent.stderr
        assert "estimate: 4.9 video units = 73500 credits" in sent.stdout
        assert "settled at final_unit_deduction 4.9" in sent.stdout
    finally:
        _, err = stop_with_ctrl_c(server)
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("videos: {}", "unknown keys ['videos']; allowed: sources, video"),
        ("video: {kling-x: {source: nope, per_second: {std: 1}}}", "source 'nope' is not one of"),
        ("video: {kling-x: {source: seed, per_second: {std: 0.5}}}", "floats are not exact"),
    ],
)
def test_a_bad_fake_price_overlay_is_a_usage_error(
    text: str, problem: str, env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "fake.yaml").write_text(text)
    result = CliRunner().invoke(
        main, ["fake-server", "--prices", str(tmp_path / "fake.yaml")], env=env
    )
    assert result.exit_code == 2, result.output
    assert "--prices" in result.output and problem in result.output


def test_klingcost_itself_reaches_the_fake_over_tls_with_the_printed_exports(
    env: dict[str, str], tmp_path: Path
) -> None:
    """--tls prints SSL_CERT_FILE too: httpx (klingcost's own client) trusts that, not
    REQUESTS_CA_BUNDLE, so the printed lines alone let `klingcost submit` reach the fake."""
    command = [sys.executable, "-c", CLI, "fake-server", "--port", "0", "--key", "sk-test", "--tls"]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline() for _ in range(7)]
        exports = dict(
            line.split("export ", 1)[1].strip().split("=", 1) for line in lines if "export " in line
        )
        assert exports["KLINGCOST_BASE_URL"].startswith("https://"), lines
        assert exports["SSL_CERT_FILE"] == exports["REQUESTS_CA_BUNDLE"], lines
        env = {**env, **exports}
        assert cli(env, "budget", "set", "team", "--limit", "1000000").returncode == 0
        job = Path(__file__).parent.parent / "examples" / "text2video.json"
        sent = cli(env, "submit", "-t", "team", "-e", "text2video", str(job))
        assert sent.returncode == 0, sent.stderr
        assert "submitted, task" in sent.stdout
    finally:
        _, err = stop_with_ctrl_c(server)
    assert "Traceback" not in err


def test_a_multi_image2video_body_is_held_sent_and_settled_through_the_fake(
    env: dict[str, str], tmp_path: Path
) -> None:
    """What Vercel's Kling provider sends: POST /v1/videos/multi-image2video, held at kling-v1-6's
    pro 10 s price, created and queried on the fake's multi-image2video routes, settled there."""
    job = tmp_path / "job.json"
    images = [{"image": f"https://example.com/{n}.png"} for n in range(3)]
    body = {"model_name": "kling-v1-6", "prompt": "a", "mode": "pro", "duration": "10"}
    job.write_text(json.dumps({**body, "image_list": images}))
    command = [sys.executable, "-c", CLI, "fake-server", "--port", "0", "--key", "sk-test"]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        match = re.match(r"fake Kling API on (http://\S+)", first)
        assert match, (first, _stderr(server))
        env = {**env, "KLINGCOST_BASE_URL": match[1], "KLINGCOST_API_KEY": "sk-test"}
        env["KLINGCOST_PRICING"] = ""
        made = cli(env, "budget", "set", "team", "--limit", "1000000")
        assert made.returncode == 0, made.stderr
        sent = cli(
            env, "submit", "-t", "team", "-e", "multi-image2video", str(job), "--wait",
            "--interval", "0.2",
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        assert (
            "estimate: 7 video units = 105000 credits (videos/multi-image2video kling-v1-6)"
            in sent.stdout
        )
        assert "settled at final_unit_deduction 7" in sent.stdout
        recorded = httpx.get(f"{match[1]}/_fake/requests").json()
        paths = {(r["method"], r["path"].split("/")[3]) for r in recorded}
        assert ("POST", "multi-image2video") in paths and ("GET", "multi-image2video") in paths
    finally:
        _, err = stop_with_ctrl_c(server)
    assert "Traceback" not in err
