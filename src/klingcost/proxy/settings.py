"""What one proxy runs with, and how ``--workers N`` hands it to each worker.

The upstream API key is not a setting: each process reads it from ``KLINGCOST_API_KEY``, so it
is never copied into another variable, a file or a pickled configuration. The callback secret
is not one either (``KLINGCOST_HOOK_SECRET``, else the file ``hooks serve`` keeps under
``KLINGCOST_HOME``): every worker and every host with the same home signs alike.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Final

from klingcost.api.envelope import DEFAULT_BASE_URL

#: The variable the CLI sets for its workers (JSON of :class:`ProxySettings`).
SETTINGS_ENV: Final = "KLINGCOST_PROXY_SETTINGS"
SECRET_ENV: Final = "KLINGCOST_HOOK_SECRET"


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """One proxy's settings (see ``klingcost proxy --help``).

    ``upstream``: the Kling API (or openai-hk) base URL, ``KLINGCOST_BASE_URL`` by default.
    ``ledger``: a SQLite path or a PostgreSQL URL (None: ``KLINGCOST_LEDGER``, then the default).
    ``public_url``: how the upstream reaches this proxy, for the callback URL it puts in each
    create (None: the address it listens on). ``callbacks``: put that callback URL in each
    create (False: the client's own callback fields are forwarded unchanged, and holds settle
    from task queries and the background pass: for a proxy the upstream cannot reach).
    ``settle_interval``: seconds between background settlement passes in each worker (0: none).
    ``forward_retries``: attempts to deliver a callback to the client's own URL.
    ``external_ids``: send the hold's key as ``external_task_id`` when the client names none
    (as ``GuardedClient(external_ids=True)``).
    ``log_prompts``: the access log shows prompts; ``access_log``: one line per request;
    ``max_body``: the largest request body, in bytes (:data:`klingcost.proxy.limits.MAX_BODY`).
    """

    upstream: str | None = None
    ledger: str | None = None
    public_url: str | None = None
    callbacks: bool = True
    settle_interval: float = 60.0
    forward_retries: int = 3
    upstream_timeout: float = 60.0
    external_ids: bool = False
    log_prompts: bool = False
    access_log: bool = True
    max_body: int = 64 * 1024 * 1024

    def upstream_url(self) -> str:
        """The upstream's base URL; ValueError unless it is an absolute http(s) URL."""
        url = self.upstream or os.environ.get("KLINGCOST_BASE_URL") or DEFAULT_BASE_URL
        scheme, sep, rest = url.partition("://")
        host = rest.split("/", 1)[0]
        if not sep or scheme.lower() not in ("http", "https") or not host or " " in url:
            raise ValueError(
                f"upstream (--upstream or KLINGCOST_BASE_URL) is {url!r}: it must be an "
                "absolute http(s) URL, such as https://api.openai-hk.com/kling"
            )
        return url.rstrip("/")

    def to_env(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_env(cls) -> ProxySettings:
        """The settings the CLI left in :data:`SETTINGS_ENV` (defaults without it)."""
        text = os.environ.get(SETTINGS_ENV)
        if not text:
            return cls()
        given = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in given.items() if k in known})


def callback_secret() -> str:
    """``KLINGCOST_HOOK_SECRET``, else the secret kept in ``$KLINGCOST_HOME/hook-secret``."""
    from klingcost.hooks import MIN_SECRET_LENGTH, stored_secret

    given = os.environ.get(SECRET_ENV, "").strip()
    if given:
        if len(given) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"{SECRET_ENV} is {len(given)} characters; a callback secret must be at least "
                f"{MIN_SECRET_LENGTH}"
            )
        return given
    home = Path(os.environ.get("KLINGCOST_HOME") or Path.home() / ".klingcost")
    return stored_secret(home)


__all__ = ["SECRET_ENV", "SETTINGS_ENV", "ProxySettings", "callback_secret"]
