"""The live page's data and routes: `klingcost ui` on a real ledger, read over HTTP on
loopback; the routes mounted under a prefix in another app; the command's errors."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.routing import Mount

from klingcost.burndown import BudgetSeries, axis, nice_step, projection
from klingcost.cli import main
from klingcost.ledger import Ledger
from klingcost.ui import STATIC, asset, page_data, ui_routes
from ui_fixtures import serving, spend, ui_server


@pytest.fixture(scope="module")
def ledger_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ui") / "ledger.db"
    spend(path)
    return path


@pytest.fixture(scope="module")
def base_url(ledger_path: Path) -> Iterator[str]:
    with ui_server(ledger_path) as url:
        yield url


def test_data_json_has_every_section_with_exact_amounts(base_url: str, ledger_path: Path) -> None:
    response = httpx.get(f"{base_url}/ui/data.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    data = response.json()
    budgets = {b["team"]: b for b in data["budgets"]}
    assert set(budgets) == {"studio", "ads"}
    with Ledger.open(ledger_path, read_only=True) as ledger:
        for team, b in budgets.items():
            status = ledger.budget_status(team)
            # amounts are exact decimal strings, as the ledger has them
            assert (b["limit"], b["used"], b["held"], b["available"]) == (
                str(status.limit),
                str(status.used),
                str(status.held),
                str(status.available),
            )
            forecast = ledger.forecast(team)
            assert forecast.runs_out_on is not None  # both budgets run out at this rate
            assert b["forecast"]["rate_per_day"] == forecast.rate_text
            assert b["forecast"]["runs_out_on"] == forecast.runs_out_on.isoformat()
            assert "least-squares" in b["forecast"]["method"]
    assert budgets["ads"]["parent"] == "studio" and budgets["ads"]["held"] == "1500"
    charts = {c["team"]: c for c in data["charts"]}
    assert set(charts) == {"studio", "ads"}
    today = datetime.now(UTC).date().isoformat()
    studio = charts["studio"]
    assert studio["days"][-1] == today and studio["values"][-1] == budgets["studio"]["used"]
    assert studio["axis"]["labels"] == ["0", "50,000", "100,000", "150,000", "200,000"]
    assert studio["projection"][0] == [today, budgets["studio"]["used"]]
    # tasks: newest first, estimate against charge
    tasks = data["tasks"]
    # the latest 20 (the fixture has two a day for ten days)
    assert len(tasks) == 20 and tasks[0]["state"] == "held" and tasks[0]["charged"] is None
    assert [t["hold_id"] for t in tasks] == sorted((t["hold_id"] for t in tasks), reverse=True)
    over = [t for t in tasks if t["variance"] not in (None, "0")]
    assert over and all(Fraction(t["charged"]) > Fraction(t["estimated"]) for t in over)
    [refusal] = data["refusals"]
    assert refusal["team"] == "ads" and "needs 60,000 credits, 41,000 left" in refusal["what"]
    drift = {c["label"]: c for c in data["drift"]["classes"]}
    assert drift["videos/text2video kling-v1 std 5s"]["drift"] == "3.33%"
    assert drift["videos/text2video kling-v1 std 5s"]["beyond_tolerance"] is True


def test_the_page_is_for_phones_and_fetches_only_from_its_server(base_url: str) -> None:
    response = httpx.get(f"{base_url}/ui")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert 'data-src="/ui/data.json"' in page and 'data-refresh="5"' in page
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", page)  # no CDN, no other host
    for name in re.findall(r'(?:src|href)="/ui/static/([^"]+)"', page):
        served = httpx.get(f"{base_url}/ui/static/{name}")
        assert served.status_code == 200 and served.text == asset(name), name
    assert len(re.findall(r'(?:src|href)="/ui/static/', page)) == 6
    vendor = httpx.get(f"{base_url}/ui/static/vendor/uPlot.iife.min.js")
    assert vendor.headers["content-type"].startswith("text/javascript")
    assert vendor.text.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    assert httpx.get(f"{base_url}/ui/static/vendor/uPlot.LICENSE").text.startswith(
        "The MIT License"
    )
    # only the listed files: no path into the package
    for name in ("../app.py", "..%2Fapp.py", "vendor/README.md", "nothing.js"):
        assert httpx.get(f"{base_url}/ui/static/{name}").status_code == 404, name
    home = httpx.get(f"{base_url}/", follow_redirects=False)
    assert home.status_code in (302, 307) and home.headers["location"] == "/ui"


def test_the_static_files_are_in_the_package() -> None:
    for name in STATIC:
        assert asset(name), name
    for script in ("app.js", "charts.js", "vendor/uPlot.iife.min.js"):
        # inlined by the HTML report: none may close its script element early
        assert "</script" not in asset(script).lower()


def test_the_routes_work_mounted_under_a_prefix(ledger_path: Path) -> None:
    with Ledger.open(ledger_path, read_only=True) as ledger:
        app = Starlette(routes=[Mount("/admin", routes=ui_routes(lambda request: ledger))])
        with serving(app) as url:
            page = httpx.get(f"{url}/admin/ui").text
            assert 'data-src="/admin/ui/data.json"' in page
            assert 'src="/admin/ui/static/app.js"' in page
            data = httpx.get(f"{url}/admin/ui/data.json").json()
            assert [b["team"] for b in data["budgets"]] == ["ads", "studio"]
            assert httpx.get(f"{url}/admin/ui/static/charts.js").status_code == 200


def test_a_ledger_that_fails_is_a_503_with_its_reason(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "l.db")
    ledger.close()  # every read now fails
    with serving(Starlette(routes=ui_routes(ledger))) as url:
        response = httpx.get(f"{url}/ui/data.json")
    assert response.status_code == 503 and "error" in response.json()


def test_an_empty_ledger_has_empty_sections(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as ledger:
        data = page_data(ledger)
    assert (data["budgets"], data["charts"], data["tasks"], data["refusals"]) == ([], [], [], [])
    assert data["drift"]["classes"] == []


def test_page_data_on_both_backends(ledger_url: str) -> None:
    spend(ledger_url)
    with Ledger.open(ledger_url, read_only=True) as ledger:
        data = page_data(ledger)
        studio = ledger.budget_status("studio")
    budgets = {b["team"]: b for b in data["budgets"]}
    assert (budgets["studio"]["used"], budgets["studio"]["limit"]) == (str(studio.used), "200000")
    assert budgets["studio"]["forecast"]["runs_out_on"] is not None
    assert {c["team"] for c in data["charts"]} == {"studio", "ads"}
    assert [t["state"] for t in data["tasks"][:2]] == ["held", "held"]
    assert len(data["tasks"]) == 20 and len(data["refusals"]) == 1
    drift = {c["label"]: c["drift"] for c in data["drift"]["classes"]}
    assert drift == {
        "videos/text2video kling-v1 std 5s": "3.33%",
        "videos/text2video kling-v1-6 std 5s": "3.33%",
    }


def test_ui_command_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["ui", "--ledger", str(tmp_path / "none.db")])
    assert missing.exit_code == 2 and "no ledger at" in missing.output
    assert not (tmp_path / "none.db").exists()
    bad = runner.invoke(main, ["ui", "--port", "99999"])
    assert bad.exit_code == 2 and "--port" in bad.output
    Ledger.open(tmp_path / "l.db").close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = runner.invoke(main, ["ui", "--port", str(port), "--ledger", str(tmp_path / "l.db")])
    assert busy.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in busy.output


# --- the chart data, pure ---------------------------------------------------------------


def test_axis_fits_the_top_with_four_to_eight_round_ticks() -> None:
    assert axis(200_000) == (220_000, [0, 50_000, 100_000, 150_000, 200_000])
    assert axis(500_000)[0] == 550_000  # the old chart went to 1,000,000 here
    for top in (25, 99, 101, 2_499, 2_501, 7_777, 123_456, 3_000_000, 10**12 + 1):
        maximum, ticks = axis(top)
        assert top < maximum <= top * 11 // 10 + 1
        assert 4 <= len(ticks) <= 8 and ticks[0] == 0 and ticks[-1] <= maximum
        steps = {b - a for a, b in pairwise(ticks)}
        assert len(steps) == 1
    assert [nice_step(n) for n in (1, 3, 11, 21, 51, 101)] == [1, 5, 20, 25, 100, 200]


def test_projection_runs_to_the_limit_or_stops_at_the_period_end() -> None:
    today = date(2026, 12, 3)
    series = BudgetSeries("t", "credits", 0, 1000, "month", ((today, 400),))
    assert projection(series, Fraction(100), date(2026, 12, 9), date(2026, 12, 31)) == [
        (today, 400),
        (date(2026, 12, 9), 1000),
    ]
    # runs out after the period ends: the line stops at its last day, short of the limit
    assert projection(series, Fraction(10), date(2027, 2, 1), date(2026, 12, 31)) == [
        (today, 400),
        (date(2026, 12, 31), 680),
    ]
    assert projection(series, Fraction(0), None, None) == []
    assert projection(series, Fraction(100), today, None) == []  # nothing left today
    assert projection(series, Fraction(1), today + timedelta(days=600), None)[-1] == (
        today + timedelta(days=31),
        431,
    )
