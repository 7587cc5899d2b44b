"""The long soak: the load-with-faults test, wider and longer, repeated; prints its figures.

    .venv/bin/python bench/soak.py                         # 16 workers, K=1000, 3 runs
    .venv/bin/python bench/soak.py --workers 8 --jobs 96 --rounds 2 --runs 1   # = the CI test
    .venv/bin/python bench/soak.py --minutes 30            # repeat runs for 30 minutes

Each run is ``tests/workers.py``'s ``run_load``: spawned workers submit through their own
``GuardedClient`` to the fake Kling API under a parent budget that admits exactly ``--jobs``
jobs, while the API injects ``--rounds`` rounds of faults spread over the run; a monitor
samples every budget; then ``klingcost sync`` and ``klingcost ledger check``. Every invariant
of the CI test is checked on every run (``workers.violations``); the exit code is 1 if any
run broke one. Each run uses its own seed (``--seed`` plus the run's number), printed with
its figures, so a failing run can be repeated with ``--seed S --runs 1``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from workers import LoadPlan, LoadRun, fault_label, figures, run_load, violations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=16, help="worker processes (16)")
    parser.add_argument("--teams", type=int, default=4, help="teams under the parent (4)")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs the parent admits (1000)")
    parser.add_argument("--rounds", type=int, default=12, help="rounds of the fault mix (12)")
    parser.add_argument("--runs", type=int, default=3, help="runs, unless --minutes (3)")
    parser.add_argument("--minutes", type=float, help="repeat runs for this long instead")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first run (1)")
    parser.add_argument("--json", action="store_true", help="print each run's figures as JSON")
    args = parser.parse_args()

    deadline = time.monotonic() + args.minutes * 60 if args.minutes else None
    totals: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    broken = 0
    run_number = 0
    while (deadline is None and run_number < args.runs) or (
        deadline is not None and time.monotonic() < deadline
    ):
        plan = LoadPlan(
            workers=args.workers,
            teams=args.teams,
            jobs=args.jobs,
            small_team_jobs=max(1, args.jobs // 10),
            fault_rounds=args.rounds,
            seed=args.seed + run_number,
            spread_faults=True,
        )
        with tempfile.TemporaryDirectory(prefix="klingcost-soak-") as workdir:
            run = run_load(plan, Path(workdir))
        problems = violations(run)
        broken += bool(problems)
        _report(run_number, plan, run, problems, as_json=args.json)
        totals["runs"] += 1
        totals["jobs admitted"] += plan.jobs
        totals["submissions sent"] += run.posts
        totals["tasks settled"] += sum(1 for h in run.holds if h.state == "settled")
        totals["unknown holds resolved by sync"] += run.states_after_load.get("unknown", 0)
        totals["budget samples"] += run.monitor_samples
        totals["seconds"] += round(run.seconds)
        faults.update(fault_label(f) for f in run.consumed_faults)
        run_number += 1
    print(f"\nsoak: {dict(totals)}")
    print(f"faults injected: {dict(sorted(faults.items()))} ({sum(faults.values())} in all)")
    print(f"runs that broke an invariant: {broken}")
    return 1 if broken else 0


def _report(
    number: int, plan: LoadPlan, run: LoadRun, problems: list[str], *, as_json: bool
) -> None:
    data = figures(run)
    if as_json:
        print(json.dumps({"run": number, "seed": plan.seed, "problems": problems, **data}))
        return
    print(f"\nrun {number} (seed {plan.seed}): {'BROKEN' if problems else 'every invariant held'}")
    for name, value in data.items():
        print(f"  {name}: {value}")
    for problem in problems:
        print(f"  BROKEN: {problem}")


if __name__ == "__main__":
    sys.exit(main())
