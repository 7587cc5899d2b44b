"""Load with faults: 8 processes submit through the guard while the API fails in every way.

Eight spawned workers (four teams under one parent that admits exactly K jobs) submit through
their own :class:`GuardedClient` to the fake Kling API, which answers 429s (retried), 5xx with
and without creating the task, late answers past the client's timeout, dropped connections with
and without a task, an unreadable answer, a policy refusal, a failing task and a missing
deduction. A monitor samples every budget all along. Then ``klingcost sync`` (twice: the API
fails one query of the first pass) and ``klingcost ledger check``.

The invariants (see ``workers.violations``): no budget ever over its limit and the balances
always equal to the entries; the parent exactly full after the load; every fault with the
outcome the guard documents; every task on exactly one hold and every hold's task on the
server; every unknown hold resolved; the settled units equal to what the server charged.

The same run, longer and wider, is ``python bench/soak.py``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from workers import COST, LoadPlan, figures, run_load, violations

PLAN = LoadPlan(workers=8, teams=4, jobs=96, small_team_jobs=10, fault_rounds=2)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])  # three runs: a race shows in some runs, not all
def test_eight_workers_against_a_failing_api_never_overspend_or_lose_a_job(
    tmp_path: Path, seed: int
) -> None:
    run = run_load(replace(PLAN, seed=seed), tmp_path)
    problems = violations(run)
    assert problems == [], "\n".join(problems) + f"\nfigures: {figures(run)}"
    # What the run must have exercised, for the figures to mean something.
    kinds = {f["kind"] for f in run.consumed_faults}
    assert kinds >= {"rate_limit", "server_error", "timeout_after_accept", "drop", "unavailable"}
    assert run.states_after_load.get("unknown", 0) >= 10
    assert run.monitor_samples >= 20
    first_code, first = run.sync_runs[0]
    assert first_code == 1 and isinstance(first, dict) and len(first["errors"]) == 1
    # The parent refused some (a team's own budget may have refused others first).
    assert "company" in {o["refused_by"] for o in run.outcomes}
    settled = [h for h in run.holds if h.state == "settled"]
    assert len(settled) <= PLAN.jobs
    assert run.used_after_load["company"] == PLAN.jobs * COST
