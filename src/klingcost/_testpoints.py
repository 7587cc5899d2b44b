"""Test points: named places where a test can stop the process, to kill it exactly there.

    reach("after_reserve")        # in the guard, between two steps

A crash test starts a worker with ``KLINGCOST_PAUSE_AT=after_reserve`` and
``KLINGCOST_PAUSE_FILE=/tmp/.../marker``. When the worker reaches that point it writes its pid
to the marker file and sleeps until killed; the test waits for the file, then sends SIGKILL.
Several points may be named, separated by commas.

Both variables are read once, at import. When ``KLINGCOST_PAUSE_AT`` is unset (always, outside
tests) :func:`reach` is a function that returns at once: a call costs what an empty call costs.

The points: ``after_reserve`` (the hold is written, nothing sent), ``after_send`` (the API
answered with a task, the task id is not attached yet), ``after_attach`` (the hold is
``submitted``), ``during_settle`` (inside the settle transaction, before COMMIT).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

PAUSE_ENV: Final = "KLINGCOST_PAUSE_AT"
FILE_ENV: Final = "KLINGCOST_PAUSE_FILE"
POINTS: Final = ("after_reserve", "after_send", "after_attach", "during_settle")


def _off(name: str) -> None:
    """The test point when no pause is asked for: nothing."""


def _pausing(targets: frozenset[str], marker: str | None) -> Callable[[str], None]:
    def reach(name: str) -> None:
        if name not in targets:
            return
        if marker:
            path = Path(marker)
            partial = path.with_name(path.name + ".partial")
            partial.write_text(f"{os.getpid()} {name}\n", encoding="utf-8")
            partial.replace(path)  # the test never sees a half-written marker
        while True:  # until the test kills the process
            time.sleep(3600)

    return reach


def _from_environment() -> Callable[[str], None]:
    targets = frozenset(p.strip() for p in os.environ.get(PAUSE_ENV, "").split(",") if p.strip())
    if not targets:
        return _off
    return _pausing(targets, os.environ.get(FILE_ENV) or None)


#: Pause here if the environment asked for it; otherwise return at once.
reach: Callable[[str], None] = _from_environment()

__all__ = ["FILE_ENV", "PAUSE_ENV", "POINTS", "reach"]
