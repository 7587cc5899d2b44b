"""A self-contained HTML spending report: one file, its styles, scripts and chart library
inline, nothing fetched when it opens (it reads the same offline).

    page = html_report(ledger, spending_report(ledger, by="team,month"))
    Path("report.html").write_text(page, encoding="utf-8")

Sections, in order:

* **Budgets**: every budget charted (parents included, though they hold no tasks of their
  own), with what it had used at the end of the window, in the period that holds that day,
  against its limit; and its forecast when the window ends today. The chart titles say the
  same numbers: for a past window both describe the window's last day, not today.
* **Budget used over time**: a burn-down chart per budget (``<figure class="panel"
  data-team="...">``), drawn by uPlot (vendored in :mod:`klingcost.ui`, the charts of
  ``klingcost ui``) from the specs in ``<script type="application/json"
  id="klingcost-charts">`` (:func:`klingcost.burndown.chart_spec`): a step line of what the
  budget used (a period's reset is a drop), its limit, its forecast, and a value axis fitted
  to the budget with ticks grouped by thousands.
* **Spending**: the report's rows and totals (the budget columns are in Budgets above).
* **Refusals**: submissions a budget refused in the window (events of kind ``refused``).
* **Price drift**: reconcile over the window: each job class's charges against estimates.

Every string from the ledger (team names, models, refusal messages) is escaped, and the JSON
of the charts cannot close its script element (``<`` is written ``\\u003c``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from fractions import Fraction
from html import escape
from typing import Any

from klingcost.burndown import BudgetSeries, budget_series, chart_spec
from klingcost.display import group_digits, percent_text
from klingcost.forecast import forecast_for
from klingcost.ledger import Ledger
from klingcost.reconcile import Reconciliation, reconcile
from klingcost.reports.model import Report
from klingcost.reports.render import table_columns, text_cells
from klingcost.ui.assets import asset
from klingcost.ui.data import RECENT, refusal_record

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b;
       margin: 2rem auto; max-width: 64rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.meta { color: #555; margin-top: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: .3rem .55rem; border-bottom: 1px solid #ddd; text-align: left; }
th { background: #f4f4f4; font-weight: 600; } td.num, th.num { text-align: right; }
tr.total td { font-weight: 600; border-top: 2px solid #999; }
tr.beyond td { color: #b00020; }
.note { color: #555; font-size: .9rem; }
@media (prefers-color-scheme: dark) {
  body { background: #161616; color: #e6e6e6; } th { background: #262626; }
  th, td { border-color: #333; } .meta, .note { color: #aaa; } }
"""

_NUMERIC = {
    "tasks",
    "settled",
    "open",
    "voided",
    "estimated",
    "charged",
    "held",
    "variance",
    "used",
    "limit",
    "share",
    "compared",
    "agreeing",
    "estimated units",
    "charged units",
    "drift",
}


def _cell(column: str, value: object) -> str:
    kind = "num" if column in _NUMERIC else "text"
    return f'<td class="{kind}">{escape("" if value is None else str(value))}</td>'


def _table(
    name: str, columns: Sequence[str], rows: Iterable[tuple[str, Sequence[object]]], empty: str
) -> str:
    head = "".join(
        f'<th scope="col" class="{"num" if c in _NUMERIC else "text"}">'
        f"{escape(c.replace('_', ' '))}</th>"
        for c in columns
    )
    body = [
        f'<tr class="{escape(kind, quote=True)}">'
        + "".join(_cell(c, v) for c, v in zip(columns, values, strict=True))
        + "</tr>"
        for kind, values in rows
    ]
    if not body:
        body = [f'<tr><td colspan="{len(columns)}">{escape(empty)}</td></tr>']
    return (
        f'<div class="scroll"><table class="{name}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _spending(report: Report) -> str:
    # The budget columns describe each budget's current period; the Budgets table shows the
    # budgets as of the window's end instead, as the charts do, so they are left out here.
    every = table_columns(report)
    shown = [c for c in every if not c.startswith("budget_")]
    picks = [every.index(c) for c in shown]
    kinds = [row.kind for row in (*report.rows, *report.totals)]
    rows = [
        (kind, [cells[i] for i in picks])
        for kind, cells in zip(kinds, text_cells(report, every), strict=True)
    ]
    return _table("report", shown, rows, "No spending in this window.")


def panel_title(spec: Mapping[str, Any]) -> str:
    """What a budget had used at the end of the window, as its chart and the table say it."""
    where = "all time" if spec["period"] == "none" else spec["period_key"]
    return (
        f"{spec['team']}: {group_digits(spec['used'])} of {group_digits(spec['limit'])}"
        f" {spec['unit']} in {where}"
    )


def _forecast_text(spec: Mapping[str, Any]) -> str:
    f = spec.get("forecast")
    if not f:
        return ""
    if not f["runs_out_on"]:
        return f"{group_digits(f['rate_per_day'])}/day; does not run out"
    early = " (before its period ends)" if f["runs_out_early"] else ""
    return f"{group_digits(f['rate_per_day'])}/day; runs out {f['runs_out_on']}{early}"


def _budgets(charts: Sequence[Mapping[str, Any]]) -> str:
    columns = ["budget", "parent", "period", "used", "limit", "unit", "share", "forecast"]
    rows = []
    for spec in charts:
        limit, used = Fraction(spec["limit"]), Fraction(spec["used"])
        share = percent_text(used / limit) if limit else ""
        rows.append(
            (
                "over" if limit and used > limit else "budget",
                [
                    spec["team"],
                    spec["parent"] or "",
                    "all time" if spec["period"] == "none" else spec["period_key"],
                    group_digits(spec["used"]),
                    group_digits(spec["limit"]),
                    spec["unit"],
                    share,
                    _forecast_text(spec),
                ],
            )
        )
    return _table("budgets", columns, rows, "No budget has spending in this window.")


def _charts(charts: Sequence[Mapping[str, Any]]) -> str:
    if not charts:
        return '<p class="empty">No spending to chart in this window.</p>'
    figures = [
        f'<figure class="panel" data-team="{escape(spec["team"], quote=True)}"'
        f' data-index="{i}" data-unit="{escape(spec["unit"], quote=True)}"'
        f' data-limit="{escape(spec["limit"], quote=True)}">'
        f'<figcaption class="panel-title">{escape(panel_title(spec))}</figcaption>'
        '<div class="plot"></div></figure>'
        for i, spec in enumerate(charts)
    ]
    data = json.dumps(list(charts), ensure_ascii=False).replace("<", "\\u003c")
    return "\n".join(
        [
            '<div class="charts">',
            *figures,
            "</div>",
            f'<script type="application/json" id="klingcost-charts">{data}</script>',
            '<noscript><p class="note">The charts need JavaScript (inline, nothing is'
            " fetched); the tables hold the same numbers.</p></noscript>",
        ]
    )


def _refusals(refusals: Sequence[Mapping[str, Any]], total: int) -> str:
    rows = [
        ("refused", [r["at"][:19].replace("T", " "), r["team"] or "", r["what"]]) for r in refusals
    ]
    shown = f" (the latest {len(refusals)} listed)" if total > len(refusals) else ""
    count = f'<p class="note">{total} refused in this window{shown}.</p>' if total else ""
    return count + _table(
        "refusals", ["at (UTC)", "team", "what"], rows, "No refusals in this window."
    )


def _drift(result: Reconciliation | None) -> str:
    if result is None:
        return ""
    columns = ["job class", "compared", "agreeing", "estimated units", "charged units", "drift"]
    rows = [
        (
            "beyond" if c.beyond(result.tolerance) else "class",
            [
                c.job.label,
                c.compared,
                c.agreeing,
                group_digits(d["estimated_units"]),
                group_digits(d["charged_units"]),
                "" if c.drift is None else percent_text(c.drift),
            ],
        )
        for c in result.classes
        if c.compared
        for d in [c.to_dict(result.tolerance)]
    ]
    notes = []
    if result.over_limit:
        notes.append(f"Over their limit now: {', '.join(result.over_limit)}.")
    flags = {k: v for k, v in result.flag_totals.items() if v}
    if flags:
        notes.append(
            "Charges that look wrong: " + ", ".join(f"{k} {v}" for k, v in flags.items()) + "."
        )
    empty = "No settled task with a trusted charge in this window."
    note = f'<p class="note">{escape(" ".join(notes))}</p>' if notes else ""
    return _table("drift", columns, rows, empty) + note


def _script(text: str) -> str:
    # The vendored and own scripts hold no "</script": checked by the tests.
    return f"<script>{text}</script>"


def render_html(
    report: Report,
    charts: Sequence[Mapping[str, Any]],
    *,
    refusals: Sequence[Mapping[str, Any]] = (),
    refused: int | None = None,
    drift: Reconciliation | None = None,
    title: str = "klingcost spending report",
    generated_at: datetime | None = None,
    ledger_path: str | None = None,
) -> str:
    """The whole page as a string (UTF-8, no external resource). ``charts`` are
    :func:`klingcost.burndown.chart_spec` dicts; ``refusals`` are
    :func:`klingcost.ui.data.refusal_record` dicts, the latest of ``refused`` (default: as
    many as listed)."""
    window = (
        f"{report.since.isoformat() if report.since else 'the beginning'} to "
        f"{report.until.isoformat() if report.until else 'now'} (UTC days)"
    )
    meta = [f"Window: {window}", f"grouped by {', '.join(report.by) or 'nothing'}"]
    if report.team:
        meta.append(f"team {report.team}")
    if generated_at is not None:
        meta.append(f"generated {generated_at.isoformat(timespec='seconds')}")
    if ledger_path:
        meta.append(f"ledger {ledger_path}")
    styles = asset("vendor/uPlot.min.css") + asset("charts.css") + _CSS
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>",
            f"<style>{styles}</style>",
            "</head>",
            "<body>",
            f"<h1>{escape(title)}</h1>",
            f'<p class="meta">{escape(" · ".join(meta))}</p>',
            "<h2>Budgets</h2>",
            _budgets(charts),
            '<p class="note">What each budget had used (posted + held, children included) at the'
            " end of the window, in the period holding that day; the forecast when the window"
            " ends today.</p>",
            "<h2>Budget used over time</h2>",
            _charts(charts),
            '<p class="note">Step line: posted + held in the budget\'s period, by day of'
            " reservation, including child budgets (a new period starts from zero). Dashed:"
            " the budget's limit, and the forecast from today's total to the day it runs"
            " out.</p>",
            "<h2>Spending</h2>",
            _spending(report),
            '<p class="note">Estimated: estimates of settled and open tasks. Charged: what settled'
            " tasks were charged. Held: estimates still reserved. Variance: charged minus the"
            " estimates of settled tasks.</p>",
            "<h2>Refusals</h2>",
            _refusals(refusals, len(refusals) if refused is None else refused),
            "<h2>Price drift</h2>",
            _drift(drift),
            _script(asset("vendor/uPlot.iife.min.js")),
            _script(asset("charts.js")),
            _script("KlingcostCharts.drawEmbedded(document);"),
            "</body>",
            "</html>",
            "",
        ]
    )


def _in_window(at: datetime, since: date | None, until: date | None) -> bool:
    day = at.astimezone(UTC).date()
    return (since is None or day >= since) and (until is None or day <= until)


def html_report(ledger: Ledger, report: Report, *, title: str = "klingcost spending report") -> str:
    """Render ``report`` with the budget charts, refusals and price drift of the same window."""
    series = budget_series(ledger, since=report.since, until=report.until, team=report.team)
    today = ledger.clock.now().astimezone(UTC).date()
    # The report's own forecasts (every budget, or its team's), so that both agree; a budget
    # above the team is forecast here.
    known = {f.team: f.forecast for f in report.forecasts}
    charts = [
        chart_spec(
            s,
            (known.get(s.team) or forecast_for(ledger, s.team)) if _ends_today(s, today) else None,
            today=today,
        )
        for s in series
    ]
    events = [
        e
        for e in ledger.events(kind="refused", team=report.team)
        if _in_window(e.at, report.since, report.until)
    ]
    refusals = [refusal_record(e) for e in events[-RECENT:][::-1]]
    drift = reconcile(ledger, since=report.since, until=report.until, limit=1)
    return render_html(
        report,
        charts,
        refusals=refusals,
        refused=len(events),
        drift=drift,
        title=title,
        generated_at=ledger.clock.now(),
        ledger_path=str(ledger.path),
    )


def _ends_today(series: BudgetSeries, today: date) -> bool:
    return bool(series.points) and series.points[-1][0] == today


__all__ = [
    "BudgetSeries",
    "budget_series",
    "html_report",
    "panel_title",
    "render_html",
]
