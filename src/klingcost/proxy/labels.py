"""Route labels: the few fixed names a request path is logged and counted under.

A path is never logged or used as a metric label as it came: a task path holds a task id (one
series per task would grow Prometheus without bound), a callback path holds the secret that
authenticates it, and a fuzzer's paths are anything at all. :func:`route_of` maps every path to
one of a small fixed set: ``/v1/{group}/{endpoint}``, ``/v1/{group}/{endpoint}/{task_id}``, the
proxy's own routes, or ``other``. Kling's paths under openai-hk's ``/kling`` prefix are counted
with Kling's own (the prefix is a client's base URL, not a different route).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from klingcost.request import ENDPOINTS

#: Paths counted as they are (the proxy's own fixed routes and Kling's account query).
FIXED: Final = frozenset({"/healthz", "/metrics", "/v1/account/costs", "/account/costs"})
#: The proxy's callback route: the rest of its path is the hold's key and its signature.
CALLBACK: Final = "/_klingcost/callback"
_ENDPOINTS: Final = frozenset(ENDPOINTS)


@lru_cache(maxsize=4096)
def _route(path: str) -> str:
    if path.startswith("/kling/"):
        path = path[len("/kling") :]
    if path in FIXED:
        return path
    if path.startswith(CALLBACK + "/"):
        return CALLBACK
    parts = path.split("/")
    # "", "v1", group, endpoint[, task id]
    if len(parts) in (4, 5) and parts[0] == "" and parts[1] == "v1":
        endpoint = f"{parts[2]}/{parts[3]}"
        if endpoint in _ENDPOINTS:
            if len(parts) == 4:
                return f"/v1/{endpoint}"
            if parts[4]:
                return f"/v1/{endpoint}/{{task_id}}"
    return "other"


def route_of(path: str) -> str:
    """The label of ``path``: a route template from a fixed set, or ``other``."""
    if len(path) > 200:  # no route is this long; keep the cache for real ones
        return "other"
    return _route(path)


__all__ = ["CALLBACK", "FIXED", "route_of"]
