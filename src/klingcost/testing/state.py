"""Everything the fake Kling API knows: its settings, tasks, queued faults, and what it saw.

Thread-safe, so a test can read it from its own thread while the server runs in another. A task
is ``submitted`` when created, ``processing`` after ``processing_after`` seconds and ``succeed``
(or ``failed``) after ``done_after`` seconds; a succeeded task reports ``final_unit_deduction``:
the units of the fake's own price table (:mod:`klingcost.testing.prices`), times the model's
``drift`` factor if one is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from klingcost.money import exact, format_amount
from klingcost.testing.auth import Authenticator, AuthMode
from klingcost.testing.faults import Fault
from klingcost.testing.prices import PriceTable, Profile, load_table
from klingcost.testing.rules import Job

__all__ = ["FakeKlingState", "Task"]


@dataclass
class Task:
    task_id: str
    job: Job
    body: dict[str, Any]
    units: Fraction
    origin: str  # the base URL the task was created through: its result files are served there
    created_ms: int
    started: float  # time.monotonic() at creation
    processing_after: float
    done_after: float
    failed: bool = False
    deduction: str | None = None
    deduction_set: bool = False
    callbacks: list[asyncio.Task[None]] = field(default_factory=list, repr=False)

    @property
    def endpoint(self) -> str:
        return self.job.endpoint

    @property
    def model(self) -> str:
        return self.job.model

    @property
    def external_task_id(self) -> str | None:
        value = self.body.get("external_task_id")
        return str(value) if value else None

    def status(self, now: float) -> str:
        elapsed = now - self.started
        if elapsed >= self.done_after:
            return "failed" if self.failed else "succeed"
        return "processing" if elapsed >= self.processing_after else "submitted"

    def view(self, status: str) -> dict[str, Any]:
        """The task object as a query answer's ``data`` (and a callback's body) show it."""
        after = {"submitted": 0.0, "processing": self.processing_after}.get(status, self.done_after)
        external = self.external_task_id
        data: dict[str, Any] = {
            "task_id": self.task_id,
            "task_status": status,
            "task_status_msg": "the fake task failed" if status == "failed" else "",
            "task_info": {"external_task_id": external} if external else {},
            "created_at": self.created_ms,
            "updated_at": self.created_ms + int(after * 1000),
        }
        if status == "succeed":
            data["task_result"] = self._result()
            if not self.deduction_set:
                data["final_unit_deduction"] = format_amount(self.units)
            elif self.deduction is not None:
                data["final_unit_deduction"] = self.deduction
        return data

    def file_names(self) -> list[str]:
        """The result files of this task, as served under ``/_fake/files/``."""
        if self.endpoint.startswith("images/"):
            return [f"{self.task_id}-{i}.png" for i in range(self.job.n)]
        return [f"{self.task_id}-0.mp4"]

    def _result(self) -> dict[str, Any]:
        urls = [f"{self.origin}/_fake/files/{name}" for name in self.file_names()]
        if self.endpoint.startswith("images/"):
            return {
                "images": [{"index": i, "url": url} for i, url in enumerate(urls)],
                "videos": None,
            }
        video = {"id": f"{self.task_id}1", "url": urls[0], "duration": str(self.job.seconds)}
        if self.endpoint == "videos/omni-video":
            return {"videos": [video]}  # as the seed's O1 answer shows it: no "images" key
        return {"images": None, "videos": [video]}


class FakeKlingState:
    """Everything the fake server knows; see the module docstring."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        processing_after: float = 0.0,
        done_after: float = 0.2,
        drift: Mapping[str, Fraction | str | int] | None = None,
        auth: AuthMode = "bearer",
        access_key: str | None = None,
        secret_key: str | None = None,
        profile: str = "openai-hk",
        table: PriceTable | None = None,
    ) -> None:
        self.table = table or load_table()
        self.profile: Profile = self.table.profile(profile)
        self.auth = Authenticator(
            auth, api_key=api_key, access_key=access_key, secret_key=secret_key
        )
        self.processing_after = processing_after
        self.done_after = done_after
        self.drift = {model: exact(f) for model, f in (drift or {}).items()}
        self._lock = threading.Lock()
        self._ids = itertools.count(847130448077000000 + secrets.randbelow(10**12))
        self.tasks: dict[str, Task] = {}
        self.faults: list[Fault] = []
        self.requests: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.hooks: deque[dict[str, Any]] = deque(maxlen=10_000)

    def __repr__(self) -> str:
        return f"FakeKlingState(profile={self.profile.name!r}, auth={self.auth.mode!r})"

    @property
    def api_key(self) -> str | None:
        return self.auth.api_key

    # --- configuration and faults -----------------------------------------------------

    _SETTINGS = frozenset(
        {"api_key", "processing_after", "done_after", "drift", "profile", "auth"}
        | {"access_key", "secret_key"}
    )

    _AUTH = frozenset({"auth", "api_key", "access_key", "secret_key"})

    def configure(self, **settings: Any) -> None:
        """Change settings while running; ``auth`` with ``access_key``/``secret_key`` (and
        ``api_key``) replaces how requests are authenticated."""
        unknown = set(settings) - self._SETTINGS
        if unknown:
            raise ValueError(
                f"unknown settings {sorted(unknown)}; allowed: {sorted(self._SETTINGS)}"
            )
        # Build every new value first: a bad one changes nothing.
        auth = {k: v for k, v in settings.items() if k in self._AUTH}
        if "auth" in auth:
            auth["mode"] = auth.pop("auth")
        new_auth = self.auth.replace(**auth) if auth else self.auth
        profile = self.table.profile(settings.get("profile", self.profile.name))
        drift = settings.get("drift", self.drift)
        new_drift = {model: exact(f) for model, f in (drift or {}).items()}
        times = {
            name: float(settings.get(name, getattr(self, name)))
            for name in ("processing_after", "done_after")
        }
        with self._lock:
            self.auth, self.profile, self.drift = new_auth, profile, new_drift
            self.processing_after, self.done_after = times["processing_after"], times["done_after"]

    def settings(self) -> dict[str, Any]:
        """The settings, as ``GET /_fake/config`` shows them (never a key)."""
        return {
            "api_key_required": self.auth.api_key is not None,
            "auth": self.auth.mode,
            "profile": self.profile.name,
            "processing_after": self.processing_after,
            "done_after": self.done_after,
            "drift": {model: format_amount(f) for model, f in self.drift.items()},
        }

    def add_faults(self, specs: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list[Fault]:
        items = [specs] if isinstance(specs, Mapping) else list(specs)
        faults = [Fault.from_json(spec) for spec in items]
        with self._lock:
            self.faults.extend(faults)
        return faults

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def take_fault(
        self, method: str, path: str, body: Any = None
    ) -> tuple[Fault | None, dict[str, Any]]:
        """Record the request; the first queued fault that matches it is used once.

        Returns the fault and the request's record, which the app completes (``auth``).
        """
        with self._lock:
            found = next((f for f in self.faults if f.matches(method, path)), None)
            if found is not None:
                found.times -= 1
                if found.times == 0:
                    self.faults.remove(found)
            kind = found.kind if found else None
            record = {"method": method, "path": path, "fault": kind, "auth": None, "body": body}
            self.requests.append(record)
            return found, record

    def reset(self) -> None:
        with self._lock:
            for delivery in self._deliveries():
                with contextlib.suppress(RuntimeError):  # its loop has closed: nothing to stop
                    delivery.get_loop().call_soon_threadsafe(delivery.cancel)
            self.tasks.clear()
            self.faults.clear()
            self.requests.clear()
            self.hooks.clear()

    # --- tasks and the ledger ---------------------------------------------------------

    def create(self, job: Job, body: dict[str, Any], origin: str) -> Task:
        with self._lock:
            task = Task(
                task_id=str(next(self._ids)),
                job=job,
                body=body,
                units=job.units * self.drift.get(job.model, 1),
                origin=origin,
                created_ms=int(time.time() * 1000),
                started=time.monotonic(),
                processing_after=self.processing_after,
                done_after=self.done_after,
            )
            self.tasks[task.task_id] = task
        return task

    def find(self, endpoint: str, task_id: str) -> Task | None:
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None:
                task = next((t for t in self.tasks.values() if t.external_task_id == task_id), None)
        return task if task is not None and task.endpoint == endpoint else None

    def task_of_file(self, name: str) -> Task | None:
        """The succeeded task a result file name (``<task_id>-<i>.png``) belongs to."""
        task_id = name.partition("-")[0]
        with self._lock:
            task = self.tasks.get(task_id)
        if task is None or name not in task.file_names():
            return None
        return task if task.status(time.monotonic()) == "succeed" else None

    def listing(self, endpoint: str) -> list[Task]:
        with self._lock:
            return [t for t in reversed(self.tasks.values()) if t.endpoint == endpoint]

    def ledger(self) -> dict[str, Any]:
        """What the server charged: the units of every succeeded task (failed ones cost nothing)."""
        now = time.monotonic()
        with self._lock:
            tasks = list(self.tasks.values())
        rows = []
        for task in tasks:
            status = task.status(now)
            rows.append(
                {
                    "task_id": task.task_id,
                    "endpoint": task.endpoint,
                    "model": task.model,
                    "billed_as": task.job.key,
                    "seconds": task.job.seconds,
                    "status": status,
                    "units": format_amount(task.units if status == "succeed" else Fraction(0)),
                    "reported": task.view(status).get("final_unit_deduction"),
                }
            )
        return {"total_units": format_amount(self.charged(now)), "tasks": rows}

    def charged(self, now: float | None = None) -> Fraction:
        """The sum of the units of the tasks that have succeeded by ``now``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tasks = list(self.tasks.values())
        return sum((t.units for t in tasks if t.status(now) == "succeed"), Fraction(0))

    def used_by_pack(self) -> dict[str, Fraction]:
        """The units charged so far to each pack (``video``, ``image``): succeeded tasks only."""
        now = time.monotonic()
        with self._lock:
            tasks = list(self.tasks.values())
        used = {"video": Fraction(0), "image": Fraction(0)}
        for task in tasks:
            if task.status(now) == "succeed":
                used["image" if task.endpoint.startswith("images/") else "video"] += task.units
        return used

    def deliveries(self) -> list[asyncio.Task[None]]:
        """The callback deliveries still running."""
        with self._lock:
            return self._deliveries()

    def _deliveries(self) -> list[asyncio.Task[None]]:
        return [d for t in self.tasks.values() for d in t.callbacks if not d.done()]
