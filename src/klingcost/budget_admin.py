"""Managing budgets a person owns: what a change to a budget does before it is made, and what
renaming or deleting one keeps.

The ledger computes these (only it reads the tables, in :meth:`Ledger.preview_budget`,
:meth:`Ledger.rename_budget` and :meth:`Ledger.delete_budget`); this module holds the answers
and words them, so that the CLI only prints.

What rename and delete keep: a hold counts against every budget on its path, in the period it
was reserved in. Renaming moves the budget's holds, entries, running balances and report
rollups to the new name in one transaction (children follow: their parent is the new name), so
nothing stops counting. Deleting a budget that never held anything removes it; one with
history is archived under ``NAME~deleted-N`` (``~`` is in no budget name a person can give),
hidden from ``budget list``, with its history kept for reports and its open holds (only with
``--force``) still open, so that ``sync`` settles them at the real charge. Its parents keep
counting what it spent. The event log keeps the old names (it is append-only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from klingcost.budgets import UNITS, Budget, BudgetStatus
from klingcost.money import format_amount

#: The mark of an archived (deleted) budget's name; no budget name a person gives holds it.
ARCHIVED: Final = "~deleted-"

#: The fields ``budget set`` can change, in the order a change is told.
FIELDS: Final = ("limit", "unit", "pack", "period", "tz", "parent", "soft")


def _field(budget: Budget, name: str) -> str:
    if name == "limit":
        return budget.format(budget.limit)
    if name == "soft":
        return format_amount(budget.soft)
    if name == "pack" and budget.unit != UNITS:
        return "-"
    value = getattr(budget, name)
    return "none" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class BudgetChange:
    """What a change to a budget would do, read in one snapshot and not written."""

    before: BudgetStatus
    after: BudgetStatus
    #: Open holds counted in the current period before the change and not after it.
    moved_holds: int = 0
    moved_held: int = 0

    @property
    def changed(self) -> dict[str, tuple[str, str]]:
        """field -> (before, after), for the fields whose value changes."""
        out = {}
        for name in FIELDS:
            old, new = _field(self.before.budget, name), _field(self.after.budget, name)
            if old != new:
                out[name] = (old, new)
        return out

    def warnings(self) -> list[str]:
        """What the change does that a person may not expect, one sentence each."""
        b, a = self.before, self.after
        unit = a.budget.unit if a.budget.unit != UNITS else f"units ({a.budget.pack})"
        out = []
        if "limit" in self.changed and a.used > a.limit:
            out.append(
                f"the new limit {a.budget.format(a.limit)} {unit} is below the "
                f"{a.budget.format(a.used)} already used in {a.window.key} (posted "
                f"{a.budget.format(a.posted)}, held {a.budget.format(a.held)}): available "
                f"becomes {a.budget.format(a.available)} and every new job is refused"
            )
        if b.window.key != a.window.key and (b.used or self.moved_holds):
            holds = (
                f"; {self.moved_holds} open hold(s) holding {b.budget.format(self.moved_held)} "
                f"stay in {b.window.key} and no longer count against the limit"
                if self.moved_holds
                else ""
            )
            out.append(
                f"the period changes from {b.window.key} to {a.window.key}: posted "
                f"{b.budget.format(b.posted)} and held {b.budget.format(b.held)} become "
                f"{a.budget.format(a.posted)} and {a.budget.format(a.held)}{holds}"
            )
        return out


@dataclass(frozen=True, slots=True)
class DeletedBudget:
    """What :meth:`Ledger.delete_budget` did."""

    team: str
    #: The archived name its history is kept under; None when it had none and was removed.
    archived: str | None
    #: Open holds it had (only with ``force``): still open under ``archived``.
    open_holds: tuple[int, ...] = ()
    open_held: int = 0


def archived_name(team: str, taken: set[str]) -> str:
    """``team~deleted-N``, the first N not in ``taken``."""
    n = 1
    while f"{team}{ARCHIVED}{n}" in taken:
        n += 1
    return f"{team}{ARCHIVED}{n}"
