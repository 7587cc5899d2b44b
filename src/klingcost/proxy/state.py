"""What one proxy process holds: its ledger, its upstream, its secrets, and per-team guards.

Nothing here is needed by another worker: the ledger is the only shared state. The per-team
guards (:class:`~klingcost.guard_core.GuardCore`, the same core as ``GuardedClient``) cache the
price sheet they price with, and the key cache holds key rows for a second
(:class:`~klingcost.keys.KeyCache`); both are rebuilt by any worker from the ledger alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import httpx

from klingcost.guard_core import GuardCore
from klingcost.ledger import Hold, Ledger
from klingcost.proxy.settings import ProxySettings
from klingcost.proxy.upstream import Upstream

if TYPE_CHECKING:
    from klingcost.keys import ApiKey

logger = logging.getLogger("klingcost.proxy")

#: Where the upstream posts a task's callbacks: ``/_klingcost/callback/{hold key}/{signature}``.
CALLBACK_PREFIX = "/_klingcost/callback"

Authenticate = Callable[[str | None], "ApiKey"]


class Proxy:
    """One process's proxy: see the module docstring. ``authenticate`` maps an
    ``Authorization`` header to the key it names, or raises KeyRefused."""

    def __init__(
        self,
        settings: ProxySettings,
        *,
        ledger: Ledger,
        upstream: Upstream,
        callback_secret: str,
        authenticate: Authenticate,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.upstream = upstream
        self.authenticate = authenticate
        self._callback_key = callback_secret.encode("utf-8", "surrogatepass")
        #: How the upstream reaches this proxy (set once the server is bound, if not given).
        self.public_url: str | None = (
            settings.public_url.rstrip("/") if settings.public_url and settings.callbacks else None
        )
        self._cores: dict[str, GuardCore] = {}
        self._cores_lock = threading.Lock()
        #: Callback deliveries to clients' own URLs, still running (kept, or they may be
        #: collected mid-flight; cancelled at shutdown).
        self.deliveries: set[asyncio.Task[None]] = set()
        self.hook_client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"Proxy(upstream={self.upstream!r}, ledger={self.ledger!r})"

    def core(self, team: str) -> GuardCore:
        """The guard core for ``team`` (the one GuardedClient uses), made on first use."""
        core = self._cores.get(team)
        if core is None:
            with self._cores_lock:
                core = self._cores.get(team)
                if core is None:
                    core = GuardCore(
                        team,
                        self.ledger,
                        sheet=None,
                        provider=None,
                        hook_url=None,
                        external_ids=self.settings.external_ids,
                    )
                    self._cores[team] = core
        return core

    # --- callback URLs ----------------------------------------------------------------------

    def signature(self, hold_key: str, *, quiet: bool = False) -> str:
        """The callback URL's proof that the proxy made it, for this hold only.

        The URL of a hold whose client gave no callback URL is signed apart (``quiet``): its
        callbacks on the way (submitted, processing) have nowhere to go and move nothing, so
        the signature alone lets them be answered without reading the ledger."""
        message = f"quiet\0{hold_key}" if quiet else hold_key
        mac = hmac.new(self._callback_key, message.encode("utf-8"), hashlib.sha256)
        return mac.hexdigest()[:40]

    def signed(self, hold_key: str, signature: str) -> Literal["forwarding", "quiet"] | None:
        """How the callback URL was signed for this hold; None if not by this proxy."""
        given = signature.encode()
        if hmac.compare_digest(self.signature(hold_key, quiet=True).encode(), given):
            return "quiet"
        if hmac.compare_digest(self.signature(hold_key).encode(), given):
            return "forwarding"  # also every URL made before quiet ones were
        return None

    def callback_url(self, hold_key: str, *, quiet: bool = False) -> str | None:
        if self.public_url is None:
            return None
        signature = self.signature(hold_key, quiet=quiet)
        return f"{self.public_url}{CALLBACK_PREFIX}/{hold_key}/{signature}"

    # --- which hold a team may see -------------------------------------------------------------

    def hold_for(self, team: str, ref: str) -> Hold | None:
        """``team``'s hold for a task id or an external id; None for anything else, another
        team's task included (the caller answers it as unknown)."""
        found = self.ledger.hold_for_task(ref)
        if found is not None:
            return found if found.team == team else None
        for key in (external_key(team, ref), ref):
            found = self.ledger.hold_for_key(key)
            if found is not None and found.team == team:
                return found
        return None


def external_key(team: str, external_task_id: str) -> str:
    """The hold key of ``team``'s task sent with ``external_task_id``: one per team and id, so
    a retried create with the same id is held once, and another team's id finds nothing."""
    digest = hashlib.sha256(f"{team}\0{external_task_id}".encode("utf-8", "surrogatepass"))
    return "px" + digest.hexdigest()[:40]


__all__ = ["CALLBACK_PREFIX", "Authenticate", "Proxy", "external_key"]
