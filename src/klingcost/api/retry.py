"""What the clients retry, and how long they wait: the Kling protocol's retry rules.

:class:`RetryPolicy` is pure (the delay of attempt ``k``, and which errors may be tried again);
:func:`transport_error` maps an httpx failure onto the exception tree by the one question that
matters for money: could the request have been sent? An unsent request is definite
(:class:`~klingcost.errors.ConnectError`); a submission that may have been written is
ambiguous (:class:`~klingcost.errors.AmbiguousSubmitError`) and is never resent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import httpx

from klingcost import errors

#: httpx errors raised before the request left the client: always safe to send again.
#: (ProxyError: the proxy tunnel or SOCKS handshake failed, before the request was written.)
NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
#: httpx refusing the request itself: a URL it cannot build (InvalidURL, which is no
#: TransportError) or send (UnsupportedProtocol: not http(s)), a header h11 cannot write
#: (LocalProtocolError, raised while h11 checks the request line and headers, before any byte
#: is written). Nothing was sent, and the same request would be refused again: not retried.
REFUSED: Final = (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt ``k`` (from 1) waits about ``base * 2**(k-1)``.

    The wait is drawn in ``[d/2, d]`` (d capped at ``max_delay``), raised to the API's
    ``Retry-After`` when it asks for longer (still capped).
    """

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0 (given {self.max_retries})")

    def delay(self, attempt: int, rand: float, retry_after: float | None = None) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        wait = ceiling / 2 + rand * ceiling / 2
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay))
        return wait

    def retryable(self, error: errors.KlingAPIError, *, idempotent: bool) -> bool:
        """Rate limits and unsent requests always; other transport failures on queries only."""
        if isinstance(error, errors.RateLimitError | errors.ConnectError):
            return True
        return idempotent and type(error) is errors.TransportError


def transport_error(
    exc: httpx.TransportError | httpx.InvalidURL, *, idempotent: bool, what: str
) -> errors.TransportError:
    """Map an httpx failure: unsent -> ConnectError; after sending -> ambiguous (or retryable).

    Only an error that httpx raises before writing the request is definite: a submission that
    may have been written must stay ambiguous, but one that certainly was not must not (the
    budget guard keeps an ambiguous submission's hold counting until someone resolves it).
    """
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, REFUSED):
        return errors.ConnectError(
            f"{what}: httpx refused the request ({detail}); the request was not sent"
        )
    if isinstance(exc, NOT_SENT):
        return errors.ConnectError(
            f"{what}: could not connect ({detail}); the request was not sent"
        )
    if idempotent:
        return errors.TransportError(f"{what}: no answer ({detail})")
    return errors.AmbiguousSubmitError(
        f"{what}: the request was sent but no answer came ({detail}); "
        "the task may exist: it is not resent"
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after", "")
    try:
        seconds = float(value)  # a time, not an amount
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
