"""The HTML report parses, holds a chart spec and a budgets row per budget (parents too),
fixes the old hand-drawn chart's defects (ticks, axis, steps, titles), lists refusals and
price drift, escapes every string and needs no network."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from klingcost.budgets import HoldAmounts
from klingcost.clock import ManualClock
from klingcost.ledger import Ledger
from klingcost.reports import spending_report
from klingcost.reports.html import budget_series, html_report, render_html
from ui_fixtures import record_refusal

START = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


class Page(HTMLParser):
    """Collects the tags, the table cells (by table class), the figure captions and the
    scripts of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.cells: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.captions: list[str] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._table = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self._table = dict(attrs).get("class") or ""
            self.tables[self._table] = []
        elif tag == "tr":
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._in = "cell"
            self.cells.append("")
            self.tables[self._table][-1].append("")
        elif tag == "figcaption":
            self._in = "caption"
            self.captions.append("")
        elif tag == "script":
            self._in = "script"
            self.scripts.append((dict(attrs), ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th", "figcaption", "script"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "cell":
            self.cells[-1] += data
            self.tables[self._table][-1][-1] += data
        elif self._in == "caption":
            self.captions[-1] += data
        elif self._in == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def rows(self, table: str) -> dict[str, dict[str, str]]:
        """A table's body rows keyed by their first cell, each a dict by column name."""
        head, *body = self.tables[table]
        return {row[0]: dict(zip(head, row, strict=True)) for row in body}

    def charts(self) -> dict[str, dict[str, Any]]:
        [text] = [t for a, t in self.scripts if a.get("id") == "klingcost-charts"]
        return {spec["team"]: spec for spec in json.loads(text)}


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


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    return parser


def test_the_page_parses_and_holds_its_charts(ledger: Ledger) -> None:
    page = html_report(ledger, spending_report(ledger, by="team"))
    parser = parse(page)
    assert page.startswith("<!DOCTYPE html>")
    figures = {a["data-team"]: a for t, a in parser.tags if t == "figure"}
    charts = parser.charts()
    assert set(figures) == set(charts) == {"company", "video", "ads", "pack"}
    for team, spec in charts.items():
        # A point a day, from the start of the first period shown (Nov 1, the month of the
        # first spending) to today (Dec 3); ads has no period, so it starts at its first day.
        assert len(spec["days"]) == len(spec["values"]) == (7 if team == "ads" else 33), team
        assert spec["days"][-1] == "2026-12-03"
        # the total changed on each of the six days of spending
        changes = sum(
            1 for a, b in zip(["0", *spec["values"]], spec["values"], strict=False) if a != b
        )
        assert changes == 6, team
    assert figures["pack"]["data-unit"] == "units (video)"
    assert figures["video"]["data-limit"] == "1000000"
    # the chart library and the code that draws are inline: the page is one file
    inline = [text for attrs, text in parser.scripts if "type" not in attrs]
    assert any("uPlot" in text and "leeoniya" in text for text in inline)
    assert any("KlingcostCharts" in text for text in inline)


def test_ticks_are_several_grouped_and_the_axis_fits_the_budget(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db", clock=ManualClock(START)) as ledger:
        ledger.set_budget("acme", limit=200_000, period="month")
        hold = ledger.reserve("acme", HoldAmounts(10_000, "video", 150_000, "credits"))
        ledger.settle(hold.id, units_milli=10_000, cost_minor=150_000)
        spec = parse(html_report(ledger, spending_report(ledger))).charts()["acme"]
    # The old chart: two labels ("0", "500000") on an axis to 500,000 for a 200,000 budget.
    assert spec["axis"]["max"] == "220000"
    assert spec["axis"]["labels"] == ["0", "50,000", "100,000", "150,000", "200,000"]
    assert spec["axis"]["ticks"] == ["0", "50000", "100000", "150000", "200000"]
    assert (spec["limit"], spec["used"]) == ("200000", "150000")


def test_a_new_period_is_a_drop_drawn_as_a_step(ledger: Ledger) -> None:
    parser = parse(html_report(ledger, spending_report(ledger)))
    video = parser.charts()["video"]
    days = dict(zip(video["days"], video["values"], strict=True))
    # Nov 30 ends the month at 120,000; Dec 1 starts the next one at 30,000: consecutive
    # points, so a line joining them would slope across the day. The series is drawn stepped
    # (a day's total holds until the next day), so the reset is a vertical drop.
    assert (days["2026-11-30"], days["2026-12-01"]) == ("120000", "30000")
    [charts_js] = [t for a, t in parser.scripts if "KlingcostCharts =" in t]
    assert "uPlot.paths.stepped({ align: 1 })" in charts_js


def test_titles_agree_with_the_budgets_table_for_a_past_window(ledger: Ledger) -> None:
    # November only: at its end video had used 120,000 of November; today (Dec 3) it has
    # used 60,000 of December. Title and table both describe the window's last day.
    report = spending_report(ledger, by="team", until=date(2026, 11, 30))
    parser = parse(html_report(ledger, report))
    budgets = parser.rows("budgets")
    assert budgets["video"]["used"] == "120,000" and budgets["video"]["period"] == "2026-11"
    assert "video: 120,000 of 1,000,000 credits in 2026-11" in parser.captions
    assert ledger.budget_status("video").used == 60_000  # what the old title disagreed with
    for caption in parser.captions:
        team = caption.split(":")[0]
        row = budgets[team]
        assert f"{row['used']} of {row['limit']}" in caption and row["period"] in caption
    # no forecast for a window that has ended
    assert budgets["video"]["forecast"] == ""
    assert parser.charts()["video"]["projection"] == []


def test_the_parent_budget_is_in_the_table_as_well_as_the_chart(ledger: Ledger) -> None:
    parser = parse(html_report(ledger, spending_report(ledger, by="team")))
    budgets = parser.rows("budgets")
    assert set(budgets) == set(parser.charts()) == {"company", "video", "ads", "pack"}
    company = budgets["company"]
    # company holds no task of its own (no spending row) yet counts its children's
    assert "company" not in parser.rows("report")
    assert company["used"] == "90,000" and company["limit"] == "3,000,000"  # Dec: 60k + 30k
    assert (budgets["video"]["parent"], company["parent"]) == ("company", "")
    # the window ends today: each budget has its forecast, drawn to the day it runs out
    assert "/day" in company["forecast"]
    video = parser.charts()["video"]
    assert video["forecast"]["runs_out_on"] is not None
    assert video["projection"][0] == ["2026-12-03", "60000"]


def test_refusals_and_price_drift_have_their_sections(ledger: Ledger) -> None:
    hold = ledger.reserve("video", HoldAmounts(2000, "video", 30_000, "credits"), meta=meta("m1"))
    ledger.settle(hold.id, units_milli=2400, cost_minor=36_000, raw_deduction="2.4")
    record_refusal(ledger, "ads", needed=700_000, left=510_000)
    parser = parse(html_report(ledger, spending_report(ledger, by="team")))
    [refusal] = parser.tables["refusals"][1:]
    assert refusal[1] == "ads"
    assert "needs 700,000 credits, 510,000 left" in refusal[2]
    drift = parser.rows("drift")
    [label] = [k for k in drift if "m1" in k]
    assert drift[label]["drift"] == "20.00%" and drift[label]["compared"] == "1"
    assert drift[label]["charged units"] == "2.4"
    # a window that holds neither says so
    early = parse(html_report(ledger, spending_report(ledger, until=date(2026, 11, 27))))
    assert early.tables["refusals"][1] == ["No refusals in this window."]


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
    parser = parse(page)
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert "<script>alert('x')</script>" in parser.cells  # the text survives, inert
    # Team names cannot hold markup (budgets refuses them), but units and future fields might:
    # the chart data cannot close its script element whatever it holds.
    [spec] = [c for c in parser.charts().values() if c["team"] == "video"]
    hostile = render_html(spending_report(ledger), [{**spec, "unit": "</script><b>x"}])
    assert "<b>" not in hostile
    assert parse(hostile).charts()["video"]["unit"] == "</script><b>x"
    # Nothing is loaded from anywhere: no element names a resource, every script is inline.
    assert not [t for t, a in parser.tags if t in ("link", "img", "iframe")]
    assert not [a for t, a in parser.tags if "src" in a or "href" in a]
    assert not re.search(r"\bfetch\(|XMLHttpRequest|import\(", page)


def test_an_empty_window_still_makes_a_page(ledger: Ledger) -> None:
    report = spending_report(ledger, since=date(2030, 1, 1))
    page = html_report(ledger, report)
    parser = Page()
    parser.feed(page)
    assert "No spending to chart" in page and "No spending in this window." in page
    assert "No spending to chart" in render_html(report, [])
