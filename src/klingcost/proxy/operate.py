"""The operator's layer around the proxy's app: errors, access log, metrics, body limit.

One call wraps the Starlette app the proxy builds::

    metrics = Metrics(lambda: ledger.holds("open"))
    app = Starlette(routes=[..., metrics.route()], exception_handlers=exception_handlers())
    asgi = operated(app, metrics=metrics, limits=proxy_limits(), log_prompts=False)

From the outside in: :class:`~klingcost.proxy.limits.KlingErrors` (nothing escapes as a
traceback), :class:`~klingcost.proxy.accesslog.AccessLog` (one line, and the metrics' counters,
for every request, refusals by the limits included), then
:class:`~klingcost.proxy.limits.KlingBodyLimit`. All three are plain ASGI: a request pays for
two wrapped ``send`` calls and one buffered body, no task group or extra copy.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from klingcost._limits import ServerLimits
from klingcost.proxy import accesslog
from klingcost.proxy.accesslog import AccessLog
from klingcost.proxy.limits import KlingBodyLimit, KlingErrors, proxy_limits
from klingcost.proxy.metrics import Metrics


def operated(
    app: ASGIApp,
    *,
    metrics: Metrics | None = None,
    limits: ServerLimits | None = None,
    log_prompts: bool = False,
    access_log: bool = True,
) -> ASGIApp:
    """``app`` inside the operator's layers (see the module docstring).

    With ``access_log`` on and no handler set up for it yet, the lines go to stdout
    (:func:`klingcost.proxy.accesslog.configure`); this runs in each worker.
    """
    if access_log and not accesslog.logger.handlers:
        accesslog.configure()
    inner = KlingBodyLimit(app, limits or proxy_limits())
    listeners = (metrics.record,) if metrics is not None else ()
    logged = AccessLog(inner, log_prompts=log_prompts, enabled=access_log, listeners=listeners)
    return KlingErrors(logged)


__all__ = ["operated"]
