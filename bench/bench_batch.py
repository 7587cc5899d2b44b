"""Batch estimation beside its floor: ``klingcost estimate`` of a 100,000-line JSON Lines file
against a Python process that reads the same file and ``json.loads`` each line.

Run it with ``.venv/bin/python bench/bench_batch.py`` (``--lines N``, ``--runs N``, default
100,000 lines and 5 runs). Each command is a whole process, output to /dev/null, the commands
alternating run by run; the median and minimum of each and the ratio to the floor are printed.

Two files, both of the four endpoints, every model and a few invalid lines:

* ``repeated``: bench_pricing's mix, 18 distinct lines repeated (the file of issue 14, whose
  reach is <= 1.5x the floor). klingcost prices each distinct line once per run.
* ``distinct``: the same mix with a different prompt on every line, so no line repeats and
  nothing is reused: the per-line cost of validating and pricing, shown for honesty.

It is a benchmark, not a test: it exits 0 either way (``--check``: 1 when the reach is missed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_pricing import write_batch

PYTHON = sys.executable
KLINGCOST = str(Path(PYTHON).with_name("klingcost"))
FLOOR = (
    "import json, sys\n"
    "with open(sys.argv[1], encoding='utf-8') as f:\n"
    "    rows = [json.loads(line) for line in f if line.strip()]\n"
)


def write_distinct(source: Path, target: Path) -> None:
    """``source`` with a different prompt on every line that has one."""
    with source.open(encoding="utf-8") as lines, target.open("w", encoding="utf-8") as out:
        for number, line in enumerate(lines, start=1):
            job = json.loads(line)
            if "prompt" in job["body"]:
                job["body"]["prompt"] = f"{job['body']['prompt']} #{number}"
            out.write(json.dumps(job, ensure_ascii=False) + "\n")


def run_once(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=env)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000, help="lines per file")
    parser.add_argument("--runs", type=int, default=5, help="runs per command (default 5)")
    parser.add_argument(
        "--distinct-runs", type=int, default=1, help="runs on the distinct file (default 1)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the reach is missed")
    args = parser.parse_args()
    drop = {"KLINGCOST_PRICING", "PYTHONDONTWRITEBYTECODE"}  # see bench_startup.py
    env = {k: v for k, v in os.environ.items() if k not in drop}
    missed = []
    print(f"klingcost estimate of a {args.lines:,}-line batch, whole process, > /dev/null")
    print("runs per command alternate; median, min, median / the floor's median")
    with tempfile.TemporaryDirectory() as tmp:
        repeated = Path(tmp) / "repeated.jsonl"
        distinct = Path(tmp) / "distinct.jsonl"
        write_batch(repeated, args.lines)
        write_distinct(repeated, distinct)
        for label, path in (("repeated", repeated), ("distinct", distinct)):
            commands = {
                "floor: python reads + json.loads each line": [PYTHON, "-c", FLOOR, str(path)],
                "klingcost estimate FILE": [KLINGCOST, "estimate", str(path)],
                "klingcost estimate --json FILE": [KLINGCOST, "estimate", "--json", str(path)],
            }
            runs = args.runs if label == "repeated" else args.distinct_runs
            if label == "repeated":
                for argv in commands.values():
                    run_once(argv, env)  # warm the page cache and the bytecode
            samples: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(runs):
                for name, argv in commands.items():
                    samples[name].append(run_once(argv, env))
            size = path.stat().st_size / 1e6
            print(f"\n{label} ({size:.1f} MB), load average {os.getloadavg()[0]:.2f}")
            floor = statistics.median(samples["floor: python reads + json.loads each line"])
            for name, values in samples.items():
                median = statistics.median(values)
                line = f"  {name:<44} {median:7.2f} s  {min(values):7.2f} s  {median / floor:5.2f}x"
                if label == "repeated" and name != next(iter(commands)):
                    ok = median / floor <= 1.5
                    line += f"   reach <= 1.5x: {'ok' if ok else 'MISSED'}"
                    if not ok:
                        missed.append(f"{label} {name}")
                print(line)
    print("\nmissed: " + (", ".join(missed) if missed else "none"))
    return 1 if (missed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
