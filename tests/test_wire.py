"""The wire sends what httpx.Client would send, through the transport it would choose."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest

from klingcost.api.base import DEFAULT_TIMEOUT
from klingcost.api.client import AsyncKlingClient, KlingClient
from klingcost.api.wire import Wire

KEY = "hk-wire-0123456789abcdef"
BODY = {"model_name": "kling-v1-5", "prompt": "海上的船", "duration": "10", "cfg_scale": 0.5}
ANSWER = {"code": 0, "message": "ok", "data": {"task_id": "t-1", "task_status": "submitted"}}


def _seen(requests: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json=ANSWER)

    return httpx.MockTransport(handler)


def _shape(request: httpx.Request) -> tuple[object, ...]:
    return (request.method, str(request.url), request.headers.multi_items(), request.content)


@pytest.mark.parametrize(
    ("method", "path", "body", "params"),
    [
        ("POST", "/v1/videos/text2video", BODY, None),
        ("GET", "/v1/videos/text2video/t%2F1", None, [("pageNum", 2), ("pageSize", 30)]),
    ],
)
def test_the_wire_builds_the_request_httpx_client_builds(
    method: str,
    path: str,
    body: dict[str, object] | None,
    params: list[tuple[str, str | int]] | None,
) -> None:
    requests: list[httpx.Request] = []
    headers = {"Authorization": f"Bearer {KEY}", "Accept": "application/json"}
    base = "https://api.example.com/kling"  # a base URL with a path, as openai-hk's
    with httpx.Client(base_url=base, headers=headers, transport=_seen(requests)) as http:
        http.request(method, path, json=body, params=dict(params) if params else None)
        wire = Wire(http, base)
        answer = wire.send(wire.build(method, path, json=body, params=params))
    assert answer.json() == ANSWER and answer.request is requests[1]
    assert _shape(requests[1]) == _shape(requests[0])
    assert str(requests[1].url).startswith("https://api.example.com/kling/v1/")


def test_both_clients_send_the_body_and_key_as_before() -> None:
    requests: list[httpx.Request] = []
    with KlingClient(KEY, base_url="http://kling.test", transport=_seen(requests)) as kling:
        task = kling.submit("text2video", BODY)
    assert task.task_id == "t-1"

    async def run() -> None:
        async with AsyncKlingClient(
            KEY, base_url="http://kling.test", transport=_seen(requests)
        ) as kling:
            await kling.get_task("text2video", "t-1")

    anyio.run(run)
    sent, asked = requests
    assert json.loads(sent.content) == BODY
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["user-agent"].startswith("python-httpx/")
    assert str(asked.url) == "http://kling.test/v1/videos/text2video/t-1"
    assert asked.extensions["timeout"] == DEFAULT_TIMEOUT.as_dict()  # the client's, as before


def test_the_wire_takes_the_proxy_httpx_would_take(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "direct.test")
    with httpx.Client() as http:
        proxied = Wire(http, "https://api.example.com")
        direct = Wire(http, "https://direct.test")
        assert proxied._transport is not http._transport  # the proxy's mount
        assert direct._transport is http._transport
