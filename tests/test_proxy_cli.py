"""``klingcost proxy``'s command line: mistakes are one line and the right exit code, before
anything is served."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from klingcost.cli import main


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "KLINGCOST_HOME": str(tmp_path / "home"),
        "KLINGCOST_LEDGER": str(tmp_path / "ledger.db"),
        "KLINGCOST_API_KEY": "hk-cli-test-0123456789",
        "KLINGCOST_BASE_URL": "",
        "KLINGCOST_PROXY_SECRET": "",
        "KLINGCOST_HOOK_SECRET": "",
    }


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    # An empty value stands for "unset" (CliRunner's env cannot remove a variable by "").
    given = {k: (v or None) for k, v in env.items()}
    result = CliRunner().invoke(main, ["proxy", *args], env=given)
    return result.exit_code, result.output


def test_without_an_api_key_it_says_so_and_serves_nothing(env: dict[str, str]) -> None:
    code, output = run({**env, "KLINGCOST_API_KEY": ""}, "--port", "0")
    assert code == 1 and "KLINGCOST_API_KEY" in output and "klingcost proxy on" not in output


def test_an_upstream_that_is_no_url_is_invalid_input(env: dict[str, str]) -> None:
    code, output = run(env, "--port", "0", "--upstream", "api.example.com/kling")
    assert code == 2
    assert "'api.example.com/kling'" in output and "absolute http(s) URL" in output


def test_a_certificate_needs_its_key(env: dict[str, str], tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    code, output = run(env, "--port", "0", "--certfile", str(cert))
    assert code == 2 and "--certfile and --keyfile go together" in output


def test_a_taken_port_is_an_error(env: dict[str, str], taken_port: int) -> None:
    code, output = run(env, "--port", str(taken_port), "--upstream", "http://127.0.0.1:9")
    assert code == 1 and f"cannot listen on 127.0.0.1:{taken_port}" in output
    assert "Traceback" not in output
