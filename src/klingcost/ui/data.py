"""What the live page shows, read from a ledger in one call: ``page_data(ledger)``.

The result is the body of ``/ui/data.json``; every amount is an exact decimal string in the
major units of its budget or currency (``"200000"``, ``"12.5"``), never a float. Keys:

``generated_at``  the ledger clock's time (ISO 8601)
``budgets``       per budget: team, parent, unit, period, period_key, limit, posted, held,
                  used, available, share (``"62.50%"``), soft (the alert share),
                  forecast ``{rate_per_day, runs_out_on, method}``
``charts``        per budget, the burn-down chart (:func:`klingcost.burndown.chart_spec`)
``tasks``         the latest tasks (newest first): estimate against charge
``refusals``      the latest refusals the ledger recorded (events of kind ``refused``)
``drift``         reconcile over the last 30 days: the job classes compared, worst first,
                  the budgets over their limit and the charges that look wrong
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, timedelta
from typing import Any, Final

from klingcost.budgets import UNITS, BudgetStatus
from klingcost.burndown import budget_series, chart_spec, forecast_record
from klingcost.display import group_digits, percent_text, share_text
from klingcost.forecast import Forecast, forecast_for
from klingcost.ledger import Event, Ledger
from klingcost.ledger.queries import latest_tasks
from klingcost.money import format_minor
from klingcost.reconcile import reconcile

#: How many tasks, refusals and drifting classes the page lists.
RECENT: Final = 20
#: The charts start at least this many days back (earlier when a period started earlier).
CHART_DAYS: Final = 14
#: Reconcile looks back this far: price drift is about what the API charges now.
DRIFT_DAYS: Final = 30


def _period_start(status: BudgetStatus, today: date) -> date:
    start = status.window.start
    return today if start is None else min(today, start.astimezone(UTC).date())


def chart_window(statuses: Iterable[BudgetStatus], today: date) -> date:
    """The first day charted: two weeks back, or the start of the earliest current period."""
    return min(
        [today - timedelta(days=CHART_DAYS - 1), *(_period_start(s, today) for s in statuses)]
    )


def budget_record(status: BudgetStatus, forecast: Forecast | None) -> dict[str, Any]:
    b = status.budget
    return {
        "team": b.team,
        "parent": b.parent,
        "unit": f"units ({b.pack})" if b.unit == UNITS else b.unit,
        "period": b.period,
        "period_key": status.window.key,
        "limit": b.format(status.limit),
        "posted": b.format(status.posted),
        "held": b.format(status.held),
        "used": b.format(status.used),
        "available": b.format(status.available),
        "share": percent_text(status.share_used) if status.limit else None,
        "soft": share_text(b.soft),
        "forecast": None if forecast is None else forecast_record(forecast),
    }


def _recent_tasks(ledger: Ledger) -> list[dict[str, Any]]:
    return [
        {
            "hold_id": t.hold_id,
            "task_id": t.task_id,
            "team": t.team,
            "state": t.state,
            "reserved_at": t.reserved_at,
            "model": t.model,
            "mode": t.mode,
            "duration": t.duration,
            "endpoint": t.endpoint,
            "currency": t.currency,
            "estimated": t.estimated,
            "charged": t.charged,
            "variance": t.variance,
            "flag": t.deduction_flag,
        }
        for t in latest_tasks(ledger, RECENT)
    ]


def refusal_record(event: Event) -> dict[str, Any]:
    """A refusal event as the page lists it: when, which team, and what the refusal said
    (``budget: needs 1,500 credits, 200 left (budget acme, 2026-12)``)."""
    data = dict(event.data)
    said = str(data.get("message") or data.get("reason") or "refused")
    if data.get("needed") is not None:
        unit = f" {data['unit']}" if data.get("unit") else ""
        said += f": needs {group_digits(str(data['needed']))}{unit}"
        if data.get("left") is not None:
            said += f", {group_digits(str(data['left']))} left"
    where = [str(data[k]) for k in ("budget", "period") if data.get(k)]
    if where:
        said += f" (budget {', '.join(where)})"
    return {"at": event.at.isoformat(), "team": event.team, "what": said, "data": data}


def _drift(ledger: Ledger, today: date) -> dict[str, Any]:
    result = reconcile(ledger, since=today - timedelta(days=DRIFT_DAYS - 1), limit=1)
    classes = [c for c in result.classes if c.compared]
    return {
        "since": (today - timedelta(days=DRIFT_DAYS - 1)).isoformat(),
        "classes": [
            {
                "label": c.job.label,
                "compared": c.compared,
                "agreeing": c.agreeing,
                "estimated_units": format_minor(c.estimated_units_milli, 3),
                "charged_units": format_minor(c.charged_units_milli, 3),
                "drift": None if c.drift is None else percent_text(c.drift),
                "beyond_tolerance": c.beyond(result.tolerance),
            }
            for c in classes[:RECENT]
        ],
        "over_limit": list(result.over_limit),
        "flags": {k: v for k, v in result.flag_totals.items() if v},
    }


def page_data(ledger: Ledger) -> dict[str, Any]:
    """Everything ``/ui`` shows (see the module docstring)."""
    now = ledger.clock.now()
    today = now.astimezone(UTC).date()
    statuses = ledger.budgets()
    forecasts = {s.team: forecast_for(ledger, s.team, now=now) for s in statuses}
    series = budget_series(ledger, since=chart_window(statuses, today), idle=True)
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "ledger": str(ledger.path),
        "budgets": [budget_record(s, forecasts[s.team]) for s in statuses],
        "charts": [chart_spec(s, forecasts.get(s.team), today=today) for s in series],
        "tasks": _recent_tasks(ledger),
        "refusals": [refusal_record(e) for e in ledger.events(kind="refused")[-RECENT:][::-1]],
        "drift": _drift(ledger, today),
    }


__all__ = ["RECENT", "budget_record", "chart_window", "page_data", "refusal_record"]
