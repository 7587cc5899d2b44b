"""The fake Kling API itself, spoken to with bare httpx: shapes, life cycle, faults, callbacks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from fake_fixtures import BODIES, KEY, _fake_session, fake_server  # noqa: F401
from klingcost.cli import main
from klingcost.fake_server import FakeKling

#: The keys of the seed's answers (create; O1 query, the one that shows final_unit_deduction).
SEED_ENVELOPE = {"code", "message", "request_id", "data"}
SEED_CREATED = {"task_id", "task_status", "created_at", "updated_at"}
SEED_DONE = {
    "created_at",
    "final_unit_deduction",
    "task_id",
    "task_info",
    "task_result",
    "task_status",
    "task_status_msg",
    "updated_at",
}
#: What the fake charges for each of BODIES, from its own price table (not klingcost's).
CHARGED = {
    "images/generations": "2",  # kling-v1, 1 image unit x n 2
    "videos/text2video": "7",  # kling-v1-5 pro 10 s
    "videos/image2video": "1",  # kling-v1 std 5 s
    # kling-video-o1 std 5 s: openai-hk bills O1 as pro, as the seed's recorded answer shows ("4").
    "videos/omni-video": "4",
}


@pytest.fixture
def http(fake: FakeKling) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=fake.base_url, headers=headers, timeout=5) as client:
        yield client


def create(http: httpx.Client, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = http.post(f"/v1/{endpoint}", json=body)
    assert answer.status_code == 200, answer.text
    payload: dict[str, Any] = answer.json()
    return payload


def test_create_answer_has_the_seed_shape(http: httpx.Client) -> None:
    payload = create(http, "videos/text2video", {"prompt": "a ship"})
    assert set(payload) == SEED_ENVELOPE
    assert (payload["code"], payload["message"]) == (0, "SUCCEED")
    data = payload["data"]
    assert set(data) == SEED_CREATED
    assert data["task_status"] == "submitted" and data["task_id"].isdigit()
    assert data["created_at"] == data["updated_at"] > 1_700_000_000_000


@pytest.mark.parametrize("endpoint", list(BODIES))
def test_query_answer_has_the_seed_shape(
    http: httpx.Client, fake: FakeKling, endpoint: str
) -> None:
    task_id = create(http, endpoint, BODIES[endpoint])["data"]["task_id"]
    payload = http.get(f"/v1/{endpoint}/{task_id}").json()
    assert set(payload) == SEED_ENVELOPE
    data = payload["data"]
    assert set(data) == SEED_DONE
    assert data["task_status"] == "succeed" and data["task_info"] == {}
    assert isinstance(data["final_unit_deduction"], str)
    assert data["final_unit_deduction"] == CHARGED[endpoint]
    result = data["task_result"]
    if endpoint == "images/generations":
        assert result["videos"] is None
        assert [set(i) for i in result["images"]] == [{"index", "url"}] * 2
    else:
        [video] = result["videos"]
        assert set(video) == {"id", "url", "duration"} and isinstance(video["duration"], str)
        assert result.get("images") is None
        assert ("images" in result) == (endpoint != "videos/omni-video")  # as the seed shows


def test_life_cycle(http: httpx.Client, fake: FakeKling) -> None:
    fake.configure(processing_after=0.2, done_after=0.4)
    task_id = create(http, "videos/text2video", {"prompt": "x"})["data"]["task_id"]
    statuses: list[str] = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        data = http.get(f"/v1/videos/text2video/{task_id}").json()["data"]
        if not statuses or statuses[-1] != data["task_status"]:
            statuses.append(data["task_status"])
            assert ("final_unit_deduction" in data) == (data["task_status"] == "succeed")
            assert ("task_result" in data) == (data["task_status"] == "succeed")
        if data["task_status"] == "succeed":
            break
        time.sleep(0.02)
    assert statuses == ["submitted", "processing", "succeed"]
    assert data["updated_at"] - data["created_at"] == 400


def test_ledger_charges_succeeded_tasks_only(http: httpx.Client, fake: FakeKling) -> None:
    create(http, "videos/text2video", BODIES["videos/text2video"])  # 7 units
    fake.set_faults({"kind": "fail_task"})
    create(http, "videos/text2video", BODIES["videos/text2video"])
    ledger = http.get("/_fake/ledger").json()
    assert ledger["total_units"] == "7"
    assert sorted(row["status"] for row in ledger["tasks"]) == ["failed", "succeed"]
    assert fake.charged() == Fraction(7)


@pytest.mark.parametrize("kind", ["fail_task", "deduction", "timeout_after_accept"])
def test_a_create_fault_waits_for_a_create(http: httpx.Client, fake: FakeKling, kind: str) -> None:
    first = create(http, "videos/text2video", BODIES["videos/text2video"])["data"]["task_id"]
    fake.set_faults({"kind": kind, "value": "99", "ms": 1})
    http.get(f"/v1/videos/text2video/{first}")  # a query does not use it up
    http.get("/v1/videos/text2video", params={"pageNum": 1, "pageSize": 5})  # nor a list
    assert [r["fault"] for r in fake.requests("GET")] == [None, None]
    http.post("/v1/videos/text2video", json=BODIES["videos/text2video"])
    assert fake.requests("POST")[-1]["fault"] == kind


def test_drift_multiplies_the_units_of_one_model(http: httpx.Client, fake: FakeKling) -> None:
    fake.configure(drift={"kling-v1-5": "1.1"})
    body = BODIES["videos/text2video"]
    drifted = create(http, "videos/text2video", body)["data"]["task_id"]
    plain = create(http, "videos/text2video", {"prompt": "x"})["data"]["task_id"]  # kling-v1
    get = http.get
    assert get(f"/v1/videos/text2video/{drifted}").json()["data"]["final_unit_deduction"] == "7.7"
    assert get(f"/v1/videos/text2video/{plain}").json()["data"]["final_unit_deduction"] == "1"
    assert fake.charged() == Fraction("8.7")


def test_auth(fake: FakeKling) -> None:
    url = f"{fake.base_url}/v1/videos/text2video"
    answer = httpx.post(url, json={"prompt": "x"})
    assert (answer.status_code, answer.json()["code"]) == (401, 1001)
    answer = httpx.post(url, json={"prompt": "x"}, headers={"Authorization": "Bearer hk-wrong"})
    assert (answer.status_code, answer.json()["code"]) == (401, 1002)
    fake.configure(api_key=None)  # any key will do
    answer = httpx.post(url, json={"prompt": "x"}, headers={"Authorization": "Bearer hk-any"})
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/videos/text2video", b'{"prompt": "x", "duration": "7"}', 400, 1201),
        ("/v1/videos/text2video", b"{not json", 400, 1200),
        ("/v1/videos/text2video", b"[1, 2]", 400, 1200),
        ("/v1/videos/lip-sync", b'{"prompt": "x"}', 404, 1202),
    ],
)
def test_refusals(http: httpx.Client, path: str, body: bytes, status: int, code: int) -> None:
    answer = http.post(path, content=body, headers={"content-type": "application/json"})
    assert (answer.status_code, answer.json()["code"]) == (status, code)
    assert answer.json()["message"]


def test_validation_message_names_the_field(http: httpx.Client) -> None:
    answer = http.post("/v1/videos/text2video", json={"prompt": "x", "duration": "7"})
    assert "duration" in answer.json()["message"]


def test_queries_by_external_id_and_refuses_other_endpoints(http: httpx.Client) -> None:
    body = {"prompt": "x", "external_task_id": "job-7"}
    data = create(http, "videos/text2video", body)["data"]
    assert data["task_info"] == {"external_task_id": "job-7"}
    found = http.get("/v1/videos/text2video/job-7").json()["data"]
    assert found["task_id"] == data["task_id"]
    assert found["task_info"] == {"external_task_id": "job-7"}
    answer = http.get(f"/v1/videos/image2video/{data['task_id']}")
    assert (answer.status_code, answer.json()["code"]) == (404, 1203)


def test_list_query(http: httpx.Client) -> None:
    ids = [
        create(http, "videos/text2video", {"prompt": str(i)})["data"]["task_id"] for i in range(3)
    ]
    listed = http.get("/v1/videos/text2video", params={"pageNum": 1, "pageSize": 2}).json()["data"]
    assert [t["task_id"] for t in listed] == ids[::-1][:2]
    answer = http.get("/v1/videos/text2video", params={"pageSize": 501})
    assert (answer.status_code, answer.json()["code"]) == (400, 1201)


# --- fault control ------------------------------------------------------------------------


def test_fault_queue_over_http(http: httpx.Client, fake: FakeKling) -> None:
    faults = [
        {"kind": "rate_limit", "method": "POST", "path": "image2video", "times": 2},
        {"kind": "unavailable"},
    ]
    assert http.post("/_fake/faults", json=faults).status_code == 200
    assert [f["kind"] for f in http.get("/_fake/faults").json()] == ["rate_limit", "unavailable"]
    # The first request matches only the second fault; image2video posts then meet the first.
    assert http.get("/v1/videos/text2video/1").json()["code"] == 5001
    assert http.post("/v1/videos/image2video", json={}).json()["code"] == 1302
    assert http.post("/v1/videos/image2video", json={}).json()["code"] == 1302
    assert http.get("/_fake/faults").json() == []
    assert [r["fault"] for r in http.get("/_fake/requests").json()] == [
        "unavailable",
        "rate_limit",
        "rate_limit",
    ]
    http.post("/_fake/faults", json={"kind": "drop"})
    assert http.delete("/_fake/faults").json() == []


def test_bad_faults_are_refused(http: httpx.Client, fake: FakeKling) -> None:
    answer = http.post("/_fake/faults", json={"kind": "meteor"})
    assert answer.status_code == 400 and "meteor" in answer.json()["error"]
    assert http.post("/_fake/faults", json={"kind": "slow", "speed": 3}).status_code == 400
    with pytest.raises(ValueError, match="unknown fault"):
        fake.set_faults({"kind": "meteor"})


def test_config_and_reset_over_http(http: httpx.Client, fake: FakeKling) -> None:
    settings = http.post("/_fake/config", json={"done_after": 2, "drift": {"kling-v1": "3/2"}})
    assert settings.json()["drift"] == {"kling-v1": "1.5"}
    assert http.post("/_fake/config", json={"colour": "red"}).status_code == 400
    create(http, "videos/text2video", {"prompt": "x"})
    http.post("/_fake/reset")
    assert http.get("/_fake/ledger").json() == {"total_units": "0", "tasks": []}
    assert http.get("/_fake/requests").json() == []


def test_drop_closes_without_answering(http: httpx.Client, fake: FakeKling) -> None:
    fake.set_faults({"kind": "drop"})
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        http.post("/v1/videos/text2video", json={"prompt": "x"})
    assert fake.ledger()["tasks"] == []
    assert create(http, "videos/text2video", {"prompt": "x"})["code"] == 0  # still serving


def test_timeout_after_accept_creates_the_task(fake: FakeKling) -> None:
    fake.set_faults({"kind": "timeout_after_accept", "ms": 3000})
    headers = {"Authorization": f"Bearer {KEY}"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{fake.base_url}/v1/videos/text2video",
            json={"prompt": "x"},
            headers=headers,
            timeout=0.1,
        )
    assert len(fake.ledger()["tasks"]) == 1


def test_malformed_and_slow(http: httpx.Client, fake: FakeKling) -> None:
    fake.set_faults({"kind": "malformed"}, {"kind": "slow", "ms": 150})
    answer = http.post("/v1/videos/text2video", json={"prompt": "x"})
    with pytest.raises(json.JSONDecodeError):
        answer.json()
    started = time.monotonic()
    assert create(http, "videos/text2video", {"prompt": "x"})["code"] == 0
    assert time.monotonic() - started >= 0.15


# --- callbacks ----------------------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.got = threading.Condition()
        super().__init__(("127.0.0.1", 0), _Hook)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        with self.server.got:
            self.server.paths.append(self.path)
            self.server.bodies.append(body)
            self.server.got.notify_all()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def eventually(check: Callable[[], bool], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_notify_hook_gets_each_state(
    http: httpx.Client, fake: FakeKling, receiver: Receiver
) -> None:
    fake.configure(processing_after=0.05, done_after=0.1)
    body = {**BODIES["videos/omni-video"], "notify_hook": receiver.url}
    task_id = create(http, "videos/omni-video", body)["data"]["task_id"]
    with receiver.got:
        assert receiver.got.wait_for(lambda: len(receiver.bodies) == 2, timeout=5)
    processing, done = receiver.bodies
    assert (processing["task_id"], processing["task_status"]) == (task_id, "processing")
    assert "final_unit_deduction" not in processing
    assert done["task_status"] == "succeed"
    assert set(done) == SEED_DONE
    assert done["final_unit_deduction"] == CHARGED["videos/omni-video"]
    assert eventually(lambda: len(fake.hooks()) == 2)
    assert [h["status"] for h in fake.hooks()] == [200, 200]


def test_callback_url_and_notify_hook_both_get_callbacks(
    http: httpx.Client, fake: FakeKling, receiver: Receiver
) -> None:
    fake.configure(processing_after=0.05, done_after=0.1)
    kling = {"prompt": "x", "callback_url": f"{receiver.url}/kling"}
    both = {"prompt": "y", "callback_url": f"{receiver.url}/a", "notify_hook": f"{receiver.url}/b"}
    same = {"prompt": "z", "callback_url": receiver.url, "notify_hook": receiver.url}
    ids = [
        create(http, "videos/text2video", body)["data"]["task_id"] for body in (kling, both, same)
    ]
    with receiver.got:
        assert receiver.got.wait_for(lambda: len(receiver.bodies) == 8, timeout=5)
    got = sorted(
        (b["task_id"], path, b["task_status"])
        for b, path in zip(receiver.bodies, receiver.paths, strict=True)
    )
    assert got == sorted(
        [(ids[0], "/hook/kling", s) for s in ("processing", "succeed")]
        + [(ids[1], p, s) for p in ("/hook/a", "/hook/b") for s in ("processing", "succeed")]
        + [(ids[2], "/hook", s) for s in ("processing", "succeed")]  # one URL: called once
    )
    assert eventually(lambda: len(fake.hooks()) == 8)
    fields = sorted(h["field"] for h in fake.hooks() if h["task_id"] == ids[1])
    assert fields == ["callback_url", "callback_url", "notify_hook", "notify_hook"]


def test_unreachable_hook_is_recorded_not_fatal(http: httpx.Client, fake: FakeKling) -> None:
    body = {"prompt": "x", "notify_hook": "http://127.0.0.1:9/nothing-here"}
    create(http, "videos/text2video", body)
    assert eventually(lambda: len(fake.hooks()) == 2)
    assert all("error" in hook for hook in fake.hooks())


# --- the helper and the command -----------------------------------------------------------


def test_fake_kling_starts_and_stops_on_its_own_port() -> None:
    with FakeKling(done_after=0) as one, FakeKling() as two:
        assert one.base_url != two.base_url
        assert httpx.get(f"{one.base_url}/_fake/ledger").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{one.base_url}/_fake/ledger")


def test_the_old_import_path_still_works() -> None:
    import klingcost.fake_server
    import klingcost.testing

    assert klingcost.fake_server.FakeKling is klingcost.testing.FakeKling is FakeKling
    assert klingcost.fake_server.FAULTS == klingcost.testing.FAULTS


def test_cli_help_and_bad_drift() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["fake-server", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--key", "--delay", "--drift"):
        assert option in result.output
    result = runner.invoke(main, ["fake-server", "--drift", "kling-v1"])
    assert result.exit_code == 2 and "MODEL=FACTOR" in result.output
