"""Rewrite src/klingcost/data/pricing.json from the bundled pricing.yaml.

Run it after editing the bundled sheet: ``.venv/bin/python scripts/freeze_pricing.py``. Until
then klingcost still reads the edited YAML (the JSON carries the hash of the YAML it was made
from and is ignored when they differ), only slower, and tests/test_sheet.py says so.
"""

from __future__ import annotations

from klingcost.sheet import freeze_bundled_sheet

if __name__ == "__main__":
    print(f"wrote {freeze_bundled_sheet()}")
