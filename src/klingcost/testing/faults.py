"""The faults a test can queue on the fake Kling API, and the answers they give.

A fault is ``{"kind": ..., "method": "POST", "path": "text2video", "times": 1, ...}``; ``method``
and ``path`` (a substring of the request path) are optional filters. Kinds (see :data:`FAULTS`):

* errors answered instead of the request: ``rate_limit`` (429, 1302), ``concurrency`` (429, 1303),
  ``pack_used_up`` (429, 1102), ``unauthorized`` (401, 1002), ``policy`` (400, 1301),
  ``server_error`` (500, 5000), ``unavailable`` (503, 5001), or ``error`` with your own
  ``status``, ``code`` and ``message``; ``"create": true`` creates the task first;
* ``slow``: sleep ``ms`` before answering normally;
* ``drop``: close the connection without answering (``"create": true`` creates the task first);
* ``malformed``: answer ``body`` (default: truncated JSON) with ``status`` (default 200);
  ``"create": true`` creates the task first;
* ``timeout_after_accept``: create the task, then hold the answer ``ms`` (default 5000): a client
  that times out cannot know that the task exists;
* ``fail_task``: the task created by the request ends ``failed`` and is not charged;
* ``deduction``: the task reports ``value`` as its ``final_unit_deduction`` (``null`` omits it);
  the ledger still records the units it computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["ERROR_FAULTS", "FAULTS", "MALFORMED_BODY", "Fault"]

#: The error faults: kind -> (HTTP status, Kling code, message).
ERROR_FAULTS: Final[dict[str, tuple[int, int, str]]] = {
    "rate_limit": (429, 1302, "the request rate is over the account's limit"),
    "concurrency": (429, 1303, "parallel tasks are over the resource pack's limit"),
    "pack_used_up": (429, 1102, "the resource pack is used up or expired"),
    "unauthorized": (401, 1002, "authorization is invalid"),
    "policy": (400, 1301, "the content safety check refused the request"),
    "server_error": (500, 5000, "server internal error"),
    "unavailable": (503, 5001, "the service is temporarily unavailable"),
}
FAULTS: Final = frozenset(
    [
        *ERROR_FAULTS,
        "error",
        "slow",
        "drop",
        "malformed",
        "timeout_after_accept",
        "fail_task",
        "deduction",
    ]
)
_CREATE_FAULTS: Final = frozenset({"timeout_after_accept", "fail_task", "deduction"})
MALFORMED_BODY: Final = '{"code": 0, "message": "SUCCEED", "data": {"task_id": '


@dataclass
class Fault:
    """One queued fault; see the module docstring for the kinds and their fields."""

    kind: str
    method: str | None = None
    path: str | None = None
    times: int = 1
    status: int | None = None
    code: int | None = None
    message: str | None = None
    ms: int = 0
    create: bool = False
    body: str = MALFORMED_BODY
    value: str | None = None

    @classmethod
    def from_json(cls, spec: Mapping[str, Any]) -> Fault:
        if not isinstance(spec, Mapping) or spec.get("kind") not in FAULTS:
            kind = spec.get("kind") if isinstance(spec, Mapping) else spec
            raise ValueError(f"unknown fault {kind!r}; kinds: {', '.join(sorted(FAULTS))}")
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault fields {sorted(unknown)} in {dict(spec)}")
        fault = cls(**spec)
        if fault.kind == "timeout_after_accept" and "ms" not in spec:
            fault.ms = 5000
        if fault.kind in _CREATE_FAULTS:
            fault.create = True
            # It shapes a task being created: a query or a list before the create must not
            # use it up (it would leave the test with a silent non-fault).
            if fault.method is None:
                fault.method = "POST"
        if fault.times < 1:
            raise ValueError(f"a fault applies at least once (given times={fault.times})")
        return fault

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and (
            self.path is None or self.path in path
        )

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def error(self) -> tuple[int, int, str] | None:
        """(HTTP status, Kling code, message) of an error fault; None for the other kinds."""
        if self.kind in ERROR_FAULTS or self.kind == "error":
            status, code, message = ERROR_FAULTS.get(self.kind, (500, 5000, "injected error"))
            return self.status or status, self.code or code, self.message or message
        return None
