"""One row per task: the ledger's holds as typed rows, and streamed to CSV or JSON.

The rows are the ledger's read model (:mod:`klingcost.ledger.queries`: :data:`TASK_COLUMNS`,
:class:`TaskRow`, :func:`task_rows`, :func:`latest_tasks`); this module writes them out.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from datetime import date
from typing import IO, Any

from klingcost.display import PLAIN_NUMBER, csv_cell
from klingcost.ledger import Ledger
from klingcost.ledger.queries import (
    TASK_COLUMNS,
    TaskRow,
    latest_tasks,
    task_cells,
    task_rows,
    task_snapshot,
)


def iter_tasks(
    ledger: Ledger,
    *,
    since: date | None = None,
    until: date | None = None,
    team: str | None = None,
    state: str | None = None,
) -> Iterator[TaskRow]:
    """The ledger's tasks as :class:`TaskRow` objects, streamed."""
    for row in task_rows(ledger, since=since, until=until, team=team, state=state):
        yield TaskRow(*task_cells(row))


_COMMAS = len(TASK_COLUMNS) - 1
#: In a line SQLite built (commas only between cells), a cell csv_cell would change. Plain
#: characters are tested first: ``"=" in text`` is a memchr, far cheaper than a regex.
_SIGNED_TEXT = re.compile(rf",[-+](?!{PLAIN_NUMBER}(?:,|$))", re.MULTILINE)


def _formula_in(text: str) -> bool:
    return "=" in text or "@" in text or "\t" in text or _SIGNED_TEXT.search(text) is not None


def export_tasks_csv(
    ledger: Ledger,
    out: IO[str],
    *,
    since: date | None = None,
    until: date | None = None,
    team: str | None = None,
    state: str | None = None,
) -> int:
    """Write one CSV line per task under :data:`TASK_COLUMNS` (``\\n`` line ends); the count.

    SQLite builds each line, so rows reach the file without a Python object per field: faster
    than a plain cursor -> ``csv.writer`` loop, in flat memory. A batch is checked as a whole
    (its commas, quotes and line breaks counted, and cells a spreadsheet would run as a
    formula looked for); a line that holds one of them (a ``reason`` with a comma, say) is
    written again by ``csv.writer`` through :func:`csv_cell`, quoted as it quotes.
    """
    out.write(",".join(TASK_COLUMNS) + "\n")
    count = 0
    writer = csv.writer(out, lineterminator="\n")
    with task_snapshot(ledger) as tasks:
        if not tasks.builds_lines:  # no printf: a plain cursor -> csv.writer loop
            for row in tasks.rows(since=since, until=until, team=team, state=state):
                writer.writerow([csv_cell(cell) for cell in row])
                count += 1
            return count
        for batch in tasks.line_batches(since=since, until=until, team=team, state=state):
            text = "\n".join(batch)
            if (
                text.count(",") == _COMMAS * len(batch)
                and text.count("\n") == len(batch) - 1
                and '"' not in text
                and "\r" not in text
                and not _formula_in(text)
            ):
                out.write(text)
                out.write("\n")
            else:
                for line in batch:
                    if (
                        line.count(",") == _COMMAS
                        and not any(c in line for c in '"\r\n')
                        and not _formula_in(line)
                    ):
                        out.write(line)
                        out.write("\n")
                    else:
                        hold_id = int(line.split(",", 1)[0])
                        writer.writerow([csv_cell(cell) for cell in tasks.row(hold_id)])
            count += len(batch)
    return count


def export_tasks_json(rows: Iterable[tuple[Any, ...]], out: IO[str], *, lines: bool = False) -> int:
    """Write ``rows`` as a JSON array of objects (or JSON Lines), one task at a time."""
    count = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    if not lines:
        out.write("[")
    for row in rows:
        text = dumps(dict(zip(TASK_COLUMNS, task_cells(row), strict=True)))
        if lines:
            out.write(text + "\n")
        else:
            out.write(("\n" if count == 0 else ",\n") + text)
        count += 1
    if not lines:
        out.write("\n]\n" if count else "]\n")
    return count


__all__ = [
    "TASK_COLUMNS",
    "TaskRow",
    "export_tasks_csv",
    "export_tasks_json",
    "iter_tasks",
    "latest_tasks",
    "task_rows",
]
