"""Where klingcost keeps its files: ``$KLINGCOST_HOME``, else ``~/.klingcost``.

One definition, so that every file klingcost finds on its own (the ledger, the hook secret,
the journal of a PostgreSQL ledger, the proxy's server secret) lands in the same folder, with
``~`` expanded the same way everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def klingcost_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$KLINGCOST_HOME`` (``~`` expanded) when set and not empty, else ``~/.klingcost``."""
    env = os.environ if environ is None else environ
    home = env.get("KLINGCOST_HOME")
    return Path(home).expanduser() if home else Path.home() / ".klingcost"


__all__ = ["klingcost_home"]
