"""Real worker processes for the load, crash and soak runs, and the load harness they share.

Two ways in:

* :func:`load_worker` is the target of a spawned process in the load test and in
  ``bench/soak.py``: it submits through its own :class:`GuardedClient` until a budget refuses
  it, settles every other job it got, and reports what happened.
* ``python tests/workers.py submit --ledger L --base-url U --team T [--external-ids] [--settle]``
  runs one guarded job (and its settle) in a fresh process. With ``KLINGCOST_PAUSE_AT`` set it
  stops at that test point (see :mod:`klingcost._testpoints`) for the crash test to kill it.

:func:`run_load` runs the whole load-with-faults scenario (fake server, budgets, faults,
workers, a monitor sampling every budget, ``klingcost sync``, ``klingcost ledger check``) and
returns what it saw; :func:`violations` checks every invariant on it. The CI test and the soak
share both, so the soak checks exactly what CI checks, only longer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing as mp
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx

ENDPOINT = "videos/text2video"
#: kling-v1-5, pro, 10 s: 7 video units = 105,000 credits on the bundled sheet.
BODY: dict[str, Any] = {
    "model_name": "kling-v1-5",
    "prompt": "a ship in space",
    "mode": "pro",
    "duration": "10",
}
COST = 105_000
UNITS_MILLI = 7_000
KEY = "hk-test-SECRET-4f9c2a7d1e8b"
#: Retries of a rate-limited submission: more than the faults a run queues, so a rate limit
#: never turns into a refusal, and tiny waits so the test stays quick.
MAX_RETRIES = 1_000
BACKOFF = 0.002

# --- the fault mix ------------------------------------------------------------------------

#: One round of faults on job submissions: (kind, extra fields, how many). The comment says
#: what the guard must make of each.
FAULT_ROUND: tuple[tuple[str, dict[str, Any], int], ...] = (
    ("rate_limit", {}, 3),  # 429 1302: retried, one hold
    ("concurrency", {}, 2),  # 429 1303: retried, one hold
    ("server_error", {"create": True}, 2),  # 500 after creating: unknown; sync settles it
    ("unavailable", {}, 2),  # 503, nothing created: unknown; sync voids it
    ("timeout_after_accept", {"ms": 6000}, 2),  # created, answer late: unknown; sync settles
    ("drop", {"create": True}, 2),  # created, connection dropped: unknown; sync settles
    ("drop", {}, 2),  # dropped before creating: unknown; sync voids it
    ("malformed", {"create": True}, 1),  # created, unreadable answer: unknown; sync settles
    ("policy", {}, 1),  # 400 1301: definite, voided at once
    ("fail_task", {}, 1),  # the task fails: voided, not charged
    ("deduction", {"value": None}, 1),  # no final_unit_deduction: settled at the estimate
)
RETRIED = frozenset({"rate_limit", "concurrency"})
DEFINITE = frozenset({"policy"})
#: Faults after which the submission's outcome is unknown, and whether a task exists.
AMBIGUOUS_WITH_TASK = frozenset({"server_error", "timeout_after_accept", "drop+", "malformed"})
AMBIGUOUS_WITHOUT_TASK = frozenset({"unavailable", "drop"})


def fault_label(spec: dict[str, Any]) -> str:
    """A fault's name in the figures: ``drop+`` is a drop after the task was created."""
    return str(spec["kind"]) + ("+" if spec["kind"] == "drop" and spec.get("create") else "")


def fault_plan(rounds: int, seed: int) -> list[dict[str, Any]]:
    """``rounds`` rounds of :data:`FAULT_ROUND`, shuffled; each fault fires once, on a POST."""
    plan = [
        {"kind": kind, "method": "POST", "times": 1, **extra}
        for _ in range(rounds)
        for kind, extra, count in FAULT_ROUND
        for _ in range(count)
    ]
    random.Random(seed).shuffle(plan)
    return plan


# --- one load worker (a spawned process) --------------------------------------------------


def load_worker(
    ledger_path: str,
    base_url: str,
    team: str,
    index: int,
    read_timeout: float,
    ready: Any,
    start: Any,
    results: Any,
) -> None:
    """Submit through the guard until a budget refuses; put a summary on ``results``."""
    from klingcost import errors
    from klingcost.api.client import KlingClient
    from klingcost.guard import GuardedClient
    from klingcost.ledger import Ledger

    logging.getLogger("klingcost").setLevel(logging.ERROR)  # retries are expected here
    outcome: dict[str, Any] = {
        "worker": index,
        "team": team,
        "accepted": 0,
        "settled": 0,
        "voided": 0,
        "refused_by": None,
        "failures": {},
        "unexpected": [],
    }
    failures: Counter[str] = Counter()
    timeout = httpx.Timeout(read_timeout, connect=10.0)
    try:
        with contextlib.ExitStack() as stack:
            ledger = stack.enter_context(Ledger.open(ledger_path, timeout=60))
            client = stack.enter_context(
                KlingClient(
                    KEY,
                    base_url=base_url,
                    timeout=timeout,
                    max_retries=MAX_RETRIES,
                    backoff=BACKOFF,
                    max_backoff=BACKOFF * 4,
                )
            )
            guard = stack.enter_context(
                GuardedClient(team, ledger=ledger, client=client, external_ids=True)
            )
            ready.put(index)
            start.wait()
            while True:
                try:
                    submission = guard.submit(ENDPOINT, BODY)
                except errors.BudgetExceeded as exc:
                    outcome["refused_by"] = exc.team
                    break
                except errors.KlingAPIError as exc:
                    failures[type(exc).__name__] += 1
                    continue
                outcome["accepted"] += 1
                if outcome["accepted"] % 2 == 0:  # settle half here, while others reserve
                    resolution = guard.settle(submission)
                    if resolution.action in ("settled", "voided"):
                        outcome[resolution.action] += 1
    except Exception as exc:  # every other error fails the run
        outcome["unexpected"].append(f"{type(exc).__name__}: {exc}")
    outcome["failures"] = dict(failures)
    results.put(outcome)


# --- the monitor --------------------------------------------------------------------------


class Monitor(threading.Thread):
    """Samples every budget while the workers run; records any moment one is over its limit.

    Every ``check_every`` samples it also recomputes the running balances (``Ledger.check``):
    they must agree with the entries at every moment, not only at the end.
    """

    def __init__(self, path: Path, *, interval: float = 0.002, check_every: int = 25) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.interval = interval
        self.check_every = check_every
        self.samples = 0
        self.checks = 0
        self.breaches: list[str] = []
        self.max_used: dict[str, int] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        from klingcost.ledger import Ledger

        try:
            with Ledger.open(self.path, timeout=60) as ledger:
                while not self._stop_event.is_set():
                    self.sample(ledger)
                    self._stop_event.wait(self.interval)
                self.sample(ledger)
        except Exception as exc:  # a monitor that cannot read is a failed run
            self.breaches.append(f"monitor failed: {type(exc).__name__}: {exc}")

    def sample(self, ledger: Any) -> None:
        for status in ledger.budgets():
            used = status.posted + status.held
            self.max_used[status.team] = max(self.max_used.get(status.team, 0), used)
            if used > status.limit:
                self.breaches.append(
                    f"sample {self.samples}: budget {status.team} at {used} of {status.limit}"
                )
        self.samples += 1
        if self.samples % self.check_every == 0:
            self.checks += 1
            self.breaches += [f"sample {self.samples}: {p}" for p in ledger.check()]

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=60)


class Injector(threading.Thread):
    """Queues the planned faults a few at a time, spread over the first ~70% of the jobs."""

    def __init__(self, fake: Any, plan: Sequence[dict[str, Any]], jobs: int) -> None:
        super().__init__(daemon=True)
        self.fake = fake
        self.plan = list(plan)
        self.injected = 0
        spacing = max(1, int(jobs * 0.7) // max(1, len(self.plan)))
        self.thresholds = [i * spacing for i in range(len(self.plan))]
        self._stop_event = threading.Event()

    def run(self) -> None:
        while self.injected < len(self.plan) and not self._stop_event.is_set():
            posts = sum(1 for r in list(self.fake.state.requests) if r["method"] == "POST")
            if posts >= self.thresholds[self.injected] and len(self.fake.state.faults) < 3:
                self.fake.set_faults(self.plan[self.injected])
                self.injected += 1
                continue
            self._stop_event.wait(0.002)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=60)


# --- the whole run ------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadPlan:
    """What a load run does. The parent ``company`` admits exactly ``jobs`` jobs of COST."""

    workers: int = 8
    teams: int = 4
    jobs: int = 96
    #: The last team's own limit, in jobs: it is refused by its own budget, the others mostly
    #: by the parent's.
    small_team_jobs: int = 10
    fault_rounds: int = 2
    read_timeout: float = 2.0
    seed: int = 20240611
    #: Queue every fault at once (they hit the first jobs) or spread them over the run.
    spread_faults: bool = False

    def team_limits(self) -> dict[str, int]:
        big = (self.jobs + 1) // 2  # three of these exceed the parent: the parent binds
        limits = {f"team-{i}": big * COST for i in range(self.teams - 1)}
        limits[f"team-{self.teams - 1}"] = self.small_team_jobs * COST
        return limits


@dataclass
class LoadRun:
    """Everything a load run saw; :func:`violations` judges it, :func:`figures` sums it up."""

    plan: LoadPlan
    seconds: float
    exit_codes: list[int | None]
    outcomes: list[dict[str, Any]]
    monitor_samples: int
    monitor_checks: int
    breaches: list[str]
    max_used: dict[str, int]
    limits: dict[str, int]
    used_after_load: dict[str, int]
    used_final: dict[str, int]
    states_after_load: dict[str, int]
    counted_after_load: list[int]
    planned_faults: list[dict[str, Any]]
    consumed_faults: list[dict[str, Any]]
    faulted_kinds: list[str]
    posts: int
    sync_runs: list[tuple[int, dict[str, Any] | str]]
    check_exit: int
    check_output: str
    holds: list[Any]
    fake_tasks: list[dict[str, Any]]
    fake_external: dict[str, str | None]
    fake_charged: Fraction
    voids: dict[int, str] = field(default_factory=dict)


def cli(args: Sequence[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``klingcost ARGS`` in this process; (exit code, stdout and stderr).

    The CLI attaches a handler to the ``klingcost`` logger on first use; it is removed again
    so that a later log line does not go to a closed stream.
    """
    from click.testing import CliRunner

    from klingcost.cli import main

    logger = logging.getLogger("klingcost")
    handlers, level = list(logger.handlers), logger.level
    try:
        result = CliRunner().invoke(main, list(args), env=env)
    finally:
        for handler in logger.handlers[:]:
            if handler not in handlers:
                logger.removeHandler(handler)
        logger.setLevel(level)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _gather(queue: Any, processes: Sequence[Any], *, timeout: float) -> list[Any]:
    """One item per process from ``queue``; fail early if a process died without putting it."""
    import queue as queues

    items: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(items) < len(processes):
        try:
            items.append(queue.get(timeout=0.5))
        except queues.Empty:
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{len(items)} of {len(processes)} workers reported; exit codes "
                    f"{[p.exitcode for p in processes]}"
                ) from None
    return items


def run_load(plan: LoadPlan, workdir: Path) -> LoadRun:
    """Run the load-with-faults scenario once, in ``workdir``; see the module's docstring."""
    from klingcost.fake_server import FakeKling
    from klingcost.ledger import Ledger

    if plan.jobs > 3000:  # the fault accounting reads the fake server's request log
        raise ValueError("the fake server keeps its last 10,000 requests: at most 3000 jobs")
    path = workdir / "ledger.db"
    limits = {"company": plan.jobs * COST, **plan.team_limits()}
    with Ledger.open(path) as ledger:
        ledger.set_budget("company", limit=limits["company"], period="month")
        for team, limit in plan.team_limits().items():
            ledger.set_budget(team, limit=limit, period="month", parent="company")
    faults = fault_plan(plan.fault_rounds, plan.seed)
    teams = list(plan.team_limits())
    started = time.monotonic()
    with FakeKling(api_key=KEY, done_after=0) as fake:
        context = mp.get_context("spawn")
        ready, start, results = context.Queue(), context.Event(), context.Queue()
        processes = [
            context.Process(
                target=load_worker,
                args=(
                    str(path),
                    fake.base_url,
                    teams[n % len(teams)],
                    n,
                    plan.read_timeout,
                    ready,
                    start,
                    results,
                ),
            )
            for n in range(plan.workers)
        ]
        for process in processes:
            process.start()
        try:
            _gather(ready, processes, timeout=120)  # every worker has the ledger open first
            monitor = Monitor(path)
            injector = Injector(fake, faults, plan.jobs)
            if not plan.spread_faults:
                fake.set_faults(*faults)
                injector.injected = len(faults)
            monitor.start()
            injector.start()
            start.set()
            outcomes = _gather(results, processes, timeout=600)
        finally:
            for process in processes:
                process.join(timeout=60)
                if process.is_alive():
                    process.kill()
                    process.join()
        injector.stop()
        monitor.stop()
        with Ledger.open(path) as ledger:
            used_after_load = {s.team: s.posted + s.held for s in ledger.budgets()}
            after_load = list(ledger.holds())
        states_after_load = Counter(h.state for h in after_load)
        counted_after_load = [h.id for h in after_load if h.state != "voided"]
        leftover = len(fake.state.faults)
        fake.clear_faults()
        posts = fake.requests("POST")
        faulted_kinds = [r["fault"] for r in posts if r["fault"]]
        # Faults are used in the order they were queued, so those used are a prefix of the plan.
        consumed = faults[: injector.injected - leftover]
        # Sync through the CLI, with the API failing some queries: rate limits (retried) and
        # one 5xx (reported; the second pass picks the hold up).
        fake.set_faults(
            {"kind": "rate_limit", "method": "GET", "times": 2},
            {"kind": "server_error", "method": "GET", "times": 1},
        )
        env = {
            "KLINGCOST_API_KEY": KEY,
            "KLINGCOST_BASE_URL": fake.base_url,
            "KLINGCOST_LEDGER": str(path),
            "KLINGCOST_HOME": str(workdir / "home"),
            "KLINGCOST_PRICING": "",
        }
        sync_runs: list[tuple[int, dict[str, Any] | str]] = []
        # A hold whose answer was lost is voided on two "no such task" answers here, with no
        # window between them (the default asks for 3 over an hour: the run compresses it), so
        # three passes void every such hold even when the 5xx hit one of them first.
        evidence = ["--not-found-answers", "2", "--not-found-window", "0"]
        for _ in range(3):
            code, output = cli(["sync", "--json", *evidence], env)
            try:
                sync_runs.append((code, json.loads(output[output.index("{") :])))
            except ValueError:
                sync_runs.append((code, output))
        check_exit, check_output = cli(["ledger", "check"], env)
        fake_ledger = fake.ledger()
        fake_external = {t.task_id: t.external_task_id for t in fake.state.tasks.values()}
        fake_charged = fake.charged()
    with Ledger.open(path) as ledger:
        holds = list(ledger.holds())
        used_final = {s.team: s.posted + s.held for s in ledger.budgets()}
        voids = {e.hold_id: str(e.data.get("reason")) for e in ledger.events(kind="void")}
    return LoadRun(
        plan=plan,
        seconds=time.monotonic() - started,
        exit_codes=[p.exitcode for p in processes],
        outcomes=outcomes,
        monitor_samples=monitor.samples,
        monitor_checks=monitor.checks,
        breaches=monitor.breaches,
        max_used=monitor.max_used,
        limits=limits,
        used_after_load=used_after_load,
        used_final=used_final,
        states_after_load={str(k): n for k, n in states_after_load.items()},
        counted_after_load=counted_after_load,
        planned_faults=faults,
        consumed_faults=consumed,
        faulted_kinds=faulted_kinds,
        posts=len(posts),
        sync_runs=sync_runs,
        check_exit=check_exit,
        check_output=check_output,
        holds=holds,
        fake_tasks=fake_ledger["tasks"],
        fake_external=fake_external,
        fake_charged=fake_charged,
        voids={k: v for k, v in voids.items() if k is not None},
    )


def violations(run: LoadRun) -> list[str]:
    """Every invariant the run broke, as sentences (an empty list: it held)."""
    found: list[str] = []

    def expect(ok: bool, message: str) -> None:
        if not ok:
            found.append(message)

    consumed = Counter(fault_label(f) for f in run.consumed_faults)
    # The workers ran to the end without surprises.
    expect(run.exit_codes == [0] * len(run.exit_codes), f"worker exit codes {run.exit_codes}")
    for outcome in run.outcomes:
        expect(not outcome["unexpected"], f"worker {outcome['worker']}: {outcome['unexpected']}")
        expect(outcome["refused_by"] is not None, f"worker {outcome['worker']} was never refused")
    # 1. At no moment was any budget over its limit; the balances always agreed with entries.
    expect(run.monitor_samples > 0, "the monitor took no sample")
    expect(not run.breaches, "over a limit or out of balance: " + "; ".join(run.breaches[:5]))
    for team, used in run.max_used.items():
        expect(used <= run.limits[team], f"{team} peaked at {used} over {run.limits[team]}")
    # The parent admitted exactly its K jobs: full, and not one credit over.
    expect(
        run.used_after_load.get("company") == run.limits["company"],
        f"after the load company holds {run.used_after_load.get('company')}, "
        f"not exactly {run.limits['company']} ({run.plan.jobs} jobs)",
    )
    expect(
        len(run.counted_after_load) == run.plan.jobs,
        f"{len(run.counted_after_load)} holds counted after the load, not {run.plan.jobs}",
    )
    # Each fault did what it should have: every planned one fired, in the order queued.
    expect(
        len(run.consumed_faults) == len(run.planned_faults),
        f"{len(run.planned_faults) - len(run.consumed_faults)} planned faults never fired",
    )
    expect(
        run.faulted_kinds == [f["kind"] for f in run.consumed_faults],
        "the faults fired out of the order queued",
    )
    ambiguous = sum(consumed[label] for label in AMBIGUOUS_WITH_TASK | AMBIGUOUS_WITHOUT_TASK)
    expect(
        run.states_after_load.get("unknown", 0) == ambiguous,
        f"{run.states_after_load.get('unknown', 0)} unknown holds after the load; "
        f"{ambiguous} ambiguous faults fired",
    )
    # 2. sync resolved every unknown hold; the ledger checks clean.
    last_code, last = run.sync_runs[-1]
    expect(last_code == 0, f"the last sync exited {last_code}: {last}")
    expect(
        not any(h.is_open for h in run.holds),
        f"open holds after sync: {[(h.id, h.state) for h in run.holds if h.is_open]}",
    )
    expect(run.check_exit == 0, f"ledger check: {run.check_output}")
    for team, used in run.used_final.items():
        expect(used <= run.limits[team], f"after sync {team} is at {used} of {run.limits[team]}")
    # 3. Every accepted job is in the ledger exactly once.
    task_holds = [h for h in run.holds if h.task_id is not None]
    by_task = Counter(h.task_id for h in task_holds)
    fake_ids = {t["task_id"] for t in run.fake_tasks}
    expect(len(fake_ids) == len(run.fake_tasks), "the fake server reports a task twice")
    expect(
        not [t for t, n in by_task.items() if n > 1],
        f"tasks on two holds: {[t for t, n in by_task.items() if n > 1]}",
    )
    expect(
        set(by_task) == fake_ids,
        f"tasks not in the ledger: {sorted(fake_ids - set(by_task))[:5]}; "
        f"holds with no such task: {sorted(set(by_task) - fake_ids)[:5]}",
    )
    for hold in task_holds:
        external = run.fake_external.get(str(hold.task_id))
        expect(
            external == hold.meta.get("external_task_id"),
            f"hold {hold.id} and task {hold.task_id} disagree on external_task_id",
        )
    status = {t["task_id"]: t["status"] for t in run.fake_tasks}
    for hold in task_holds:
        want = {"succeed": "settled", "failed": "voided"}.get(status.get(str(hold.task_id), ""))
        expect(hold.state == want, f"hold {hold.id} is {hold.state}; its task says {want}")
    # 4. The settled charges add up to what the fake server charged, to the milli-unit.
    settled = [h for h in run.holds if h.state == "settled"]
    units = sum(h.units_milli or 0 for h in settled)
    expect(
        Fraction(units, 1000) == run.fake_charged,
        f"settled {units} milli-units; the server charged {run.fake_charged} units",
    )
    expect(
        sum(h.cost_minor or 0 for h in settled) == COST * len(settled),
        "settled costs differ from the estimates (no drift was injected)",
    )
    # 5. Every void has its documented reason, in the numbers the faults predict.
    reasons = Counter(_void_kind(reason) for reason in run.voids.values())
    no_task = sum(consumed[label] for label in AMBIGUOUS_WITHOUT_TASK)
    expect(
        reasons["no task"] == no_task,
        f"{reasons['no task']} holds voided as never created; {no_task} faults created nothing",
    )
    expect(
        reasons["refused"] == sum(consumed[label] for label in DEFINITE),
        f"{reasons['refused']} holds voided as refused; {sum(consumed[k] for k in DEFINITE)} "
        "definite faults fired",
    )
    expect(
        reasons["task failed"] == consumed["fail_task"],
        f"{reasons['task failed']} holds voided for a failed task; "
        f"{consumed['fail_task']} tasks were made to fail",
    )
    expect(not reasons["other"], f"voids with an unexpected reason: {run.voids}")
    # The K jobs counted when the load ended: each one settled, or voided for a documented
    # reason (never created, or the task failed); none lost, none left open.
    final = {h.id: h for h in run.holds}
    ends = Counter(
        final[i].state if final[i].state == "settled" else _void_kind(run.voids.get(i, ""))
        for i in run.counted_after_load
    )
    expect(
        set(ends) <= {"settled", "no task", "task failed"},
        f"the jobs counted after the load ended as {dict(ends)}",
    )
    expect(
        ends["no task"] == no_task,
        f"{ends['no task']} of the counted jobs were never created; {no_task} faults say so",
    )
    return found


def _void_kind(reason: str) -> str:
    if reason.startswith("no task"):
        return "no task"
    if reason.startswith("submission refused"):
        return "refused"
    if reason.startswith("task failed"):
        return "task failed"
    return "other"


def figures(run: LoadRun) -> dict[str, Any]:
    """The run summed up for people (the README's table and the soak's output)."""
    accepted = sum(o["accepted"] for o in run.outcomes)
    settled = [h for h in run.holds if h.state == "settled"]
    first_sync = run.sync_runs[0][1]
    return {
        "workers": run.plan.workers,
        "jobs admitted by the parent budget (K)": run.plan.jobs,
        "submissions sent (POSTs, retries included)": run.posts,
        "jobs the workers saw accepted": accepted,
        "tasks created on the server": len(run.fake_tasks),
        "tasks settled": len(settled),
        "refusals (one per worker)": sum(1 for o in run.outcomes if o["refused_by"]),
        "faults injected": dict(
            sorted(Counter(fault_label(f) for f in run.consumed_faults).items())
        ),
        "errors the workers saw": dict(
            sum((Counter(o["failures"]) for o in run.outcomes), Counter())
        ),
        "holds unknown after the load": run.states_after_load.get("unknown", 0),
        "budget samples (balance checks)": f"{run.monitor_samples} ({run.monitor_checks})",
        "peak use / limit": {
            team: f"{run.max_used.get(team, 0)} / {limit}" for team, limit in run.limits.items()
        },
        "first sync": first_sync,
        "units charged by the server / settled": (
            f"{run.fake_charged} / {Fraction(sum(h.units_milli or 0 for h in settled), 1000)}"
        ),
        "seconds": round(run.seconds, 1),
    }


# --- one guarded job in its own process (the crash test) ----------------------------------


def _submit_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="workers.py submit")
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--team", required=True)
    parser.add_argument("--external-ids", action="store_true")
    parser.add_argument("--settle", action="store_true")
    args = parser.parse_args(argv)

    from klingcost.api.client import KlingClient
    from klingcost.guard import GuardedClient

    with (
        KlingClient(KEY, base_url=args.base_url, max_retries=0) as client,
        GuardedClient(
            args.team, ledger=args.ledger, client=client, external_ids=args.external_ids
        ) as guard,
    ):
        submission = guard.submit(ENDPOINT, BODY)
        print(json.dumps({"hold": submission.hold.id, "task": submission.task_id}), flush=True)
        if args.settle:
            resolution = guard.settle(submission)
            print(json.dumps({"action": resolution.action}), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "submit":
        sys.exit("usage: workers.py submit --ledger L --base-url U --team T [...]")
    sys.exit(_submit_main(sys.argv[2:]))
