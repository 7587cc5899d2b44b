"""The HTML report parses, holds its chart (a series and a budget line per budget), escapes
every string and needs no network."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from klingcost.budgets import HoldAmounts
from klingcost.clock import ManualClock
from klingcost.html_report import budget_series, html_report, render_svg
from klingcost.ledger import Ledger
from klingcost.reports import spending_report

START = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


class Page(HTMLParser):
    """Collects the tags, the SVG's source text and the table cells of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.svg: list[str] = []
        self.cells: list[str] = []
        self._in_svg = 0
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "svg":
            self._in_svg += 1
        if tag in ("td", "th"):
            self._in_cell = True
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._in_svg -= 1
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells[-1] += data


def meta(model: str) -> dict[str, str | int | None]:
    return {"endpoint": "videos/text2video", "model": model, "mode": "std", "duration": 5, "n": 1}


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    clock = ManualClock(START)
    with Ledger.open(tmp_path / "ledger.db", clock=clock) as opened:
        opened.set_budget("company", limit=3_000_000, period="month")
        opened.set_budget("video", limit=1_000_000, period="month", parent="company")
        opened.set_budget("ads", limit=600_000, parent="company")
        opened.set_budget("pack", limit=50_000, unit="units", pack="video", period="week")
        for day in range(6):
            for team, model, cost in (
                ("video", "kling-v1-5", 30_000),
                ("ads", "<script>alert('x')</script>", 15_000),
                ("pack", "kling-v1", 15_000),
            ):
                hold = opened.reserve(
                    team, HoldAmounts(cost // 15, "video", cost, "credits"), meta=meta(model)
                )
                if day % 2 == 0:
                    opened.settle(hold.id, units_milli=cost // 15, cost_minor=cost)
            clock.advance(timedelta(days=1))
        yield opened


def parse(page: str) -> tuple[Page, ET.Element]:
    parser = Page()
    parser.feed(page)
    parser.close()
    match = re.search(r"<svg .*?</svg>", page, flags=re.S)
    assert match is not None, "no SVG in the page"
    return parser, ET.fromstring(match.group(0))


def test_the_page_parses_and_holds_its_chart(ledger: Ledger) -> None:
    page = html_report(ledger, spending_report(ledger, by="team"))
    parser, svg = parse(page)
    assert page.startswith("<!DOCTYPE html>")
    tags = [tag for tag, _ in parser.tags]
    assert tags.count("svg") == 1 and "table" in tags
    panels = {g.get("data-team"): g for g in svg.iter(f"{SVG}g") if g.get("class") == "panel"}
    assert set(panels) == {"company", "video", "ads", "pack"}
    for team, panel in panels.items():
        [series] = [e for e in panel.iter(f"{SVG}polyline") if e.get("class") == "series"]
        [line] = [e for e in panel.iter(f"{SVG}line") if e.get("class") == "budget-line"]
        assert series.get("data-team") == line.get("data-team") == team
        points = (series.get("points") or "").split()
        # A point a day, from the start of the first period shown (Nov 1, the month of the
        # first spending) to today (Dec 3); ads has no period, so it starts at its first day.
        assert len(points) == (7 if team == "ads" else 33), team
        assert line.get("stroke-dasharray")
        # a dot marks each day the total changed (one day of spending is still visible)
        dots = [e for e in panel.iter(f"{SVG}circle") if e.get("class") == "point"]
        assert len(dots) == 6, team
    assert panels["pack"].get("data-unit") == "units (video)"
    assert panels["video"].get("data-limit") == "1000000"


def test_the_series_follow_the_budgets(ledger: Ledger) -> None:
    series = {s.team: s for s in budget_series(ledger)}
    video = series["video"].points
    # The chart starts with the month of the first spending (Nov 1) and runs to today (Dec 3).
    # Nov 27-30 in one month, then a new month starts on Dec 1: the running total restarts.
    assert (video[0][0], video[-1][0]) == (date(2026, 11, 1), date(2026, 12, 3))
    assert {v for _, v in video[:26]} == {0}  # nothing before Nov 27
    assert [v for _, v in video[26:]] == [30_000, 60_000, 90_000, 120_000, 30_000, 60_000, 60_000]
    company = [v for _, v in series["company"].points]
    assert company[29] == 4 * (30_000 + 15_000)  # Nov 30: its children video and ads (not pack)
    ads = [v for _, v in series["ads"].points]
    assert ads[-1] == 6 * 15_000  # no period: never restarts
    pack = series["pack"]
    assert (pack.limit, pack.unit_label) == (50_000, "units (video)")
    assert [v for _, v in pack.points][26:29] == [1000, 2000, 3000]  # milli-units, Nov 27-29
    assert [v for _, v in pack.points][29] == 1000  # Monday Nov 30: a new week
    assert ledger.budget_status("video").used == video[-1][1]
    # A window starting mid-period still counts the period from its start.
    late = {s.team: s for s in budget_series(ledger, since=date(2026, 11, 29))}
    assert late["video"].points[0] == (date(2026, 11, 29), 90_000)


def test_every_string_is_escaped_and_nothing_is_fetched(ledger: Ledger) -> None:
    page = html_report(ledger, spending_report(ledger, by="team,model"))
    parser, _ = parse(page)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<script>alert('x')</script>" in parser.cells  # the text survives, inert
    assert not [t for t, a in parser.tags if t in ("script", "link", "img", "iframe")]
    assert not re.search(r"(?:src|href)\s*=", page)
    assert re.findall(r"https?://[^\s\"'<>]+", page) == ["http://www.w3.org/2000/svg"]


def test_an_empty_window_still_makes_a_page(ledger: Ledger) -> None:
    report = spending_report(ledger, since=date(2030, 1, 1))
    page = html_report(ledger, report)
    parser = Page()
    parser.feed(page)
    assert "No spending to chart" in page and "No spending in this window." in page
    assert render_svg([]).startswith("<p")
