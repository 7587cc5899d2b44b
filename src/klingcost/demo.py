"""``klingcost demo``: the whole tool on embedded defaults, with no key and no network.

It starts the fake Kling API on a free loopback port, opens a fresh ledger, gives two teams
budgets under one company budget, submits a mixed batch through the guard (some of it over
budget, one body invalid, one answer lost on the wire), settles everything with a sync pass,
and prints the budgets and what each team spent.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from klingcost import errors
from klingcost.fake_server import FakeKling
from klingcost.guard import GuardedClient
from klingcost.ledger import Ledger
from klingcost.money import format_amount, format_minor

DEMO_KEY = "hk-demo-key-not-secret"

#: (team, endpoint, body, what the line shows)
JOBS: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    (
        "studio",
        "text2video",
        {
            "model_name": "kling-v1-5",
            "mode": "pro",
            "duration": "10",
            "prompt": "a spaceship sails through a nebula",
        },
        "",
    ),
    (
        "studio",
        "omni-video",
        {
            "model_name": "kling-video-o1",
            "mode": "pro",
            "duration": 5,
            "prompt": "heavy snow",
            "video_list": [{"video_url": "https://example.com/ref.mp4"}],
        },
        "",
    ),
    (
        "studio",
        "text2video",
        {
            "model_name": "kling-v2-6",
            "mode": "pro",
            "sound": "on",
            "prompt": "waves on a pebble beach",
        },
        "",
    ),
    (
        "studio",
        "text2video",
        {"model_name": "kling-v2-master", "duration": "10", "prompt": "a city wakes up"},
        "the answer is lost on the wire",
    ),
    (
        "studio",
        "text2video",
        {"model_name": "kling-v2-master", "duration": "10", "prompt": "the city at night"},
        "over the studio budget",
    ),
    (
        "ads",
        "images/generations",
        {"model_name": "kling-v2", "n": 4, "prompt": "a red sneaker"},
        "",
    ),
    (
        "ads",
        "image2video",
        {
            "model_name": "kling-v1-6",
            "image": "https://example.com/shoe.png",
            "prompt": "the sneaker turns",
        },
        "",
    ),
    (
        "ads",
        "text2video",
        {"model_name": "kling-v1", "mode": "pro", "duration": "10", "prompt": "a runner at dawn"},
        "",
    ),
    (
        "ads",
        "text2video",
        {"model_name": "kling-v2-1", "mode": "pro", "duration": "10", "prompt": "a runner at dusk"},
        "over the ads budget",
    ),
    (
        "ads",
        "text2video",
        {"model_name": "kling-v1", "duration": "7", "prompt": "x"},
        "an invalid body",
    ),
)

#: The fake API charges kling-v1-6 a fifth more than the sheet says, as a price change would:
#: reconcile notices, and calibrate would learn the new price.
DRIFT = {"kling-v1-6": "6/5"}

BUDGETS: tuple[tuple[str, int, str | None], ...] = (
    ("acme", 900_000, None),
    ("studio", 600_000, "acme"),
    ("ads", 200_000, "acme"),
)


@dataclass
class DemoResult:
    submitted: int = 0
    refused: int = 0
    invalid: int = 0
    unknown: int = 0


def run_demo(echo: Callable[[str], None], *, workdir: Path | None = None) -> DemoResult:
    """Run the demo, printing through ``echo``; the ledger is left in ``workdir`` if given."""
    result = DemoResult()
    with tempfile.TemporaryDirectory(prefix="klingcost-demo-") as scratch:
        ledger_path = (workdir or Path(scratch)) / "demo-ledger.db"
        if ledger_path.exists():
            ledger_path.unlink()
        with (
            FakeKling(api_key=DEMO_KEY, done_after=0.2, drift=DRIFT) as fake,
            Ledger.open(ledger_path) as ledger,
        ):
            kept = "" if workdir else " (deleted at the end: --keep DIR keeps it)"
            echo(f"fake Kling API at {fake.base_url}; ledger {ledger_path}{kept}")
            for team, limit, parent in BUDGETS:
                ledger.set_budget(team, limit=limit, unit="credits", period="month", parent=parent)
                echo(
                    f"budget {team}: {limit:,} credits a month"
                    + (f", inside {parent}" if parent else "")
                )
            echo("")
            with _alerts_as_lines(echo):
                _submit_all(fake, ledger, echo, result)
            echo("")
            echo("settling: klingcost sync --wait")
            _settle(fake, ledger, echo)
            echo("")
            _print_budgets(ledger, echo)
            echo("")
            _print_spending(ledger, echo)
            echo("")
            _print_reconciliation(ledger, echo)
    return result


class _EchoAlerts(logging.Handler):
    def __init__(self, echo: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.echo = echo

    def emit(self, record: logging.LogRecord) -> None:
        self.echo(f"        ALERT    {record.getMessage()}")


@contextmanager
def _alerts_as_lines(echo: Callable[[str], None]) -> Iterator[None]:
    """The ledger's budget alerts (soft threshold) as lines of the demo, in their place,
    rather than log lines on stderr between them."""
    logger = logging.getLogger("klingcost.ledger")
    handler, propagate = _EchoAlerts(echo), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _submit_all(
    fake: FakeKling, ledger: Ledger, echo: Callable[[str], None], result: DemoResult
) -> None:
    guards = {
        team: GuardedClient(
            team,
            ledger=ledger,
            api_key=DEMO_KEY,
            base_url=fake.base_url,
            external_ids=True,
            timeout=5.0,
        )
        for team, _, _ in BUDGETS
    }
    try:
        for team, endpoint, body, note in JOBS:
            if note == "the answer is lost on the wire":
                fake.set_faults({"kind": "drop", "create": True, "method": "POST", "times": 1})
            label = f"{team:<7} {endpoint:<18} {body.get('model_name', ''):<16}"
            try:
                submission = guards[team].submit(endpoint, body)
            except errors.BudgetExceeded as exc:
                result.refused += 1
                echo(f"{label} REFUSED  {exc}")
                continue
            except errors.RequestValidationError as exc:
                result.invalid += 1
                echo(f"{label} INVALID  " + "; ".join(str(p) for p in exc.problems))
                continue
            except errors.KlingAPIError as exc:
                result.unknown += 1
                echo(f"{label} UNKNOWN  {type(exc).__name__}: the hold keeps counting until sync")
                continue
            result.submitted += 1
            priced = submission.estimate
            echo(
                f"{label} held {format_amount(priced.cost.amount):>8} credits "
                f"({format_amount(priced.units)} {priced.pack} units), task {submission.task_id}"
            )
    finally:
        for guard in guards.values():
            guard.close()


def _settle(fake: FakeKling, ledger: Ledger, echo: Callable[[str], None]) -> None:
    from klingcost.api.client import AsyncKlingClient
    from klingcost.sync import settle_until_done

    # The fake ends its tasks at once: a pass every 0.1 s, for 5 s at most.
    client = AsyncKlingClient(DEMO_KEY, base_url=fake.base_url)
    report = settle_until_done(ledger, client, interval=0.1, timeout=5.0)
    if report.pending == 0:
        echo(
            f"  {report.settled} settled, {report.voided} voided, "
            f"{len(report.unresolved)} unresolved"
        )


def _print_budgets(ledger: Ledger, echo: Callable[[str], None]) -> None:
    echo(f"{'budget':<8} {'limit':>10} {'posted':>10} {'held':>8} {'available':>10} {'used':>6}")
    for status in ledger.budgets():
        share = status.share_used
        echo(
            f"{status.team:<8} {status.limit:>10,} {status.posted:>10,} {status.held:>8,} "
            f"{status.available:>10,} {_percent(share):>6}"
        )


def _percent(share: Fraction) -> str:
    return f"{share.numerator * 100 // share.denominator}%"


def _print_spending(ledger: Ledger, echo: Callable[[str], None]) -> None:
    echo(
        f"{'team':<8} {'settled':>7} {'voided':>6} {'estimated':>10} {'charged':>10} "
        f"{'video units':>11} {'image units':>11}"
    )
    teams: dict[str, dict[str, int]] = {}
    for hold in ledger.holds():
        row = teams.setdefault(
            hold.team,
            {"settled": 0, "voided": 0, "estimated": 0, "charged": 0, "video": 0, "image": 0},
        )
        if hold.state == "settled":
            row["settled"] += 1
            row["estimated"] += hold.estimate.cost_minor
            row["charged"] += hold.cost_minor or 0
            row[hold.estimate.pack] += hold.units_milli or 0
        elif hold.state == "voided":
            row["voided"] += 1
    for team, row in sorted(teams.items()):
        echo(
            f"{team:<8} {row['settled']:>7} {row['voided']:>6} {row['estimated']:>10,} "
            f"{row['charged']:>10,} {format_minor(row['video'], 3):>11} "
            f"{format_minor(row['image'], 3):>11}"
        )


def _print_reconciliation(ledger: Ledger, echo: Callable[[str], None]) -> None:
    from klingcost.reconcile import reconcile

    result = reconcile(ledger)
    drifting = result.drifting
    echo(f"reconcile: {len(result.classes)} job classes, {len(drifting)} charged off the sheet")
    for job in drifting:
        echo(
            f"  {job.job.label}: estimated {format_minor(job.estimated_units_milli, 3)} units, "
            f"charged {format_minor(job.charged_units_milli, 3)}"
            " (klingcost calibrate --min-samples 1 learns the new price)"
        )
