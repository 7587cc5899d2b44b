"""The fake Kling API as Kling's own clients meet it: JWT auth, profiles, envelope errors, TLS,
recorded bodies and the result files it serves. Spoken to with bare httpx."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from klingcost.cli import main
from klingcost.testing import FakeKling
from klingcost.testing.auth import Authenticator, sign_jwt
from media_checks import mp4_boxes, png_size

KEY = "hk-fake-key-7d1e8b4f9c2a"
ACCESS = "ak-fake-access-0b1c2d"
SECRET = "sk-fake-secret-0123456789abcdef0123456789abcdef"
ENVELOPE = {"code", "message", "request_id", "data"}
T2V = "/v1/videos/text2video"


@pytest.fixture(scope="module")
def _served() -> Iterator[FakeKling]:
    with FakeKling(
        api_key=KEY, auth="both", access_key=ACCESS, secret_key=SECRET, done_after=0
    ) as fake:
        yield fake


@pytest.fixture
def fake(_served: FakeKling) -> FakeKling:
    _served.reset()
    _served.configure(profile="openai-hk", done_after=0, processing_after=0)
    return _served


def jwt(**options: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {sign_jwt(ACCESS, SECRET, **options)}"}


def post(fake: FakeKling, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{fake.base_url}{path}", json=body, headers=headers, timeout=5)


def kling_error(answer: httpx.Response) -> tuple[int, int]:
    payload = answer.json()
    assert set(payload) == ENVELOPE and payload["data"] is None and payload["message"]
    return answer.status_code, payload["code"]


# --- authentication ------------------------------------------------------------------------


def test_a_signed_jwt_creates_a_task_and_is_recorded_as_such(fake: FakeKling) -> None:
    answer = post(fake, T2V, {"prompt": "x"}, jwt())
    assert answer.status_code == 200 and answer.json()["code"] == 0
    [record] = fake.requests("POST")
    assert record["auth"] == "jwt" and record["body"] == {"prompt": "x"}
    assert fake.bodies() == [(T2V, {"prompt": "x"})]


def test_recorded_bodies_never_show_a_key_even_one_a_client_put_in_them(fake: FakeKling) -> None:
    token = sign_jwt(ACCESS, SECRET)
    leaky = {
        "prompt": f"keys {KEY} and {SECRET}",
        "api_key": KEY,
        "auth": {"user": ACCESS, SECRET: ACCESS},
        "note": "an ordinary prompt stays as sent",
    }
    assert post(fake, T2V, leaky, {"Authorization": f"Bearer {KEY}"}).json()["code"] == 0
    post(fake, T2V, {"prompt": f"token {token}"}, {"Authorization": f"Bearer {token}"})
    post(fake, T2V, f"a string {KEY}", {"Authorization": f"Bearer {KEY}"})
    shown = httpx.get(f"{fake.base_url}/_fake/requests", timeout=5).text
    for secret in (KEY, SECRET, ACCESS, token, KEY[:12], SECRET[-10:]):
        assert secret not in shown
    assert "an ordinary prompt stays as sent" in shown and "<redacted>" in shown


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 1001),
        ({"Authorization": "Basic abc"}, 1001),
        (jwt(lifetime=-10), 1004),  # expired 10 s ago
        # nbf 595 s ahead of when the test runs (not of when the suite was collected)
        (lambda: jwt(now=time.time() + 600), 1003),
        ({"Authorization": f"Bearer {sign_jwt('ak-someone-else', SECRET)}"}, 1002),  # iss
        ({"Authorization": f"Bearer {sign_jwt(ACCESS, SECRET + 'x')}"}, 1002),  # signature
        ({"Authorization": f"Bearer {sign_jwt(ACCESS, SECRET, claims={'exp': None})}"}, 1002),
        ({"Authorization": "Bearer hk-wrong-key"}, 1002),  # not a JWT: a Bearer key, unknown
    ],
)
def test_refused_credentials_get_kling_codes(
    fake: FakeKling, headers: dict[str, str] | Callable[[], dict[str, str]], code: int
) -> None:
    if callable(headers):
        headers = headers()
    assert kling_error(post(fake, T2V, {"prompt": "x"}, headers)) == (401, code)
    assert fake.ledger()["tasks"] == []


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b", "e30.!!!.x"])
def test_a_token_that_is_no_jwt_is_1000_in_jwt_mode(token: str) -> None:
    auth = Authenticator("jwt", access_key=ACCESS, secret_key=SECRET)
    scheme, refused = auth.check(f"Bearer {token}")
    assert scheme == "jwt" and refused is not None and refused.code == 1000


def test_a_token_signed_with_alg_none_is_refused() -> None:
    def part(value: dict[str, Any]) -> str:
        import base64

        raw = json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    token = f"{part({'alg': 'none'})}.{part({'iss': ACCESS, 'exp': 2**40})}."
    auth = Authenticator("jwt", access_key=ACCESS, secret_key=SECRET)
    scheme, refused = auth.check(f"Bearer {token}")
    assert scheme == "jwt" and refused is not None and refused.code == 1002


def test_each_mode_takes_its_credentials(fake: FakeKling) -> None:
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert post(fake, T2V, {"prompt": "x"}, bearer).status_code == 200  # both: a key passes
    fake.configure(auth="jwt")
    try:
        assert kling_error(post(fake, T2V, {"prompt": "x"}, bearer)) == (401, 1000)  # no JWT
        assert post(fake, T2V, {"prompt": "x"}, jwt()).status_code == 200
        fake.configure(auth="bearer")
        assert post(fake, T2V, {"prompt": "x"}, bearer).status_code == 200
        assert kling_error(post(fake, T2V, {"prompt": "x"}, jwt())) == (401, 1002)
    finally:
        fake.configure(auth="both")
    schemes = [r["auth"] for r in fake.requests("POST")]
    assert schemes == ["bearer", "jwt", "jwt", "bearer", "bearer"]


def test_jwt_mode_needs_both_keys_and_hides_them() -> None:
    with pytest.raises(ValueError, match="access key and a secret key"):
        Authenticator("jwt", access_key=ACCESS)
    auth = Authenticator("both", api_key=KEY, access_key=ACCESS, secret_key=SECRET)
    assert SECRET not in repr(auth) and KEY not in repr(auth)


def test_settings_never_show_a_key(fake: FakeKling) -> None:
    settings = httpx.get(f"{fake.base_url}/_fake/config").json()
    assert settings["auth"] == "both" and settings["api_key_required"] is True
    assert SECRET not in json.dumps(settings) and KEY not in json.dumps(settings)
    assert KEY not in json.dumps(fake.requests()) and SECRET not in json.dumps(fake.requests())


# --- errors: all in the envelope, auth first ------------------------------------------------


def test_an_unknown_route_is_401_before_auth_and_404_after(fake: FakeKling) -> None:
    url = f"{fake.base_url}/v1/videos/lip-sync"
    assert kling_error(httpx.get(url)) == (401, 1001)
    assert kling_error(httpx.get(url, headers=jwt())) == (404, 1202)
    assert kling_error(httpx.get(f"{fake.base_url}/elsewhere", headers=jwt())) == (404, 1202)


def test_a_wrong_method_is_405_in_the_envelope(fake: FakeKling) -> None:
    answer = httpx.delete(f"{fake.base_url}{T2V}", headers=jwt())
    assert kling_error(answer) == (405, 1202)
    answer = httpx.put(f"{fake.base_url}{T2V}/123", headers=jwt())
    assert kling_error(answer) == (405, 1202)


def test_bad_json_is_1200_in_the_envelope(fake: FakeKling) -> None:
    answer = httpx.post(f"{fake.base_url}{T2V}", content=b"{nope", headers=jwt())
    assert kling_error(answer) == (400, 1200)
    assert fake.requests("POST")[0]["body"] == "{nope"  # recorded as the text it was


def test_an_unknown_task_is_1203(fake: FakeKling) -> None:
    assert kling_error(httpx.get(f"{fake.base_url}{T2V}/999", headers=jwt())) == (404, 1203)


# --- profiles -------------------------------------------------------------------------------


def test_profiles_differ_in_limits_and_billing(fake: FakeKling) -> None:
    v26 = {"prompt": "x", "model_name": "kling-v2-6", "mode": "std"}
    long = {"prompt": "x" * 501}
    assert kling_error(post(fake, T2V, long, jwt())) == (400, 1201)  # openai-hk: 500 at most
    post(fake, T2V, v26, jwt())
    fake.configure(profile="kling")
    assert post(fake, T2V, long, jwt()).status_code == 200  # Kling: 2500
    post(fake, T2V, v26, jwt())
    charged = [(t["model"], t["billed_as"], t["units"]) for t in fake.ledger()["tasks"]]
    assert charged == [
        ("kling-v2-6", "pro", "2.5"),  # openai-hk: always pro
        ("kling-v1", "std", "1"),
        ("kling-v2-6", "std", "1.5"),  # Kling: std as sent
    ]
    answer = httpx.post(f"{fake.base_url}/_fake/config", json={"profile": "moon"})
    assert answer.status_code == 400 and "moon" in answer.json()["error"]


# --- TLS ------------------------------------------------------------------------------------


def test_tls_serves_https_with_a_certificate_to_trust() -> None:
    with FakeKling(api_key=KEY, tls=True, done_after=0) as fake:
        assert fake.base_url.startswith("https://127.0.0.1:") and fake.cert is not None
        cert = fake.cert
        assert cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(verify=ssl.create_default_context(cafile=cert), timeout=5) as trusting:
            answer = trusting.post(f"{fake.base_url}{T2V}", json={"prompt": "x"}, headers=headers)
            assert answer.status_code == 200
            localhost = fake.base_url.replace("127.0.0.1", "localhost")  # in the certificate
            assert trusting.get(f"{localhost}/_fake/ledger").status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{fake.base_url}/_fake/ledger")  # not trusted by default
    assert not cert.exists()  # removed when the server stops


# --- result files ---------------------------------------------------------------------------


def test_result_urls_are_served_by_the_fake(fake: FakeKling) -> None:
    post(fake, "/v1/images/generations", {"prompt": "x", "n": 2}, jwt())
    post(fake, T2V, {"prompt": "x", "duration": "10"}, jwt())
    with httpx.Client(headers=jwt(), timeout=5) as http:
        image_task, video_task = (
            http.get(f"{fake.base_url}/v1/{e}").json()["data"][0]
            for e in ("images/generations", "videos/text2video")
        )
        urls = [i["url"] for i in image_task["task_result"]["images"]]
        assert [u.rsplit("/", 1)[1] for u in urls] == [
            f"{image_task['task_id']}-{i}.png" for i in (0, 1)
        ]
        for url in urls:
            answer = httpx.get(url)
            assert answer.headers["content-type"] == "image/png"
            assert png_size(answer.content) == (300, 300)
        [video] = video_task["task_result"]["videos"]
        answer = httpx.get(video["url"])
    assert answer.headers["content-type"] == "video/mp4"
    boxes = mp4_boxes(answer.content)
    assert list(boxes) == [b"ftyp", b"moov", b"mdat"] and boxes[b"ftyp"][:4] == b"isom"
    moov = mp4_boxes(boxes[b"moov"])
    scale, duration = struct.unpack(">II", moov[b"mvhd"][12:20])
    assert duration / scale == 10 == int(video["duration"])
    assert b"trak" in moov


def test_an_unknown_or_unfinished_file_is_404(fake: FakeKling) -> None:
    fake.configure(done_after=30)
    task_id = post(fake, T2V, {"prompt": "x"}, jwt()).json()["data"]["task_id"]
    for name in (f"{task_id}-0.mp4", "123-0.png", f"{task_id}-1.mp4"):
        assert kling_error(httpx.get(f"{fake.base_url}/_fake/files/{name}"))[1] in (1202, 1203)
    assert png_size(httpx.get(f"{fake.base_url}/_fake/files/sample.png").content) == (300, 300)


def test_account_costs_show_what_was_charged(fake: FakeKling) -> None:
    post(fake, T2V, {"prompt": "x", "model_name": "kling-v1-5", "mode": "pro"}, jwt())
    answer = httpx.get(f"{fake.base_url}/account/costs", headers=jwt()).json()
    packs = {p["resource_pack_id"]: p for p in answer["data"]["resource_pack_subscribe_infos"]}
    assert packs["fake-video"]["remaining_quantity"] == "999996.5"
    assert packs["fake-image"]["remaining_quantity"] == "1000000"
    assert kling_error(httpx.get(f"{fake.base_url}/account/costs")) == (401, 1001)


# --- the command ----------------------------------------------------------------------------


def test_cli_help_lists_the_new_options() -> None:
    result = CliRunner().invoke(main, ["fake-server", "--help"])
    assert result.exit_code == 0
    for option in ("--auth", "--access-key", "--secret-key", "--profile", "--tls"):
        assert option in result.output


@pytest.mark.parametrize("argv", [["--auth", "jwt"], ["--auth", "both", "--access-key", "a"]])
def test_cli_jwt_without_both_keys_is_a_usage_error(argv: list[str]) -> None:
    result = CliRunner().invoke(main, ["fake-server", *argv], env={"KLINGCOST_FAKE_SECRET_KEY": ""})
    assert result.exit_code == 2
    assert "--access-key and --secret-key" in result.stderr
    assert "Traceback" not in result.output


def test_cli_tls_prints_the_certificate_and_serves_jwt(tmp_path: Path) -> None:
    command = [
        sys.executable, "-c", "from klingcost.cli import main; main(prog_name='klingcost')",
        "fake-server", "--port", "0", "--tls", "--auth", "jwt", "--profile", "kling",
        "--access-key", ACCESS, "--secret-key", SECRET,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "KLINGCOST_HOME": str(tmp_path)}
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline().decode()]
        while not lines[-1].startswith("  certificate: ") and len(lines) < 8:
            lines.append(server.stdout.readline().decode())  # the exports, then the certificate
        url = re.match(r"fake Kling API on (https://127\.0\.0\.1:\d+) ", lines[0])
        cert = re.match(r"  certificate: (\S+)\n", lines[-1])
        assert url and cert, lines
        answer = httpx.post(
            f"{url[1]}{T2V}",
            json={"prompt": "x" * 600},
            headers=jwt(),
            verify=ssl.create_default_context(cafile=cert[1]),
        )
        assert answer.status_code == 200, answer.text  # kling profile: 600 characters pass
    finally:
        server.send_signal(signal.SIGTERM)  # as `kill` stops it: the key is removed too
        out, err = server.communicate(timeout=10)
    assert server.returncode == 0 and b"Traceback" not in err
    assert SECRET.encode() not in out + err
    assert not Path(cert[1]).exists()
