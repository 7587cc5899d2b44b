"""Fuzzed requests to ``klingcost proxy`` get Kling-shaped errors, never a 500 or a traceback
(issue 15, item 7).

Hypothesis writes whole HTTP requests, sent over a raw socket (httpx would refuse to send many
of them): any method, paths under every route the proxy has, any headers (an Authorization
that is missing, junk, a JWT-looking string, or a real key), and any body (random bytes, JSON
of any shape, or a real create with fields changed to anything). Every answer the app gives
must be Kling's envelope with a 4xx status (or 200 for a real create that happened to be
valid), and none may hold a traceback or the upstream's key.
"""

# The fixtures are imported by name from proxy_fixtures, then named again as parameters.
# ruff: noqa: F401, F811

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fake_fixtures import KEY, _fake_session, fake_server
from klingcost.ledger import Ledger
from klingcost.proxy.server import ProxyServer
from proxy_fixtures import BODY, Keys, ledger, proxy, proxy_env, start_proxy, team_keys

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ENVELOPE = {"code", "message", "request_id", "data"}
PREFIXES = [
    "/v1/videos/text2video",
    "/kling/v1/videos/image2video",
    "/v1/images/generations",
    "/v1/videos/omni-video/",
    "/v1/videos/multi-image2video/",
    "/_klingcost/callback/",
    "/v1/",
    "/",
]
token = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
header_value = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


def authorizations(real: str) -> st.SearchStrategy[str | None]:
    return st.one_of(
        st.none(),
        st.just(f"Bearer {real}"),
        header_value,
        header_value.map(lambda v: f"Bearer {v}"),
        st.tuples(token, token, token).map(lambda t: "Bearer " + ".".join(t)),
    )


def bodies() -> st.SearchStrategy[bytes]:
    changed = st.dictionaries(
        st.sampled_from([*BODY, "image", "n", "callback_url", "external_task_id", "sound"]),
        json_values,
        max_size=4,
    ).map(lambda change: json.dumps({**BODY, **change}).encode())
    return st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        changed,
        st.just(json.dumps(BODY).encode()),
    )


def exchange(base_url: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return status, {k.lower(): v for k, v in headers.items()}, body


def request(
    method: str, path: str, headers: list[tuple[str, str]], body: bytes, port_host: str
) -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"Host: {port_host}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def check(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status != 500 and b"Traceback" not in body and KEY.encode() not in body, body[:300]
    if status == 200 and headers.get("content-type", "").startswith("application/json"):
        return  # a valid create, forwarded and answered by the upstream
    if headers.get("content-type", "").startswith("text/plain") and status in (400, 408, 413):
        return  # uvicorn's (or the connection limits') answer to a request it cannot parse
    envelope = json.loads(body)
    assert set(envelope) == ENVELOPE and envelope["data"] is None, envelope
    assert 400 <= status < 500 and isinstance(envelope["code"], int), (status, envelope)
    assert 1000 <= envelope["code"] < 2000


def test_fuzzed_requests_get_kling_envelopes_never_a_500(
    proxy: ProxyServer, team_keys: Keys, ledger: Ledger
) -> None:
    host = proxy.base_url.removeprefix("http://")

    @FUZZ
    @given(
        method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        prefix=st.sampled_from(PREFIXES),
        rest=st.text(max_size=30).map(lambda t: quote(t, safe="/")),
        authorization=authorizations(team_keys.ads.key),
        extra=st.lists(st.tuples(token, header_value), max_size=4),
        content_type=st.sampled_from([None, "application/json", "text/plain", "x/\u00ff"]),
        body=bodies(),
    )
    def run(
        method: str,
        prefix: str,
        rest: str,
        authorization: str | None,
        extra: list[tuple[str, str]],
        content_type: str | None,
        body: bytes,
    ) -> None:
        headers = [(name, value.strip()) for name, value in extra]
        if authorization is not None:
            headers.append(("Authorization", authorization.strip()))
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        raw = request(method, prefix + rest, headers, body, host)
        check(*exchange(proxy.base_url, raw))

    run()
    assert ledger.check() == []


def test_fuzzed_bodies_with_a_real_key_are_held_only_when_valid(
    start_proxy: Callable[..., ProxyServer], team_keys: Keys, ledger: Ledger
) -> None:
    """A real key, a create body changed at random: a refusal holds nothing, and whatever was
    held is what was forwarded."""
    served = start_proxy()
    host = served.base_url.removeprefix("http://")
    answered: list[int] = []

    @FUZZ
    @given(body=bodies())
    def run(body: bytes) -> None:
        auth = [("Authorization", f"Bearer {team_keys.ads.key}")]
        raw = request("POST", "/v1/videos/text2video", auth, body, host)
        status, headers, content = exchange(served.base_url, raw)
        check(status, headers, content)
        answered.append(status)

    run()
    holds = list(ledger.holds(team="ads"))
    assert len(holds) == answered.count(200)
    assert all(h.task_id for h in holds)
    assert ledger.check() == []
