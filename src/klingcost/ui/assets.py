"""The page's static files (its scripts, styles and the vendored uPlot), read from the
package: served by :mod:`klingcost.ui.app` and inlined by :mod:`klingcost.reports.html`."""

from __future__ import annotations

from importlib.resources import files
from typing import Final

#: The files under /ui/static/, and their content types: nothing else is served from there.
STATIC: Final[dict[str, str]] = {
    "app.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "charts.css": "text/css; charset=utf-8",
    "ui.css": "text/css; charset=utf-8",
    "vendor/uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "vendor/uPlot.min.css": "text/css; charset=utf-8",
    "vendor/uPlot.LICENSE": "text/plain; charset=utf-8",
}


def asset(name: str) -> str:
    """The text of a static file of the page (KeyError for a name not in :data:`STATIC`)."""
    if name not in STATIC:
        raise KeyError(name)
    return files("klingcost.ui").joinpath("static", *name.split("/")).read_text("utf-8")


__all__ = ["STATIC", "asset"]
