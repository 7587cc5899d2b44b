"""The proxy's operator layer (issue 15, item 5): metrics, access log, limits, on loopback.

A small Starlette app stands in for the proxy's routes (its handlers call ``note`` as the
proxy's do), wrapped by :func:`klingcost.proxy.operate.operated` and served by uvicorn on a real
socket; the upstream is the fake Kling API; the open holds come from a real SQLite ledger.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fake_fixtures import BODIES, KEY, _fake_session, fake_server  # noqa: F401
from klingcost._listen import listening_socket
from klingcost.api.http11 import HTTP11Transport
from klingcost.budgets import HoldAmounts
from klingcost.fake_server import FakeKling
from klingcost.ledger import Ledger
from klingcost.proxy import accesslog
from klingcost.proxy.accesslog import note
from klingcost.proxy.labels import route_of
from klingcost.proxy.limits import (
    IMAGE_BASE64,
    MAX_BODY,
    exception_handlers,
    proxy_limits,
    upstream_error,
)
from klingcost.proxy.metrics import Metrics
from klingcost.proxy.operate import operated
from klingcost.proxy.upstream import upstream_transport

SECRET = "cb-secret-0123456789abcdef"
PROMPT = "a lighthouse at dusk, private"
BEARER = "kc-live-DO-NOT-LOG-5f1e"


@contextmanager
def serving(app: object) -> Iterator[str]:
    """``app`` served by uvicorn on 127.0.0.1 (a free port) from a thread; yields its URL."""
    sock = listening_socket("127.0.0.1", 0)
    config = uvicorn.Config(app, log_level="critical", lifespan="off", access_log=False)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def stand_in(metrics: Metrics, upstream: str | None = None) -> Starlette:
    """Routes shaped like the proxy's: a create that holds, one that is refused, a query."""

    async def create(request: Request) -> Response:
        body = json.loads(await request.body())
        note(request, team="film", key_id="key-7")
        if body.get("duration") == "over":
            note(request, refusal="budget")
            return JSONResponse({"code": 1102, "message": "over", "data": None}, 429)
        headers = {"X-Klingcost-Hold": "12", "X-Klingcost-Estimate": "3.5"}
        return JSONResponse({"code": 0, "data": {"task_id": "t1"}}, headers=headers)

    async def query(request: Request) -> Response:
        return JSONResponse({"code": 0, "data": {"task_id": request.path_params["task_id"]}})

    async def boom(request: Request) -> Response:
        raise RuntimeError(f"a bug with {BEARER} in its message")

    async def forward(request: Request) -> Response:
        assert upstream is not None
        transport = metrics.upstream_transport(httpx.AsyncHTTPTransport())
        timeout = httpx.Timeout(0.3)
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
            try:
                answer = await client.post(
                    f"{upstream}/v1/videos/text2video",
                    json=BODIES["videos/text2video"],
                    headers={"Authorization": f"Bearer {KEY}"},
                )
            except httpx.HTTPError as exc:
                return upstream_error(exc)
        return Response(answer.content, answer.status_code, media_type="application/json")

    return Starlette(
        routes=[
            Route("/v1/videos/text2video", create, methods=["POST"]),
            Route("/kling/v1/videos/text2video", create, methods=["POST"]),
            Route("/v1/videos/text2video/{task_id}", query, methods=["GET"]),
            Route("/v1/images/generations", forward, methods=["POST"]),
            Route(f"/hooks/{SECRET}", boom, methods=["POST"]),
            metrics.route(),
        ],
        exception_handlers=exception_handlers(),
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.db") as opened:
        for team in ("film", "ads"):
            opened.set_budget(team, limit=10_000_000, period="month")
        yield opened


@pytest.fixture
def lines() -> Iterator[list[dict[str, object]]]:
    """The access log's lines, parsed, as the proxy writes them (one JSON object a line)."""
    records: list[dict[str, object]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(json.loads(record.getMessage()))

    handler = Collect()
    accesslog.configure(stream=io.StringIO())
    accesslog.logger.addHandler(handler)
    yield records
    accesslog.logger.removeHandler(handler)
    for old in list(accesslog.logger.handlers):
        accesslog.logger.removeHandler(old)
        old.close()


def samples(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric in Prometheus' text format."""
    found = {}
    for row in text.splitlines():
        if row.startswith(name + "{") or row.startswith(name + " "):
            labels, _, value = row.rpartition(" ")
            found[labels[len(name) :]] = float(value)
    return found


def test_route_labels_are_a_fixed_set_without_ids_or_secrets() -> None:
    assert route_of("/v1/videos/text2video") == "/v1/videos/text2video"
    assert route_of("/kling/v1/videos/text2video") == "/v1/videos/text2video"
    assert route_of("/v1/images/generations/8a7b") == "/v1/images/generations/{task_id}"
    assert route_of(f"/hooks/{SECRET}") == "other"
    assert route_of(f"/_klingcost/callback/hold-1/{SECRET}") == "/_klingcost/callback"
    assert route_of("/v1/videos/nosuch") == "other"
    assert route_of("/v1/videos/text2video/") == "other"
    assert route_of("/" + "a" * 5000) == "other"
    assert route_of("/healthz") == "/healthz"


def test_requests_refusals_and_open_holds_are_scraped(ledger: Ledger) -> None:
    ledger.reserve("film", HoldAmounts(units_milli=3500, pack="video", cost_minor=1))
    ledger.reserve("film", HoldAmounts(units_milli=1000, pack="video", cost_minor=1))
    settled = ledger.reserve("ads", HoldAmounts(units_milli=2000, pack="image", cost_minor=1))
    ledger.void(settled.id, reason="test")
    metrics = Metrics(lambda: ledger.holds("open"))
    with serving(operated(stand_in(metrics), metrics=metrics, access_log=False)) as url:
        body = BODIES["videos/text2video"]
        for _ in range(3):
            assert httpx.post(f"{url}/v1/videos/text2video", json=body).status_code == 200
        over = httpx.post(f"{url}/kling/v1/videos/text2video", json={**body, "duration": "over"})
        assert over.status_code == 429
        for task in ("a1", "b2"):
            assert httpx.get(f"{url}/v1/videos/text2video/{task}").status_code == 200
        scraped = httpx.get(f"{url}/metrics")
    assert scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    requests = samples(text, "klingcost_proxy_requests_total")
    assert requests == {
        '{method="POST",route="/v1/videos/text2video",status="200"}': 3.0,
        '{method="POST",route="/v1/videos/text2video",status="429"}': 1.0,
        '{method="GET",route="/v1/videos/text2video/{task_id}",status="200"}': 2.0,
    }
    assert samples(text, "klingcost_proxy_refusals_total") == {'{reason="budget"}': 1.0}
    # the ads hold was voided: only film's two open holds, 4.5 units between them
    assert samples(text, "klingcost_open_holds") == {'{team="film"}': 2.0}
    assert samples(text, "klingcost_open_hold_units") == {'{team="film"}': 4.5}
    counts = samples(text, "klingcost_proxy_request_seconds_count")
    assert counts['{route="/v1/videos/text2video"}'] == 4.0


def test_open_holds_are_read_at_each_scrape(ledger: Ledger) -> None:
    metrics = Metrics(lambda: ledger.holds("open"))
    with serving(operated(stand_in(metrics), metrics=metrics, access_log=False)) as url:
        assert samples(httpx.get(f"{url}/metrics").text, "klingcost_open_holds") == {}
        hold = ledger.reserve("ads", HoldAmounts(units_milli=2000, pack="image", cost_minor=1))
        assert samples(httpx.get(f"{url}/metrics").text, "klingcost_open_holds") == {
            '{team="ads"}': 1.0
        }
        ledger.void(hold.id, reason="test")
        assert samples(httpx.get(f"{url}/metrics").text, "klingcost_open_holds") == {}


def test_upstream_latency_by_outcome_and_a_timeout_is_kling_shaped(fake: FakeKling) -> None:
    metrics = Metrics()
    with serving(operated(stand_in(metrics, fake.base_url), metrics=metrics)) as url:
        created = httpx.post(f"{url}/v1/images/generations", json={})
        assert created.status_code == 200 and created.json()["data"]["task_id"]
        fake.set_faults({"kind": "slow", "ms": 2000, "path": "text2video"})
        late = httpx.post(f"{url}/v1/images/generations", json={})
        text = httpx.get(f"{url}/metrics").text
    assert late.status_code == 504
    assert late.json()["code"] == 5002 and late.json()["data"] is None
    assert late.json()["request_id"]
    counts = samples(text, "klingcost_proxy_upstream_seconds_count")
    assert counts == {
        '{outcome="2xx",route="/v1/videos/text2video"}': 1.0,
        '{outcome="timeout",route="/v1/videos/text2video"}': 1.0,
    }
    slowest = samples(text, "klingcost_proxy_upstream_seconds_sum")
    assert slowest['{outcome="timeout",route="/v1/videos/text2video"}'] >= 0.3


def test_an_unreachable_upstream_is_503_5001() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    metrics = Metrics()
    with serving(operated(stand_in(metrics, f"http://127.0.0.1:{port}"), metrics=metrics)) as url:
        answer = httpx.post(f"{url}/v1/images/generations", json={})
    assert (answer.status_code, answer.json()["code"]) == (503, 5001)


def test_one_json_line_per_request_without_secrets_or_prompts(
    lines: list[dict[str, object]],
) -> None:
    metrics = Metrics()
    headers = {"Authorization": f"Bearer {BEARER}"}
    body = {**BODIES["videos/text2video"], "prompt": PROMPT}
    with serving(operated(stand_in(metrics), metrics=metrics)) as url:
        httpx.post(f"{url}/v1/videos/text2video?key={BEARER}", json=body, headers=headers)
        httpx.post(f"{url}/v1/videos/text2video", json={**body, "duration": "over"})
        httpx.get(f"{url}/v1/videos/text2video/task-42", headers=headers)
        httpx.post(f"{url}/hooks/{SECRET}", json={})
    created, refused, polled, crashed = lines
    assert {k: v for k, v in created.items() if k not in ("ts", "ms")} == {
        "method": "POST",
        "route": "/v1/videos/text2video",
        "status": 200,
        "team": "film",
        "key_id": "key-7",
        "hold_id": 12,
        "estimate": "3.5",
        "refusal": None,
    }
    assert isinstance(created["ms"], float) and created["ms"] > 0
    assert (refused["status"], refused["refusal"], refused["hold_id"]) == (429, "budget", None)
    assert polled["route"] == "/v1/videos/text2video/{task_id}" and polled["team"] is None
    assert (crashed["route"], crashed["status"]) == ("other", 500)
    everything = json.dumps(lines)
    for secret in (BEARER, SECRET, PROMPT, "task-42"):
        assert secret not in everything


def test_prompts_are_logged_only_when_asked(lines: list[dict[str, object]]) -> None:
    metrics = Metrics()
    body = {**BODIES["videos/text2video"], "prompt": PROMPT, "negative_prompt": "blur"}
    app = operated(stand_in(metrics), metrics=metrics, log_prompts=True)
    with serving(app) as url:
        httpx.post(f"{url}/v1/videos/text2video", json=body)
        httpx.post(f"{url}/v1/videos/text2video", json={**body, "prompt": "x" * 2000})
    assert lines[0]["prompts"] == {"prompt": PROMPT, "negative_prompt": "blur"}
    assert lines[1]["prompts"] == {"prompt": "x" * 500, "negative_prompt": "blur"}


def test_the_body_limit_fits_four_inline_images_and_refuses_in_kling_shape(
    lines: list[dict[str, object]],
) -> None:
    assert IMAGE_BASE64 == 13_981_016  # a 10 MiB image in base64
    assert 4 * IMAGE_BASE64 < MAX_BODY < 5 * IMAGE_BASE64
    metrics = Metrics()
    app = operated(stand_in(metrics), metrics=metrics, limits=proxy_limits(max_body=4096))
    with serving(app) as url:
        declared = httpx.post(f"{url}/v1/videos/text2video", content=b"x" * 5000)

        def chunks() -> Iterator[bytes]:
            for _ in range(10):
                yield b"y" * 1000

        chunked = httpx.post(f"{url}/v1/videos/text2video", content=chunks())
        small = httpx.post(f"{url}/v1/videos/text2video", json=BODIES["videos/text2video"])
        text = httpx.get(f"{url}/metrics").text
    for answer in (declared, chunked):
        assert answer.status_code == 413
        envelope = answer.json()
        assert set(envelope) == {"code", "message", "request_id", "data"}
        assert envelope["code"] == 1201 and "4096 bytes" in envelope["message"]
    assert small.status_code == 200
    assert [line["refusal"] for line in lines[:2]] == ["body_too_large"] * 2
    refusals = samples(text, "klingcost_proxy_refusals_total")
    assert refusals == {'{reason="body_too_large"}': 2.0}


def test_no_route_and_a_crash_are_kling_envelopes_without_tracebacks() -> None:
    metrics = Metrics()
    with serving(operated(stand_in(metrics), metrics=metrics, access_log=False)) as url:
        missing = httpx.get(f"{url}/v2/nothing")
        wrong = httpx.delete(f"{url}/v1/videos/text2video")
        crashed = httpx.post(f"{url}/hooks/{SECRET}", json={})
    assert (missing.status_code, missing.json()["code"]) == (404, 1202)
    assert (wrong.status_code, wrong.json()["code"]) == (405, 1202)
    assert (crashed.status_code, crashed.json()["code"]) == (500, 5000)
    for answer in (missing, wrong, crashed):
        assert set(answer.json()) == {"code", "message", "request_id", "data"}
        assert "Traceback" not in answer.text and BEARER not in answer.text


_WORKER = """
import sys
from klingcost.proxy.accesslog import RequestFacts
from klingcost.proxy.metrics import Metrics, multiprocess_mode
assert multiprocess_mode()
metrics = Metrics()
for _ in range(int(sys.argv[1])):
    metrics.record(RequestFacts(method="POST", route="/v1/videos/text2video", status=200, ms=1.0))
metrics.record(RequestFacts(method="POST", route="/v1/videos/text2video", status=429,
                            refusal="budget"))
sys.stdout.write(Metrics().exposition().decode())
"""


def test_workers_counters_add_up_in_every_scrape(tmp_path: Path) -> None:
    """With ``--workers``, each worker is a process: a scrape that reaches any one of them
    reports what all of them counted (prometheus-client's multiprocess mode)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    outputs = [
        subprocess.run(
            [sys.executable, "-c", _WORKER, str(n)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for n in (5, 7)
    ]
    first, second = (samples(o, "klingcost_proxy_requests_total") for o in outputs)
    label = '{method="POST",route="/v1/videos/text2video",status="200"}'
    assert first[label] == 5.0  # the first worker alone so far
    assert second[label] == 12.0  # the second sees both, the first one exited
    assert samples(outputs[1], "klingcost_proxy_refusals_total") == {'{reason="budget"}': 2.0}


# --- the way to the upstream ------------------------------------------------------------------

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class ForwardProxy(BaseHTTPRequestHandler):
    """Stands in for an operator's forward proxy: records each request line, answers a task."""

    lines: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        ForwardProxy.lines.append(self.requestline)
        body = json.dumps({"code": 0, "message": "SUCCEED", "data": {"task_id": "t1"}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def test_the_upstream_is_reached_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert isinstance(upstream_transport("https://api.openai-hk.com/kling"), HTTP11Transport)
    ForwardProxy.lines = []
    with ThreadingHTTPServer(("127.0.0.1", 0), ForwardProxy) as forward:
        threading.Thread(target=forward.serve_forever, daemon=True).start()
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{forward.server_address[1]}")
        task = "http://kling.invalid/kling/v1/videos/text2video/t1"

        async def query() -> httpx.Response:
            transport = upstream_transport("http://kling.invalid/kling")
            try:
                answer = await transport.handle_async_request(httpx.Request("GET", task))
                await answer.aread()
                return answer
            finally:
                await transport.aclose()

        try:
            answer = asyncio.run(query())
        finally:
            forward.shutdown()
    # Absolute-form, as a client speaks to a forward proxy; the upstream's name never resolved.
    assert ForwardProxy.lines == [f"GET {task} HTTP/1.1"]
    assert answer.json()["data"] == {"task_id": "t1"}
    monkeypatch.setenv("NO_PROXY", "kling.invalid")
    assert isinstance(upstream_transport("http://kling.invalid/kling"), HTTP11Transport)
