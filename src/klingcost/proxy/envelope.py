"""Kling's codes for the answers the proxy makes itself, in Kling's envelope.

Every answer the proxy makes (a refusal, an unknown route, an upstream it cannot reach) has
the shape and the code Kling would use (see ``kling-facts.md``), so a client written for Kling
reads it as it reads Kling's own errors; :func:`~klingcost.proxy.limits.kling_error` builds it.
Answers from the upstream are passed on as they came.
"""

from __future__ import annotations

from typing import Final

from klingcost.proxy.limits import kling_error

MALFORMED: Final = 1200  # 400: invalid parameters (the body is not a JSON object)
INVALID: Final = 1201  # 400: invalid value (a body the sheet cannot price)
NO_ROUTE: Final = 1202  # 404/405: invalid method or route
NOT_FOUND: Final = 1203  # 404: resource not found (another team's task, too)
NO_PERMISSION: Final = 1103  # 403: no permission (a team without a budget that counts the job)
PACK_EXHAUSTED: Final = 1102  # 429: resource pack used up (here: the team's budget)
CONCURRENCY: Final = 1303  # 429: parallel tasks over the limit (here: the key's)
SERVER_ERROR: Final = 5000  # 500
UNAVAILABLE: Final = 5001  # 502: the upstream cannot be reached
TIMEOUT: Final = 5002  # 504: the upstream did not answer

__all__ = ["kling_error"]
