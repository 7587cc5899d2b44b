"""Rewrite src/klingcost/data/pricing.json from the bundled pricing.yaml.

Run it after editing the bundled sheet: ``.venv/bin/python scripts/freeze_pricing.py``. Until
then klingcost still reads the edited YAML (the JSON carries the hash of the YAML it was made
from and is ignored when they differ), only slower, and tests/test_sheet.py says so.

The JSON also holds the sheet as validated, which ``klingcost`` loads without validating it
again; an invalid sheet is written without it, and this script then says what is wrong (exit 1).
"""

from __future__ import annotations

import sys

from klingcost.errors import PricingSheetError
from klingcost.sheet import bundled_sheet, freeze_bundled_sheet

if __name__ == "__main__":
    print(f"wrote {freeze_bundled_sheet()}")
    try:
        bundled_sheet()
    except PricingSheetError as exc:
        sys.exit(f"error: {exc}")
