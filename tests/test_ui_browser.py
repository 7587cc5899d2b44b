"""The live page and the HTML report in a real headless Chromium (Debian's ``chromium``).

Chromium is driven from its command line: ``--dump-dom`` gives the page as its scripts left it
after ``--virtual-time-budget`` ms (the page's refresh runs more than once in that time), and
``--enable-logging=stderr`` prints every console message (an error, a warning, an uncaught
exception, a resource that failed to load) as a ``CONSOLE`` line: the page logs nothing on
its own, so any such line fails the test. Screenshots (a desktop and a phone width) are
written into the test's tmp directory and their paths printed (``pytest -s`` shows them);
pytest removes old tmp directories, so set ``KLINGCOST_SCREENSHOTS=DIR`` to keep a copy.

Skipped where chromium is not installed, except under CI (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from klingcost.ledger import Ledger
from klingcost.reports import spending_report
from klingcost.reports.html import html_report
from klingcost.ui import ui_routes
from ui_fixtures import record_refusal, serving, spend, ui_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip(
        "no chromium here (apt-get install chromium; .ci/run does)", allow_module_level=True
    )

CONSOLE = re.compile(r"CONSOLE[(:].*")


def chromium(tmp_path: Path, url: str, *flags: str, budget: int = 7000) -> tuple[str, list[str]]:
    """Load ``url``; its DOM (or what a flag made instead) and the console lines it logged."""
    assert CHROMIUM is not None, "chromium is not installed (CI must install it: .ci/run)"
    profile = tmp_path / "profile"
    command = [
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium refuses its sandbox
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        f"--virtual-time-budget={budget}",
        *flags,
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, CONSOLE.findall(result.stderr)


class Dom(HTMLParser):
    """The elements of a dumped DOM with their classes, and the text inside marked ones."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: dict[str, list[str]] = {}
        self._open: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.elements.append((tag, found))
        key = found.get("id") or next(
            (c for c in found.get("class", "").split() if c in ("forecast", "panel-title")), None
        )
        if tag not in ("br", "meta", "link", "img", "input"):
            self._open.append((tag, key))
            if key:
                self.text.setdefault(key, []).append("")

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, key in self._open:
            if key:
                self.text[key][-1] += data

    def having(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and cls in a.get("class", "").split()]


def parse(dom: str) -> Dom:
    parser = Dom()
    parser.feed(dom)
    parser.close()
    return parser


def keep(shot: Path, label: str) -> None:
    """Print where the screenshot is, and copy it to $KLINGCOST_SCREENSHOTS if set."""
    print(f"screenshot ({label}): {shot}")
    folder = os.environ.get("KLINGCOST_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        print(f"  kept as {shutil.copy(shot, Path(folder) / shot.name)}")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def phone_frame(folder: Path, url: str, width: int) -> Iterator[str]:
    """A page on 127.0.0.1 that shows ``url`` in an iframe ``width`` px wide."""
    folder.mkdir()
    (folder / "phone.html").write_text(
        f'<!DOCTYPE html><body style="margin:0"><iframe src="{url}"'
        f' style="width:{width}px;height:2400px;border:0"></iframe></body>',
        encoding="utf-8",
    )
    handler = partial(_Quiet, directory=str(folder))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/phone.html"
        finally:
            server.shutdown()
            thread.join(10)


@pytest.fixture(scope="module")
def ledger_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("browser") / "ledger.db"
    spend(path)
    return path


def test_the_live_page_in_chromium(ledger_path: Path, tmp_path: Path) -> None:
    with ui_server(ledger_path, "--refresh", "2") as base:
        dom, console = chromium(tmp_path, f"{base}/ui", "--dump-dom")
        shots = {"desktop": tmp_path / "ui-desktop.png", "phone": tmp_path / "ui-phone.png"}
        _, more = chromium(
            tmp_path, f"{base}/ui", f"--screenshot={shots['desktop']}", "--window-size=1280,1700"
        )
        # A headless window is at least 500 px wide: a phone's 390 px is an iframe that wide,
        # in a page served over http too (from a file, the frame's requests stall).
        with phone_frame(tmp_path / "frame", f"{base}/ui", 390) as frame:
            _, most = chromium(
                tmp_path, frame, f"--screenshot={shots['phone']}", "--window-size=390,2400"
            )
        console += more + most
    assert console == [], f"console messages: {console}"
    page = parse(dom)
    # each budget, with a forecast
    cards = {a["data-team"]: a for a in page.having("article", "budget")}
    assert set(cards) == {"studio", "ads"}
    forecasts = page.text["forecast"]
    assert len(forecasts) == 2 and all(re.search(r"runs out \d{4}-\d\d-\d\d", f) for f in forecasts)
    # a chart per budget, drawn by uPlot (its root element and canvas are in the DOM)
    panels = {a["data-team"] for a in page.having("figure", "panel")}
    assert panels == {"studio", "ads"}
    assert len(page.having("div", "uplot")) == 2
    assert len([t for t, _ in page.elements if t == "canvas"]) == 2
    assert len(page.having("div", "plot")) == 2
    titles = page.text["panel-title"]
    assert any(t.startswith("studio: ") and "of 200,000 credits" in t for t in titles)
    # the other sections are filled from data.json
    assert page.text["status"][0].startswith("Ledger ")
    assert "kling-v1-6 std 5s" in page.text["tasks-body"][0]
    assert "needs 60,000 credits" in page.text["refusals-body"][0]
    assert "kling-v1 std 5s" in page.text["drift-body"][0]
    for name, shot in shots.items():
        width, height = png_size(shot)
        assert (width, shot.stat().st_size > 20_000) == (
            (1280 if name == "desktop" else 390),
            True,
        ), name
        keep(shot, f"{name}, {width}x{height}")


def test_the_html_report_in_chromium(ledger_path: Path, tmp_path: Path) -> None:
    with Ledger.open(ledger_path, read_only=True) as ledger:
        page = html_report(ledger, spending_report(ledger, by="team"))
    report = tmp_path / "report.html"
    report.write_text(page, encoding="utf-8")
    dom, console = chromium(tmp_path, report.as_uri(), "--dump-dom", budget=3000)
    shot = tmp_path / "report.png"
    _, more = chromium(
        tmp_path, report.as_uri(), f"--screenshot={shot}", "--window-size=1100,1800", budget=3000
    )
    assert console + more == [], f"console messages: {console + more}"
    drawn = parse(dom)
    assert {a["data-team"] for a in drawn.having("figure", "panel")} == {"studio", "ads"}
    assert len(drawn.having("div", "uplot")) == 2  # the inline uPlot drew both, offline
    keep(shot, "report")


def test_the_page_refreshes_in_place(ledger_path: Path, tmp_path: Path) -> None:
    """The page reads data.json again every --refresh seconds and shows what changed: here a
    refusal recorded after its first read appears, without a reload."""
    reads = []
    with Ledger.open(ledger_path) as ledger:

        def ledger_for(request: Request) -> Ledger:
            reads.append(request.url.path)
            if len(reads) == 2:
                record_refusal(ledger, "studio", needed=250_000, left=182_000)
            return ledger

        app = Starlette(routes=ui_routes(ledger_for, refresh=1))
        with serving(app) as base:
            dom, console = chromium(tmp_path, f"{base}/ui", "--dump-dom", budget=5000)
    assert console == []
    assert len(reads) >= 3 and set(reads) == {"/ui/data.json"}
    refusals = parse(dom).text["refusals-body"][0]
    assert "needs 250,000 credits" in refusals and "needs 60,000 credits" in refusals
