"""The live budget page: ``/ui`` for a ledger, served by ``klingcost ui`` (a ledger alone) and
``klingcost proxy``.

    from klingcost.ui import create_app, ui_routes
    app = create_app(ledger)                        # a whole app: /ui, /ui/data.json, /ui/static
    Starlette(routes=[*ui_routes(ledger), ...])     # the same routes inside another app

The page shows each budget (used, held, available, forecast), a burn-down chart per budget
(uPlot, vendored in ``static/vendor``: no CDN, it works offline), the latest tasks with their
estimate against their charge, refusals and price drift, and refreshes itself every few
seconds. :mod:`klingcost.ui.data` builds what it shows; its amounts are exact decimal strings.
"""

from __future__ import annotations

from klingcost.ui.app import REFRESH, STATIC, asset, create_app, ui_routes
from klingcost.ui.data import page_data

__all__ = ["REFRESH", "STATIC", "asset", "create_app", "page_data", "ui_routes"]
