"""The one poll policy: how often a wait loop asks, when it gives up, which failures it outlasts.

Every loop that waits for Kling tasks to end uses it: ``KlingClient.wait`` (and its async
twin), ``GuardedClient.wait`` (``klingcost submit --wait``), ``klingcost sync --wait``
(:func:`klingcost.sync.settle_until_done`), the proxy's background settlement pass, and the
demo. So an interval, a deadline and the list of failures worth waiting out mean the same thing
everywhere, and are tested once.

Pure: no clock, no sleeping, no randomness of its own. A loop reads its clock and draws its
random number, and asks the policy what to do::

    poll = policy.start(now=time.monotonic())
    while True:
        ...                                   # one query (or one pass)
        wait = poll.wait(now=time.monotonic(), rand=random.random())
        if wait is None:
            raise TimeoutError(...)           # the next poll would land past the deadline
        sleep(wait)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from klingcost import errors

#: Failures of one status query that a later query may not meet: a wait polls on through them.
#: A lost answer or a refused connection (TransportError, ConnectError), a 5xx, a rate limit,
#: an answer that could not be read. Anything else (a bad key, an unknown task, a refused
#: request) would be met again at every poll: the wait ends with it.
TRANSIENT_QUERY_FAILURES: Final[tuple[type[errors.KlingAPIError], ...]] = (
    errors.TransportError,
    errors.ServerError,
    errors.RateLimitError,
    errors.MalformedResponseError,
)


def is_transient(error: BaseException) -> bool:
    """Whether a failed status query is worth asking again at the next poll."""
    return isinstance(error, TRANSIENT_QUERY_FAILURES)


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Poll every ``interval`` seconds for at most ``timeout`` seconds.

    ``jitter`` (0 to 1) spreads each wait over ``interval x [1 - jitter, 1 + jitter]``, so that
    many pollers (the proxy's workers) do not ask in step; 0 waits exactly ``interval``.
    ``timeout`` may be ``math.inf``: a loop that only ends when it is cancelled. The values
    are taken as given (as the loops always took them): a negative interval fails in the
    sleep, a negative timeout allows one poll.
    """

    interval: float = 5.0
    timeout: float = 900.0
    jitter: float = 0.0

    def start(self, now: float) -> Poll:
        """A wait that starts at ``now`` (a monotonic clock's reading), and its deadline."""
        return Poll(self, now + self.timeout)

    def delay(self, rand: float = 0.5) -> float:
        """One wait between polls; ``rand`` in ``[0, 1)`` places it within the jitter."""
        return self.interval * (1 - self.jitter + 2 * self.jitter * rand)

    def phase(self, rand: float) -> float:
        """A first wait in ``[0, interval)``: where a periodic pass starts (see the proxy)."""
        return self.interval * rand


@dataclass(frozen=True, slots=True)
class Poll:
    """One wait under a :class:`PollPolicy`: the policy and the deadline it started with."""

    policy: PollPolicy
    deadline: float

    def wait(self, now: float, rand: float = 0.5) -> float | None:
        """Seconds to sleep before the next poll, or None: that poll would pass the deadline.

        A loop gives up *before* a sleep that would end past its deadline, not after it: a
        ``--timeout 60`` never runs to 65 s.
        """
        delay = self.policy.delay(rand)
        return None if now + delay > self.deadline else delay


__all__ = ["TRANSIENT_QUERY_FAILURES", "Poll", "PollPolicy", "is_transient"]
