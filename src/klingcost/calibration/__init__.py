"""Calibration: learn Kling's real prices from the charges the ledger has observed.

    result = calibrate(ledger, min_samples=3)
    result.observed        # units really charged per job class, with how many tasks say so
    result.multipliers     # the seed's multipliers fitted to them (10 s, pro, model, sound, ...)
    write_overlay(result.overlay, "observed.yaml")   # load it like any overlay: --pricing FILE

Only *trusted* observations count: settled tasks whose ``final_unit_deduction`` parsed as a
positive number below the cap and whose task did not fail. A job class's observed price is the
charge most of its tasks got (the mode), exactly; ``support`` says how many tasks got it.

Each multiplier is an exact ratio between two observed classes that differ by one factor only
(10 s against 5 s, pro against std, a model against kling-v1, sound on against off, with a video
reference against without). When several pairs give a ratio, the one most tasks support wins
and ``consistent`` says whether they all agreed. A model never seen beside kling-v1 gets its
tier against the sheet's base price instead (``basis`` says which).

The proposed overlay holds only the sheet entries the observations contradict, each with
``source: observed`` and a note saying how many tasks support it; the base price is never moved
(a model's own factor absorbs its drift, so models nobody observed keep their prices). Before it
is returned, the overlay is merged over the sheet and every observed class is priced again with
it: ``reproduced`` lists the classes whose price it now matches.

``import_usage`` reads openai-hk's usage log (rows with ``fen``: credits charged, ``yufen``:
credits left, ``model`` and ``reqid``) and learns the credits per unit the proxy really charges.

The package's rooms: :mod:`~klingcost.calibration.model` (the result's types, and a job class
priced by a sheet), :mod:`~klingcost.calibration.fit` (observe and fit),
:mod:`~klingcost.calibration.overlay` (overlay files, written whole or not at all) and
:mod:`~klingcost.calibration.usage` (the usage-log import). What they read and write in the
ledger is the ledger's SQL (:mod:`klingcost.ledger.queries`).
"""

from __future__ import annotations

from klingcost.calibration.fit import calibrate, observe
from klingcost.calibration.model import (
    Calibration,
    Multiplier,
    Observed,
    sheet_units,
)
from klingcost.calibration.overlay import check_write_target, overlay_yaml, write_overlay
from klingcost.calibration.usage import (
    CreditRate,
    UsageImport,
    UsageRow,
    credit_rates,
    import_usage,
    parse_usage,
)
from klingcost.errors import CalibrationError

__all__ = [
    "Calibration",
    "CalibrationError",
    "CreditRate",
    "Multiplier",
    "Observed",
    "UsageImport",
    "UsageRow",
    "calibrate",
    "check_write_target",
    "credit_rates",
    "import_usage",
    "observe",
    "overlay_yaml",
    "parse_usage",
    "sheet_units",
    "write_overlay",
]
