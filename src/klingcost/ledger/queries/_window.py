"""A window of UTC days as SQL clauses: what every read model with ``since``/``until`` shares."""

from __future__ import annotations

from datetime import date, timedelta

__all__ = ["window"]


def window(
    day_column: str, since: date | None, until: date | None, *, inclusive_day: bool = True
) -> tuple[list[str], list[str]]:
    """Clauses and parameters for a window of UTC days, ``since`` and ``until`` inclusive: on
    a day column (``<= until``), or on a timestamp (``< the day after until``)."""
    clauses, params = [], []
    if since is not None:
        clauses.append(f"{day_column} >= ?")
        params.append(since.isoformat())
    if until is not None:
        if inclusive_day:
            clauses.append(f"{day_column} <= ?")
            params.append(until.isoformat())
        else:
            clauses.append(f"{day_column} < ?")
            params.append((until + timedelta(days=1)).isoformat())
    return clauses, params
