"""The wire sends what httpx.Client would send, through the transport it would choose."""

from __future__ import annotations

import asyncio
import json

import anyio
import httpx
import pytest

from fake_fixtures import KEY as FAKE_KEY
from fake_fixtures import _fake_session, fake_server  # noqa: F401
from klingcost.api.base import DEFAULT_TIMEOUT
from klingcost.api.client import AsyncKlingClient, KlingClient
from klingcost.api.wire import SHARDS, ShardedTransport, Wire
from klingcost.testing import FakeKling

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


def test_concurrent_requests_spread_over_pools_and_sequential_ones_reuse_one(
    fake: FakeKling,
) -> None:
    async def run() -> tuple[list[int], list[int]]:
        async with AsyncKlingClient(FAKE_KEY, base_url=fake.base_url) as kling:
            task = await kling.submit("text2video", {"prompt": "a ship", "duration": 5})
            for _ in range(5):  # one after another: the first pool, one connection
                await kling.get_task("text2video", task.task_id)
            pools = kling._wire._transport.pools
            sequential = [len(pool._pool.connections) for pool in pools]
            await asyncio.gather(*(kling.get_task("text2video", task.task_id) for _ in range(16)))
            concurrent = [len(pool._pool.connections) for pool in pools]
            assert kling._wire._transport.busy == [0] * SHARDS  # every answer counted out
            return sequential, concurrent

    sequential, concurrent = anyio.run(run)
    assert sequential == [1]  # no other pool was made while requests did not overlap
    assert len(concurrent) == SHARDS and all(count >= 1 for count in concurrent)


def test_a_proxy_from_the_environment_keeps_the_one_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")

    async def run() -> bool:
        async with AsyncKlingClient(KEY, base_url="http://kling.test") as kling:
            return isinstance(kling._wire._transport, ShardedTransport)

    assert anyio.run(run) is False
