"""Real third-party Kling clients, from the public registries, through the fake Kling API.

* PyPI ``klingai-api`` (its ``api.KlingAiAPI``): text2video and image2video only (it has no image
  or omni-video endpoint; the npm client covers those). It declares Python >= 3.14 and runs
  unchanged on 3.11, installed with ``--ignore-requires-python`` into a virtualenv of its own.
* npm ``kling-api`` (its ``KlingAPI``): text2video, image2video, images and omni-video. It refuses
  a base URL that is not https, so the fake serves TLS and Node trusts its certificate through
  ``NODE_EXTRA_CA_CERTS``; it downloads each result itself, so the fake serves real files.

Both sign Kling JWTs (HS256, iss = access key): the fake runs with ``--auth jwt`` and the Kling
profile. Each client gets one setting, its base URL; its code is used as published. The versions
are pinned in ``.ci/real-clients`` and installed by ``.ci/run`` into ``.ci/clients/`` (or the
folder ``KLINGCOST_REALCLIENTS`` names). Without them the tests skip, locally; in CI they fail.

For each job: the client ran it to ``succeed``; and what it sent (the body recorded at
``/_fake/requests``), priced by ``klingcost.estimate``, is what the fake charged from its own
table. Run alone with ``pytest -m realclients``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from klingcost.pricing import estimate
from klingcost.testing import FakeKling
from klingcost.testing.media import png
from media_checks import mp4_boxes, png_size

pytestmark = [pytest.mark.slow, pytest.mark.realclients]

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = Path(os.environ.get("KLINGCOST_REALCLIENTS") or ROOT / ".ci/clients")
PYTHON = CLIENTS / "venv/bin/python"
NODE_PACKAGE = CLIENTS / "node/node_modules/kling-api"
DRIVERS = Path(__file__).parent / "realclients"
ACCESS = "ak-realclients-4e5f6a"
SECRET = "sk-realclients-0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class Job:
    client: str  # "klingai-api" or "kling-api"
    id: str
    endpoint: str
    call: dict[str, Any]  # what the driver does: {"method", "args"} or {"kind", "params"}
    units: str  # what the fake must charge, from the price list by hand


def jobs(base: str, hook: str) -> list[Job]:
    image_url = f"{base}/_fake/files/sample.png"
    inline = base64.b64encode(png()).decode()  # a 300x300 PNG, as a client sends a local file
    t2v, i2v = "videos/text2video", "videos/image2video"
    return [
        Job("klingai-api", "py-t2v", t2v, {"method": "text2video", "args": {
            "prompt": "a lighthouse at dusk", "model_name": "kling-v1", "mode": "std",
            "duration": "5", "camera_control": {"type": "simple", "config": {"zoom": 5}},
            "callback_url": hook, "external_task_id": "py-t2v-1"}}, "1"),
        Job("klingai-api", "py-i2v", i2v, {"method": "image2video", "args": {
            "image": inline, "image_tail": image_url, "model_name": "kling-v1-6",
            "mode": "pro", "duration": "10", "prompt": "the sea rises"}}, "7"),
        Job("klingai-api", "py-t2v-v3", t2v, {"method": "text2video", "args": {
            "prompt": "a lighthouse at dusk", "model_name": "kling-v3", "mode": "pro",
            "duration": "15"}}, "12"),
        Job("kling-api", "node-t2v", t2v, {"kind": "text2video", "params": {
            "prompt": "rain on a tin roof", "model_name": "kling-v2-6", "mode": "pro",
            "duration": "10", "sound": "on"}}, "10"),
        Job("kling-api", "node-i2v", i2v, {"kind": "image2video", "params": {
            "image": image_url, "model_name": "kling-v2-5-turbo", "mode": "pro",
            "duration": "5", "negative_prompt": "blur"}}, "2.5"),
        Job("kling-api", "node-image", "images/generations", {"kind": "image", "params": {
            "prompt": "a red fox", "model_name": "kling-v1-5", "image": image_url,
            "image_reference": "subject", "n": 2}}, "16"),
        Job("kling-api", "node-image-wide", "images/generations", {"kind": "image", "params": {
            "prompt": "a red fox", "model_name": "kling-v2-1", "aspect_ratio": "21:9",
            "resolution": "2k"}}, "4"),
        Job("kling-api", "node-omni", "videos/omni-video", {"kind": "omni", "params": {
            "prompt": "the fox <<<image_1>>> runs", "duration": "10",
            "image_list": [{"image_url": image_url, "type": "first_frame"}]}}, "8"),
        Job("kling-api", "node-omni-edit", "videos/omni-video", {"kind": "omni", "params": {
            "prompt": "make <<<video_1>>> snowy",
            "video_list": [{"video_url": f"{base}/_fake/files/input.mp4",
                            "refer_type": "base"}]}}, "12"),
    ]  # fmt: skip


def _need(path: Path, what: str) -> None:
    if path.exists():
        return
    reason = f"{what} is not installed at {path}: run .ci/run (or its real-clients lines)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set: the real-client tests must run, yet {reason}")
    pytest.skip(reason)


def _loopback_name() -> str | None:
    """This machine's host name, if it resolves to loopback. The npm client refuses to download
    from 127.x or localhost (its SSRF guard matches those names), not from a host name."""
    name = socket.gethostname()
    try:
        resolved = socket.gethostbyname(name)
    except OSError:
        return None
    return name if resolved.startswith("127.") and name.lower() != "localhost" else None


class _Hooks(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _Hook)


class _Hook(BaseHTTPRequestHandler):
    server: _Hooks

    def do_POST(self) -> None:
        self.server.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Run:
    fake: FakeKling
    jobs: dict[str, Job]
    results: dict[str, dict[str, Any]]  # job id -> the driver's line
    bodies: dict[str, Any]  # job id -> the body recorded at /_fake/requests
    records: list[dict[str, Any]]
    hooks: _Hooks
    loopback_name: str | None


def _drive(command: list[str], env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, (command[:2], done.stdout[-3000:], done.stderr[-3000:])
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    _need(PYTHON, "the PyPI client klingai-api")
    _need(NODE_PACKAGE, "the npm client kling-api")
    work = tmp_path_factory.mktemp("realclients")
    hooks = _Hooks()
    hook_thread = threading.Thread(target=hooks.serve_forever, args=(0.01,), daemon=True)
    hook_thread.start()
    fake = FakeKling(
        auth="jwt",
        access_key=ACCESS,
        secret_key=SECRET,
        profile="kling",
        tls=True,
        processing_after=0.05,
        done_after=0.25,
    )
    try:
        with fake:
            name = _loopback_name()
            base = fake.base_url.replace("127.0.0.1", name) if name else fake.base_url
            all_jobs = jobs(base, f"http://127.0.0.1:{hooks.server_address[1]}/hook")
            env = {
                key: value
                for key, value in os.environ.items()
                if not key.startswith(("KLING_", "ACCESS_TOKEN", "SECRET_TOKEN"))
            }
            env |= {
                "HOME": str(work),  # no ~/.kling/.env of the user's
                "NODE_EXTRA_CA_CERTS": str(fake.cert),
                "REQUESTS_CA_BUNDLE": str(fake.cert),
                "NODE_ENV": "test",
            }
            keys = {"base_url": base, "access_key": ACCESS, "secret_key": SECRET}
            py_jobs = [j for j in all_jobs if j.client == "klingai-api"]
            node_jobs = [j for j in all_jobs if j.client == "kling-api"]
            py_config = {**keys, "jobs": [{"id": j.id, **j.call} for j in py_jobs]}
            lines = _drive(
                [str(PYTHON), str(DRIVERS / "drive_klingai_api.py"), json.dumps(py_config)],
                env,
                work,
            )
            node_config = {
                **keys,
                "package_dir": str(NODE_PACKAGE),
                "out_dir": str(work / "saved"),
                "jobs": [{"id": j.id, **j.call} for j in node_jobs],
            }
            lines += _drive(
                ["node", str(DRIVERS / "drive_kling_api.mjs"), json.dumps(node_config)],
                env,
                work,
            )
            trust = ssl.create_default_context(cafile=str(fake.cert))
            records = httpx.get(f"{fake.base_url}/_fake/requests", verify=trust).json()
            creates = [r for r in records if r["method"] == "POST"]
            assert len(creates) == len(all_jobs), [r["path"] for r in creates]
            yield Run(
                fake=fake,
                jobs={j.id: j for j in all_jobs},
                results={line["id"]: line for line in lines},
                bodies={j.id: r["body"] for j, r in zip(all_jobs, creates, strict=True)},
                records=records,
                hooks=hooks,
                loopback_name=name,
            )
    finally:
        hooks.shutdown()
        hooks.server_close()
        hook_thread.join()


def _ids() -> list[str]:
    return [job.id for job in jobs("https://x", "http://x")]


JOB_IDS = [job.id for job in jobs("https://x", "http://x")]


def test_the_pinned_versions_are_installed() -> None:
    _need(PYTHON, "the PyPI client klingai-api")
    _need(NODE_PACKAGE, "the npm client kling-api")
    pins = {}
    for line in (ROOT / ".ci/real-clients").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            _, name, version = line.split()
            pins[name] = version
    manifest = json.loads((NODE_PACKAGE / "package.json").read_text())
    assert manifest["version"] == pins["kling-api"]
    site = next(PYTHON.parent.parent.glob("lib/python*/site-packages"))
    assert (site / f"klingai_api-{pins['klingai-api']}.dist-info").is_dir()


@pytest.mark.parametrize("job_id", JOB_IDS)
def test_the_client_runs_the_job_to_completion(run: Run, job_id: str) -> None:
    job, line = run.jobs[job_id], run.results[job_id]
    assert "error" not in line, line["error"]
    task = line["task"]
    assert task["task_status"] == "succeed" and task["task_id"] == line["task_id"]
    assert task["final_unit_deduction"] == job.units
    if job.client == "klingai-api":
        # the client polls until the end; how many states it sees on the way depends on timing
        assert line["statuses"][-1] == "succeed"
        assert set(line["statuses"]) <= {"submitted", "processing", "succeed"}
        return
    # kling-api downloads each result from the URL the fake gave, over TLS, and saves it.
    if run.loopback_name is None:
        pytest.skip("no host name resolves to loopback here: kling-api refuses 127.x downloads")
    saved = [Path(p) for p in line["saved"]]
    results = task["task_result"]
    assert len(saved) == len(results.get("images") or results.get("videos"))
    for path in saved:
        if path.suffix == ".png":
            assert png_size(path.read_bytes()) == (300, 300)
        else:
            moov = mp4_boxes(mp4_boxes(path.read_bytes())[b"moov"])
            scale, duration = struct.unpack(">II", moov[b"mvhd"][12:20])
            assert [str(duration // scale)] == [v["duration"] for v in results["videos"]]


@pytest.mark.parametrize("job_id", _ids())
def test_klingcost_prices_what_the_client_sent(run: Run, job_id: str) -> None:
    job, body = run.jobs[job_id], run.bodies[job_id]
    charged = next(
        t for t in run.fake.ledger()["tasks"] if t["task_id"] == run.results[job_id]["task_id"]
    )
    priced = estimate(job.endpoint, body, provider="kling-global")
    assert priced.units == Fraction(charged["units"]) == Fraction(job.units), body


def test_the_clients_sign_kling_jwts(run: Run) -> None:
    assert {r["auth"] for r in run.records} == {"jwt"}
    # klingai-api checks its credentials on /account/costs when its session opens
    assert run.records[0]["path"] == "/account/costs"


def test_callback_url_from_a_client_is_called(run: Run) -> None:
    task_id = run.results["py-t2v"]["task_id"]
    delivered = [h for h in run.fake.hooks() if h["task_id"] == task_id]
    assert [(h["field"], h["task_status"], h.get("status")) for h in delivered] == [
        ("callback_url", "processing", 200),
        ("callback_url", "succeed", 200),
    ]
    final = [b for b in run.hooks.bodies if b["task_id"] == task_id][-1]
    assert final["task_info"] == {"external_task_id": "py-t2v-1"}
    assert final["final_unit_deduction"] == "1"
