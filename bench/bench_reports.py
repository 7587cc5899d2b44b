"""Benchmarks of reports, exports and reconcile on a ledger of 1,000,000 settled tasks.

    .venv/bin/python bench/bench_reports.py                  # builds the ledger, then measures
    .venv/bin/python bench/bench_reports.py --tasks 100000   # a smaller run

The ledger is generated in bulk (holds, tasks, entries and balances in one transaction; the
rollups are kept by the ledger's own triggers, so ``ledger check`` passes), spread over 365 days,
eight teams under two parents and 26 job classes, with 5% of the tasks charged 20% over their
estimate and a few flagged charges. Each measurement runs in its own process, which reports its
wall time and its peak resident memory (``ru_maxrss``: the whole interpreter, not only the
query); a second run of each under ``tracemalloc`` reports the peak of Python allocations.

Targets: a grouped report <= 0.5 s; a CSV export of all rows no slower than a plain sqlite3
cursor -> csv.writer loop measured in the same run; reconcile <= 2 s; peak memory <= 100 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TEAMS = {  # team -> parent
    "studio": "company",
    "ads": "company",
    "social": "company",
    "research": "lab",
    "games": "lab",
    "music": "lab",
    "docs": "company",
    "trailers": "lab",
}
#: (endpoint, model, mode, duration, sound, video_reference, reference_image, n, pack, units)
CLASSES: list[tuple[str, str, str | None, int | None, int, int, int, int, str, int]] = []
for _model, _std, _pro in (
    ("kling-v1", 1000, 3500),
    ("kling-v1-5", 2000, 3500),
    ("kling-v1-6", 2000, 3500),
    ("kling-v2-1", 2000, 3500),
    ("kling-v2-5-turbo", 1500, 2500),
):
    for _endpoint in ("videos/text2video", "videos/image2video"):
        CLASSES.append((_endpoint, _model, "std", 5, 0, 0, 0, 1, "video", _std))
        CLASSES.append((_endpoint, _model, "pro", 10, 0, 0, 0, 1, "video", _pro * 2))
CLASSES += [
    ("videos/text2video", "kling-v2-master", None, 5, 0, 0, 0, 1, "video", 10_000),
    ("videos/text2video", "kling-v2-6", "pro", 5, 1, 0, 0, 1, "video", 5000),
    ("videos/omni-video", "kling-video-o1", "std", 5, 0, 0, 0, 1, "video", 3000),
    ("videos/omni-video", "kling-video-o1", "pro", 5, 0, 1, 0, 1, "video", 6000),
    ("images/generations", "kling-v1-5", None, None, 0, 0, 0, 2, "image", 8000),
    ("images/generations", "kling-v2-1", None, None, 0, 0, 1, 1, "image", 8000),
]
PER_UNIT = {"video": 15, "image": 375}  # credits per milli-unit x 1000 / 1000
START = datetime(2026, 1, 1, tzinfo=UTC)


def build(path: Path, tasks: int, seed: int = 7) -> float:
    """Create the ledger with ``tasks`` settled tasks; returns the seconds it took."""
    from klingcost.ledger import Ledger

    began = time.perf_counter()
    rng = random.Random(seed)
    ledger = Ledger.open(path)
    for parent in ("company", "lab"):
        ledger.set_budget(parent, limit=10**13, period="month")
    for team, parent in TEAMS.items():
        ledger.set_budget(team, limit=10**12, period="month", parent=parent)
    conn = ledger.conn
    balances: dict[tuple[str, str], int] = {}
    teams = list(TEAMS)
    chunk = 50_000
    conn.execute("BEGIN IMMEDIATE")
    for first in range(1, tasks + 1, chunk):
        holds, entries, task_rows = [], [], []
        for i in range(first, min(first + chunk, tasks + 1)):
            team = teams[i % len(teams)]
            endpoint, model, mode, duration, sound, ref, image, n, pack, units = CLASSES[
                rng.randrange(len(CLASSES))
            ]
            at = START + timedelta(seconds=rng.randrange(365 * 86400))
            stamp = at.isoformat()
            est_cost = units * PER_UNIT[pack]
            roll = rng.random()
            charged, raw, flag = units, None, "ok"
            if roll < 0.05:
                charged = units * 6 // 5
            if roll < 0.0005:
                charged, raw, flag = units, "0", "zero"
            elif roll < 0.001:
                charged, raw, flag = units, None, "absent"
            if flag == "ok":
                raw = f"{charged // 1000}" + (
                    f".{charged % 1000:03d}".rstrip("0") if charged % 1000 else ""
                )
            cost = charged * PER_UNIT[pack]
            task_id = f"8471304480{i:010d}"
            holds.append(
                (
                    i,
                    f"bulk-{i}",
                    team,
                    pack,
                    units,
                    est_cost,
                    charged,
                    cost,
                    charged - units,
                    cost - est_cost,
                    raw,
                    stamp,
                    stamp,
                    endpoint,
                    model,
                    mode,
                    duration,
                    sound,
                    ref,
                    image,
                    n,
                    task_id,
                    flag,
                )
            )
            month = stamp[:7]
            for depth, budget in enumerate((team, TEAMS[team])):
                entries.append((i, budget, depth, month, est_cost, cost))
                balances[(budget, month)] = balances.get((budget, month), 0) + cost
            task_rows.append((task_id, i, stamp))
        conn.executemany(
            "INSERT INTO holds (id, idempotency_key, team, state, pack, currency, est_units_milli,"
            " est_cost_minor, units_milli, cost_minor, variance_units_milli, variance_cost_minor,"
            " raw_deduction, meta, reserved_at, updated_at, endpoint, model, mode, duration,"
            " sound, video_reference, reference_image, n, task_id, deduction_flag, task_status)"
            " VALUES (?, ?, ?, 'settled', ?, 'credits', ?, ?, ?, ?, ?, ?, ?, '{}', ?, ?, ?, ?,"
            " ?, ?, ?, ?, ?, ?, ?, ?, 'succeed')",
            holds,
        )
        conn.executemany(
            "INSERT INTO hold_entries (hold_id, budget, depth, period_key, reserved, charged)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            entries,
        )
        conn.executemany(
            "INSERT INTO tasks (task_id, hold_id, attached_at) VALUES (?, ?, ?)", task_rows
        )
    conn.executemany(
        "INSERT INTO balances (budget, period_key, posted, held) VALUES (?, ?, ?, 0)",
        [(b, k, v) for (b, k), v in sorted(balances.items())],
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    ledger.close()
    return time.perf_counter() - began


# --- the measurements, each run in a fresh process ----------------------------------------


def _report(path: str) -> Any:
    from klingcost.ledger import Ledger
    from klingcost.reports import spending_report

    with Ledger.open(path) as ledger:
        return len(spending_report(ledger, by="team,month").rows)


def _report_fine(path: str) -> Any:
    from klingcost.ledger import Ledger
    from klingcost.reports import spending_report

    with Ledger.open(path) as ledger:
        return len(spending_report(ledger, by="team,model,mode,day").rows)


def _raw_group_by(path: str) -> Any:
    import sqlite3

    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT team, substr(reserved_at, 1, 7), COUNT(*), SUM(est_cost_minor), SUM(cost_minor),"
        " SUM(CASE WHEN state IN ('held', 'submitted', 'unknown') THEN est_cost_minor END)"
        " FROM holds GROUP BY 1, 2"
    ).fetchall()
    conn.close()
    return len(rows)


def _export(path: str) -> Any:
    from klingcost.ledger import Ledger
    from klingcost.reports import export_tasks_csv

    with Ledger.open(path) as ledger, open(path + ".export.csv", "w", newline="") as out:
        export_tasks_csv(ledger, out)
    return os.path.getsize(path + ".export.csv")


def _plain_csv(path: str) -> Any:
    import csv
    import sqlite3

    conn = sqlite3.connect(path)
    with open(path + ".plain.csv", "w", newline="") as out:
        writer = csv.writer(out)
        cursor = conn.execute("SELECT * FROM holds")
        writer.writerow([d[0] for d in cursor.description])
        for row in cursor:
            writer.writerow(row)
    conn.close()
    return os.path.getsize(path + ".plain.csv")


def _reconcile(path: str) -> Any:
    from klingcost.ledger import Ledger
    from klingcost.reconcile import reconcile

    with Ledger.open(path) as ledger:
        result = reconcile(ledger, tolerance="1%")
        return f"{len(result.classes)} classes, {len(result.drifting)} drifting"


def _check(path: str) -> Any:
    from klingcost.ledger import Ledger

    with Ledger.open(path) as ledger:
        return len(ledger.check())


MEASURES = {
    "report": _report,
    "report_fine": _report_fine,
    "raw_group_by": _raw_group_by,
    "export": _export,
    "plain_csv": _plain_csv,
    "reconcile": _reconcile,
    "check": _check,
}


def _peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM: ru_maxrss survives exec on Linux,
    so a child would report its parent's peak)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(name: str, path: str, traced: bool) -> None:
    # Imports first: the figures are the call's own, in a process that has loaded klingcost.
    import klingcost.calibration
    import klingcost.reconcile
    import klingcost.reports  # noqa: F401

    if traced:
        tracemalloc.start()
    start = time.perf_counter()
    result = MEASURES[name](path)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] if traced else None
    rss = _peak_rss()
    print(json.dumps({"seconds": seconds, "rss": rss, "traced_peak": peak, "result": result}))


def run(name: str, path: Path, traced: bool = False) -> dict[str, Any]:
    command = [sys.executable, __file__, "--measure", name, "--db", str(path)]
    if traced:
        command.append("--traced")
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--db", help="reuse (or keep) the ledger at this path")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each (median)")
    parser.add_argument("--measure", choices=sorted(MEASURES), help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.db, args.traced)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "ledger.db"
        if not path.exists():
            seconds = build(path, args.tasks)
            print(f"built {args.tasks:,} settled tasks in {seconds:.1f} s: {path}")
        print(f"command: {sys.executable} {' '.join(sys.argv)}")
        mb = 1024 * 1024
        results: dict[str, dict[str, Any]] = {}
        for name in ("raw_group_by", "report", "report_fine", "plain_csv", "export", "reconcile"):
            times = []
            for _ in range(args.rounds):
                outcome = run(name, path)
                times.append(outcome["seconds"])
            times.sort()
            traced = run(name, path, traced=True)
            results[name] = {**outcome, "median": times[len(times) // 2], "all": times}
            print(
                f"{name:13} median {times[len(times) // 2]:7.3f} s (runs: "
                f"{', '.join(f'{t:.3f}' for t in times)}); peak RSS {outcome['rss'] / mb:5.1f} MB,"
                f" Python peak (tracemalloc) {traced['traced_peak'] / mb:5.1f} MB;"
                f" {outcome['result']}"
            )
        report = results["report"]["median"]
        fine = results["report_fine"]["median"]
        export, plain = results["export"]["median"], results["plain_csv"]["median"]
        rec = results["reconcile"]["median"]
        peak = max(r["rss"] for r in results.values() if r is not results["raw_group_by"]) / mb
        print()
        print(f"grouped report (team,month):            {report:6.3f} s  (target <= 0.5 s)")
        print(f"grouped report (team,model,mode,day):   {fine:6.3f} s  (target <= 0.5 s)")
        print(f"  a GROUP BY over the raw rows:         {results['raw_group_by']['median']:6.3f} s")
        print(
            f"CSV export of every task:               {export:6.3f} s"
            f"  vs plain cursor -> csv.writer {plain:6.3f} s = {export / plain:4.2f}x"
            " (target <= 1x)"
        )
        print(f"reconcile:                              {rec:6.3f} s  (target <= 2 s)")
        print(f"peak RSS of any of them:                {peak:6.1f} MB (target <= 100 MB)")
        check = run("check", path)
        print(f"ledger check: {check['result']} differences ({check['seconds']:.1f} s)")


if __name__ == "__main__":
    main()
