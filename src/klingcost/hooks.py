"""``klingcost hooks serve``: settle tasks from Kling's ``notify_hook`` callbacks.

Kling POSTs the task object (``task_id``, ``task_status``, ``task_result``,
``final_unit_deduction`` ...) to the URL given as ``notify_hook`` whenever the task changes
state. This small ASGI app receives them on a secret path, ``/hooks/<secret>``, so that only
someone who knows the URL the guard handed to Kling can post to it.

As Kling advises, a callback is a hint, not the truth: when the app has an API client it
queries the task before acting on it. It settles exactly as ``sync`` does (the same
:func:`klingcost.settlement.resolve`), idempotently, and ignores tasks it has no hold for.

Anyone who learns the URL can post to it (it travels in every request body to the provider),
so a callback moves only its own hold: the task (as the API reports it, when confirmed) must
carry the hold's task id, or, for a hold whose create answer was lost, the hold's own external
id. Without a client (``hooks serve --no-confirm``) a callback may settle at most: a task that
succeeded, at no less than the hold's estimate; it never voids and never lowers a hold.

The server's limits against abuse (timeouts, connections, body size) are in
:mod:`klingcost._limits`.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import stat
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from anyio import to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from klingcost import errors
from klingcost._json import JSONInputError, loads
from klingcost.api.client import AsyncKlingClient
from klingcost.api.envelope import Task, parse_task
from klingcost.ledger import Hold, Ledger
from klingcost.money import MAX_DIGITS
from klingcost.request import normalize_endpoint
from klingcost.settlement import resolve

#: The shortest secret path accepted: shorter ones would be guessable.
MIN_SECRET_LENGTH = 16
SECRET_FILE = "hook-secret"


def stored_secret(home: Path) -> str:
    """The hook secret kept in ``home/hook-secret``, made on first use.

    The file is created readable by its owner only, whole, in one step: written to a private
    temporary file (``O_CREAT | O_EXCL``, mode 0600: never a moment when others can read it)
    and linked into place, which fails if another server made one first (then that one is
    used: two servers starting at once share one secret, never half of one). An existing file
    that its group or others can read is refused (HookSecretError naming the ``chmod`` that fixes
    it): the secret it holds may be known.
    """
    path = home / SECRET_FILE
    if path.exists():
        return _read_secret(path)
    home.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(24)
    draft = home / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, (secret + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(draft, path)
    except FileExistsError:
        return _read_secret(path)
    finally:
        os.unlink(draft)
    return secret


def _read_secret(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & 0o077:
        raise errors.HookSecretError(
            f"the hook secret file {path} can be read by others (mode {stat.S_IMODE(mode):04o}); "
            f"run `chmod 600 {path}`, and consider making a new secret (delete the file): "
            "anyone who read it can post callbacks"
        )
    stored = path.read_text(encoding="utf-8").strip()
    if len(stored) < MIN_SECRET_LENGTH:  # edited by hand: say which file
        raise errors.HookSecretError(
            f"the hook secret in {path} is {len(stored)} characters; it must be at least "
            f"{MIN_SECRET_LENGTH} characters (delete the file to have one made, or give "
            "--secret)"
        )
    return stored


def create_app(
    ledger: Ledger,
    secret: str,
    *,
    client: AsyncKlingClient | None = None,
    close_client: bool = False,
) -> Starlette:
    """The callback app. ``client``, when given, confirms each callback with a task query.

    A callback for a task no hold knows by its id is matched by ``task_info.external_task_id``
    to an open hold whose create answer was lost (sent with ``external_ids``), and settles it.
    ``close_client`` closes ``client`` when the app shuts down (its lifespan).
    """
    if len(secret) < MIN_SECRET_LENGTH:
        raise errors.HookSecretError(
            f"the hook secret is {len(secret)} characters; it must be at least "
            f"{MIN_SECRET_LENGTH} (give a longer --secret, or none to use the stored one)"
        )
    # compare_digest takes str only when it is ASCII (TypeError otherwise, a 500 for any
    # path with an "é"), so compare bytes; surrogatepass encodes every str, one to one.
    expected = secret.encode("utf-8", "surrogatepass")

    async def receive(request: Request) -> JSONResponse:
        given = request.path_params["secret"].encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(given, expected):
            return JSONResponse({"error": "not found"}, status_code=404)
        try:
            # Read as the client reads answers (numbers exact), bounded: a hostile body is a
            # 400, never a 500.
            payload: Any = loads(
                await request.body(), decimals=True, max_digits=MAX_DIGITS, valid_text=True
            )
        except JSONInputError as exc:
            return JSONResponse({"error": f"the body is not JSON klingcost reads: {exc}"}, 400)
        except ValueError:  # JSONDecodeError
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        data = payload.get("data", payload) if isinstance(payload, dict) else None
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if (
            not isinstance(data, dict)
            or not isinstance(task_id, str | int)
            or isinstance(task_id, bool)
        ):
            return JSONResponse({"error": "no task_id in the callback"}, status_code=400)
        external = _external_id(data)
        # Ledger work in a worker thread: the server keeps answering while a write waits.
        hold = await to_thread.run_sync(
            lambda: ledger.hold_for_task(str(task_id)) or _lost_hold(ledger, external)
        )
        endpoint = hold.meta.get("endpoint") if hold is not None else None
        if hold is None or not isinstance(endpoint, str):
            return JSONResponse({"status": "ignored", "reason": "unknown task"})
        try:
            task: Task = (
                # The client refuses an answer about another task than the one asked about.
                await client.get_task(endpoint, str(task_id))
                if client is not None
                else parse_task(normalize_endpoint(endpoint), {}, data=data)
            )
        except errors.KlingAPIError as exc:
            if client is None:  # the callback's own body is not a task
                return JSONResponse({"error": f"not a task: {exc}"}, status_code=400)
            # Kling retries a callback that fails; sync settles it later in any case.
            return JSONResponse({"error": f"could not confirm the task: {exc}"}, status_code=502)
        if (refusal := _mismatch(hold, task)) is not None:
            return JSONResponse({"status": "ignored", "reason": refusal})
        if client is None and (refusal := _unconfirmed_refusal(hold, task)) is not None:
            return JSONResponse({"status": "ignored", "reason": refusal})
        try:
            resolution = await to_thread.run_sync(resolve, ledger, hold, task)
        except errors.HoldStateError as exc:  # e.g. a hold voided by hand, then charged
            return JSONResponse({"error": str(exc), "hold": hold.id}, status_code=409)
        return JSONResponse(
            {"status": resolution.action, "hold": resolution.hold.id, "note": resolution.note}
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if client is not None and close_client:
            await client.aclose()

    return Starlette(
        routes=[
            Route("/hooks/{secret}", receive, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def _mismatch(hold: Hold, task: Task) -> str | None:
    """Why ``task`` is not ``hold``'s own task, or None when it is.

    A hold with a task id takes only that task. A hold whose create answer was lost takes a
    task only when the task itself (as the API reports it, when confirmed) carries the hold's
    own external id: a task without one could be anybody's (a forged callback naming a cheap
    real task and a lost hold's external id would settle the hold at the cheap task's charge).
    """
    if hold.task_id is not None:
        return None if task.task_id == hold.task_id else "the task is not the hold's"
    own = hold.meta.get("external_task_id")
    if not isinstance(own, str) or task.external_task_id != own:
        return "external_task_id differs"
    return None


def _unconfirmed_refusal(hold: Hold, task: Task) -> str | None:
    """Without confirmation a callback may settle at most: never void, never lower.

    Anyone who knows the hook URL can post to it, and the URL travels in every request body
    to the provider. So an unconfirmed callback is believed only where believing it costs the
    budget nothing it did not already count: a task that ended successfully, at a deduction
    at least the hold's estimate. Anything else (a failure, which would void; a lower or
    missing figure, which would lower) waits for ``klingcost sync``, which asks the API.
    """
    if not hold.is_open:
        return None  # resolve changes nothing on a closed hold: "unchanged"
    if task.status in ("submitted", "processing"):
        return None if hold.task_id is not None else "unconfirmed: a lost hold waits for sync"
    if task.status != "succeed":
        return "unconfirmed: a callback without --confirm never voids a hold; sync settles it"
    units = task.deduction.units
    if units is None or units * 1000 < hold.estimate.units_milli:
        return "unconfirmed: a callback without --confirm never lowers a hold; sync settles it"
    return None


def _external_id(data: Mapping[str, Any]) -> str | None:
    info = data.get("task_info")
    external = info.get("external_task_id") if isinstance(info, Mapping) else None
    return external if isinstance(external, str) and external else None


def _lost_hold(ledger: Ledger, external: str | None) -> Hold | None:
    """An open hold without a task (its create answer was lost) sent as ``external``."""
    if external is None:
        return None
    hold = ledger.hold_for_key(external)
    if hold is None or not hold.is_open or hold.task_id is not None:
        return None
    return hold if hold.meta.get("external_task_id") == external else None
