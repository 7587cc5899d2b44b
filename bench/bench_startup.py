"""How fast the ``klingcost`` command starts, whole process, beside the floors it is judged by.

Run it with ``.venv/bin/python bench/bench_startup.py`` (``--runs N``, default 30). Each command
runs N times as a fresh process, the commands alternating (so a change in machine load hits
every command alike), and the median and minimum wall time of each are printed with the
ratios of issue 14:

* ``klingcost --help``          against ``python -c 'import click'``     reach <= 2x
* ``klingcost estimate FILE``   against ``python -c 'import pydantic'``  reach <= 2.5x

FILE is one text2video body. For scale, a fifth command defines and uses one pydantic model: the
least any process pays that validates with pydantic. ``--before SRC`` also times
``klingcost estimate FILE`` with klingcost imported from SRC (the ``src`` folder of an older
commit, e.g. from ``git archive``), in the same alternation: code before and after, one run.
It is a benchmark, not a test: it exits 0 either way (``--check`` makes it exit 1 when a median
ratio misses its reach). No hyperfine needed. Figures: docs/benchmarks.md.
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

PYTHON = sys.executable
KLINGCOST = str(Path(PYTHON).with_name("klingcost"))

BODY = {
    "endpoint": "videos/text2video",
    "body": {"model_name": "kling-v1-5", "mode": "pro", "duration": "10", "prompt": "a ship"},
}


# The least any process that validates with pydantic pays: one model defined, one dict checked.
ONE_MODEL = (
    "from pydantic import BaseModel\n"
    "class M(BaseModel):\n"
    "    prompt: str\n"
    "    duration: int = 5\n"
    "M.model_validate({'prompt': 'p', 'duration': '10'})\n"
)


def run_once(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per command (default 30)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a reach is missed")
    parser.add_argument(
        "--before", metavar="SRC", help="also time the estimate with klingcost imported from SRC"
    )
    args = parser.parse_args()
    # The bundled sheet only: an overlay named in the environment would be timed too. And
    # bytecode on: click and pydantic have theirs (as a wheel installed by pip has), so with
    # PYTHONDONTWRITEBYTECODE set an editable klingcost alone would be recompiled every run.
    drop = {"KLINGCOST_PRICING", "PYTHONDONTWRITEBYTECODE"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "body.json"
        body.write_text(json.dumps(BODY), encoding="utf-8")
        commands = {
            "python -c 'import click'": [PYTHON, "-c", "import click"],
            "klingcost --help": [KLINGCOST, "--help"],
            "python -c 'import pydantic'": [PYTHON, "-c", "import pydantic"],
            "klingcost estimate FILE": [KLINGCOST, "estimate", str(body)],
            "python: one pydantic model used": [PYTHON, "-c", ONE_MODEL],
        }
        if args.before:
            # `env` puts SRC first on the path for that process only (its cost: one exec).
            before = ["env", f"PYTHONPATH={Path(args.before).resolve()}"]
            commands["estimate FILE, code --before"] = [*before, KLINGCOST, "estimate", str(body)]
        for argv in commands.values():  # warm the page cache and the bytecode
            run_once(argv, env)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                samples[name].append(run_once(argv, env))
    load = os.getloadavg()
    print(f"klingcost startup, whole process  (python {sys.version.split()[0]}, {sys.platform})")
    print(f"{args.runs} runs per command, alternating; load average {load[0]:.2f} at the end")
    print()
    print(f"  {'command':<31} {'median':>9} {'min':>9}")
    for name, values in samples.items():
        print(f"  {name:<31} {statistics.median(values) * 1e3:7.1f}ms {min(values) * 1e3:7.1f}ms")
    print()
    missed = []
    for name, floor, reach in (
        ("klingcost --help", "python -c 'import click'", 2.0),
        ("klingcost estimate FILE", "python -c 'import pydantic'", 2.5),
    ):
        median = statistics.median(samples[name]) / statistics.median(samples[floor])
        best = min(samples[name]) / min(samples[floor])
        ok = median <= reach
        if not ok:
            missed.append(name)
        print(
            f"  {name} / {floor}: {median:.2f}x median, {best:.2f}x min"
            f"   reach <= {reach}x: {'ok' if ok else 'MISSED'}"
        )
    pydantic = statistics.median(samples["python -c 'import pydantic'"])
    if args.before:
        old = statistics.median(samples["estimate FILE, code --before"])
        print(f"  estimate FILE, code --before / import pydantic: {old / pydantic:.2f}x median")
    one_model = statistics.median(samples["python: one pydantic model used"])
    estimate = statistics.median(samples["klingcost estimate FILE"])
    print(
        f"  (for scale: one pydantic model used / import pydantic: {one_model / pydantic:.2f}x;"
        f" klingcost estimate FILE / one pydantic model used: {estimate / one_model:.2f}x)"
    )
    return 1 if (missed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
