"""What the sync and async guards (and the proxy) share: pricing, the hold, and what an
answer does to it.

:class:`GuardCore` holds no client and sends nothing: the facades in :mod:`klingcost.guard`
(and the proxy's gate) send, and hand the outcome back here. The rules:

* :meth:`GuardCore.reserve` prices a body, refuses it before any hold when it cannot be sent
  as JSON, and reserves (a refusal by a budget is recorded in the ledger, then raised);
* :meth:`GuardCore.accepted` attaches the task the API accepted, or keeps its id in the
  accepted-tasks journal when the ledger cannot take it;
* :meth:`GuardCore.failed` voids the hold after a **definite** failure
  (:data:`DEFINITE_FAILURES`: nothing was created) and marks it ``unknown`` otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from klingcost import errors, journal
from klingcost.budgets import HoldAmounts
from klingcost.ledger import Hold, Ledger
from klingcost.money import UNIT_EXPONENT, to_minor
from klingcost.pricing import Estimate, estimate, price
from klingcost.refusals import record_refusal
from klingcost.settlement import Resolution
from klingcost.sheet import PRICING_ENV, PriceSheet, load_sheet, sheet_from_canonical, sheet_hash

if TYPE_CHECKING:
    from klingcost.api.envelope import Task

# The guard's log lines keep the logger they always had.
logger = logging.getLogger("klingcost.guard")

Redactor = Callable[[str], str]

#: API errors after which the task certainly was not created: the hold is released.
DEFINITE_FAILURES: tuple[type[errors.KlingAPIError], ...] = (
    errors.ConnectError,
    errors.AuthenticationError,
    errors.AccountError,
    errors.InvalidRequestError,
    errors.PolicyError,
    errors.RateLimitError,
)


class GuardCore:
    """What the sync and async guards share: pricing, the hold, and the outcome rules."""

    def __init__(
        self,
        team: str,
        ledger: Ledger | str | None,
        sheet: PriceSheet | None,
        provider: str | None,
        hook_url: str | None,
        external_ids: bool,
    ) -> None:
        self.team = team
        self._owns_ledger = not isinstance(ledger, Ledger)
        self.ledger = ledger if isinstance(ledger, Ledger) else Ledger.open(ledger)
        #: Without a sheet of the caller's (``sheet`` or ``KLINGCOST_PRICING``), the guard
        #: prices with the sheet the ledger publishes, so every submitter prices alike.
        self._ledger_priced = sheet is None and not os.environ.get(PRICING_ENV)
        try:
            self.sheet = sheet if sheet is not None else self._default_sheet()
        except BaseException:
            self.close()
            raise
        self.provider = provider
        self.hook_url = hook_url
        self.external_ids = external_ids

    def _default_sheet(self) -> PriceSheet:
        if not self._ledger_priced:
            return load_sheet()
        published = self.ledger.published_sheet()
        if published is None:
            return load_sheet()
        return sheet_from_canonical(
            published.canonical, origin=f"the ledger's published sheet v{published.version}"
        )

    def estimate(self, endpoint: str, body: Mapping[str, Any]) -> Estimate:
        return estimate(endpoint, body, sheet=self.sheet, provider=self.provider)

    def hold(
        self,
        priced: Estimate,
        amounts: HoldAmounts,
        key: str,
        meta: dict[str, Any],
        *,
        key_id: str | None = None,
        max_open_for_key: int | None = None,
        source: str = "guard",
    ) -> tuple[Estimate, Hold]:
        """Reserve, priced with ``self.sheet``. A guard that prices with the ledger's sheet
        and meets a newer one (published since it started) reprices once with it. A refusal
        (budget, or a proxy key's ``max_open_for_key``) is recorded in the ledger, then
        raised as it was (:mod:`klingcost.refusals`)."""
        try:
            try:
                hold = self.ledger.reserve(
                    self.team,
                    amounts,
                    key=key,
                    meta=meta,
                    sheet_sha256=sheet_hash(self.sheet),
                    key_id=key_id,
                    max_open_for_key=max_open_for_key,
                )
            except errors.SheetMismatchError:
                if not self._ledger_priced:
                    raise
                self.sheet = self._default_sheet()
                priced = price(priced.request, sheet=self.sheet, provider=self.provider)
                hold = self.ledger.reserve(
                    self.team,
                    _amounts(priced),
                    key=key,
                    meta=meta,
                    sheet_sha256=sheet_hash(self.sheet),
                    key_id=key_id,
                    max_open_for_key=max_open_for_key,
                )
        except (
            errors.BudgetExceeded,
            errors.BudgetCannotCount,
            errors.ConcurrencyExceeded,
        ) as refused:
            record_refusal(
                self.ledger, refused, team=self.team, job_class=meta, key_id=key_id, source=source
            )
            raise
        return priced, hold

    def reserve(
        self,
        endpoint: str,
        body: Mapping[str, Any],
        key: str | None,
        *,
        extra_meta: Mapping[str, str | int | None] | None = None,
        **options: Any,
    ) -> tuple[Estimate, Hold, dict[str, Any] | None]:
        """Price and hold; returns the body to send, or None when the key was used before.

        With a caller's ``key`` the ledger's reserve is the one arbiter: it returns the hold
        already under that key (from an earlier call, or a concurrent one that got there
        first), and only the call whose own ``claim`` comes back sends the request.
        ``extra_meta`` is kept on the hold beside the request's shape, and ``options`` go to
        :meth:`hold` (``key_id``, ``max_open_for_key``, ``source``: for ``klingcost proxy``).
        """
        priced = self.estimate(endpoint, body)
        outgoing = dict(body)
        if self.hook_url and not outgoing.get("notify_hook"):
            outgoing["notify_hook"] = self.hook_url
        claim = uuid.uuid4().hex
        given = key is not None
        key = key if key is not None else claim
        if self.external_ids and not outgoing.get("external_task_id"):
            outgoing["external_task_id"] = key
        _check_json(priced.endpoint, outgoing)
        amounts = _amounts(priced)
        meta = {
            **job_class(priced),
            "provider": priced.cost.provider,
            "external_task_id": outgoing.get("external_task_id"),
        }
        if extra_meta:
            meta.update(extra_meta)
        if given:
            meta["claim"] = claim
        priced, hold = self.hold(priced, amounts, key, meta, **options)
        if given and hold.meta.get("claim") != claim:
            return priced, hold, None
        return priced, hold, outgoing

    def accepted(self, hold: Hold, task: Task, redact: Redactor) -> Hold:
        """Attach the task the API accepted; on any failure keep its id where sync finds it.

        The API will charge for the task whatever happens here, so its id must survive: it is
        appended to the accepted-tasks journal (:mod:`klingcost.journal`, replayed by
        ``klingcost sync``), the hold is marked ``unknown`` with the id in its reason when the
        ledger still takes writes, and the error raised names the task id.
        """
        try:
            return self.ledger.attach(hold.id, task.task_id, reserved=hold)
        except BaseException as exc:
            failure = self._unrecorded(hold, task.task_id, exc, redact)
            if isinstance(exc, Exception):
                raise failure from exc
            exc.add_note(str(failure))  # an interrupt stays an interrupt
            raise

    def _unrecorded(
        self, hold: Hold, task_id: str, exc: BaseException, redact: Redactor
    ) -> errors.TaskNotRecorded:
        cause = redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        reason = f"the API accepted task {task_id}, not attached: {cause}"
        where: str | None
        try:
            where = str(
                journal.record(self.ledger, hold_id=hold.id, task_id=task_id, reason=reason)
            )
            kept = f"its id is kept in {where}, and `klingcost sync` attaches it"
        except OSError as journal_error:
            where = None
            why = journal_error.strerror or journal_error
            kept = (
                f"the journal could not be written either ({why}): "
                "note the task id; `klingcost sync` finds it only if it was sent with an "
                "external_task_id"
            )
        if not isinstance(exc, errors.LedgerError):  # a ledger that failed is not asked again
            try:
                self.ledger.mark_unknown(hold.id, reason)
            except Exception:  # the journal and the error carry the id
                logger.warning("hold %s: could not be marked unknown", hold.id)
        return errors.TaskNotRecorded(
            f"the API accepted task {task_id} for hold {hold.id} on {self.team!r}, but the "
            f"ledger could not record it ({cause}); {kept}. The hold keeps counting until then",
            hold_id=hold.id,
            task_id=task_id,
            journal=where,
        )

    def failed(self, hold: Hold, exc: BaseException, redact: Redactor) -> None:
        """Void the hold after a definite failure; otherwise keep it counting as unknown.

        A note on ``exc`` says which hold it was and what became of it. The reason stored on
        the hold is redacted of the key (an error may echo it, in any case or cut short).
        """
        cause = redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if isinstance(exc, DEFINITE_FAILURES):
            self.ledger.void(hold.id, reason=f"submission refused: {cause}")
            exc.add_note(f"hold {hold.id} on {self.team!r} was voided: nothing is charged")
            return
        try:
            self.ledger.mark_unknown(hold.id, f"outcome unknown: {cause}")
        finally:  # even when marking fails (a second Ctrl-C), say which hold counts
            exc.add_note(stays_counted(hold, self.team))

    def unanswered(self, hold: Hold, exc: BaseException) -> Resolution:
        """A poll whose query failed for now (:func:`klingcost.polling.is_transient`): the
        hold stays as it is, and ``wait`` goes on."""
        note = f"the status query failed ({type(exc).__name__}: {exc}); still waiting"
        logger.warning("hold %s: %s", hold.id, note)
        return Resolution(hold, "pending", note)

    def endpoint_of(self, hold: Hold) -> str:
        endpoint = hold.meta.get("endpoint")
        if not isinstance(endpoint, str):
            raise errors.HoldStateError(f"hold {hold.id} has no endpoint recorded")
        return endpoint

    def close(self) -> None:
        if self._owns_ledger:
            self.ledger.close()


def stays_counted(hold: Hold, team: str) -> str:
    """What to tell a person about a hold whose submission's outcome is not known."""
    if hold.task_id is not None:
        how = f"task {hold.task_id}; `klingcost sync` settles it when the task ends"
    elif hold.meta.get("external_task_id"):
        how = "`klingcost sync` settles it (it finds the task by its external_task_id)"
    else:
        how = (
            "`klingcost sync` settles it once it knows the task (sent without "
            "--external-ids, it may need `klingcost holds void` by a person who knows "
            "nothing was made)"
        )
    return f"hold {hold.id} on {team!r} stays counted: {how}"


def job_class(priced: Estimate) -> dict[str, str | int | None]:
    """What fixes a job's price, as a hold's meta records it (reports and reconcile group by
    it; a refusal records it too)."""
    return priced.request.job.to_meta()


def _amounts(priced: Estimate) -> HoldAmounts:
    return HoldAmounts(
        units_milli=to_minor(priced.units, UNIT_EXPONENT),
        pack=priced.pack,
        cost_minor=priced.cost.minor,
        currency=priced.cost.currency,
        exponent=priced.cost.exponent,
    )


def _check_json(endpoint: str, body: Mapping[str, Any]) -> None:
    """Refuse, before any hold, a body that cannot be sent as JSON (a Decimal, a NaN, a lone
    surrogate in a hook URL from the environment: httpx encodes the body as UTF-8)."""
    try:
        json.dumps(body, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        problems = []
        for name, value in body.items():
            try:
                json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
            except (TypeError, ValueError) as exc:
                problems.append(
                    errors.Problem(name, value, "JSON strings, numbers, lists, objects", str(exc))
                )
        problems = problems or [
            errors.Problem("body", body, "a JSON object", "the body cannot be sent as JSON")
        ]
        raise errors.RequestValidationError(endpoint=endpoint, problems=problems) from None
