"""The one exception tree of klingcost.

Every error a caller can meet derives from :class:`KlingcostError`. Errors carry their data as
keyword-only attributes (as httpx's do), so a caller can act on them without parsing messages,
and each message says what was given and what is allowed. No message, attribute or repr ever
holds an API key: the client redacts it before an error is built. Each error's ``exit_code``
is the command line's exit code for it (1 when the tree below names none).

    KlingcostError
    ├── RequestValidationError      a request body breaks a Kling rule       (CLI exit 2)
    ├── PricingError
    │   ├── PricingSheetError       a price sheet cannot be loaded           (CLI exit 2)
    │   ├── UnknownProviderError    no such provider profile in the sheet    (CLI exit 2)
    │   └── UnpricedRequestError    the sheet has no price for a valid request (CLI exit 2)
    ├── LedgerError
    │   ├── LedgerSchemaError       a ledger file from a newer klingcost, or not a ledger
    │   ├── LedgerSetupError        a set-up that cannot keep the ledger's promises (CLI exit 2)
    │   ├── LedgerNotFound          a command that only reads met no ledger  (CLI exit 2)
    │   ├── LedgerValueError        a value the ledger cannot store          (CLI exit 2)
    │   ├── BudgetNotFound          no budget of that name                   (CLI exit 2)
    │   ├── BudgetConfigError       a budget definition is invalid           (CLI exit 2)
    │   ├── HoldNotFound            no hold of that id                       (CLI exit 2)
    │   ├── HoldStateError          an operation that the hold's state forbids
    │   ├── TaskNotRecorded         the API accepted a task the ledger could not record
    │   ├── InvalidAmountError      not a non-negative int of minor units    (CLI exit 2)
    │   ├── BudgetExceeded          a hold would overspend a budget          (CLI exit 3)
    │   ├── BudgetCannotCount       a budget on the path cannot count the job (CLI exit 3)
    │   ├── SheetMismatchError      priced with another sheet than the published one (CLI exit 2)
    │   ├── ConcurrencyExceeded     a proxy key has its --max-concurrent jobs open (CLI exit 3)
    │   └── KeyNotFound             no proxy key with that id                (CLI exit 2)
    ├── KeyRefused                  a proxy request's key fails (HTTP 401, codes 1000-1004)
    ├── ProxySecretError            the proxy's server secret is unsafe or unreadable (CLI exit 2)
    ├── ReportError                 a report cannot be made as asked         (CLI exit 2)
    ├── CalibrationError            calibration or a usage import failed     (CLI exit 2)
    ├── HookSecretError             the hook secret is too short or readable (CLI exit 2)
    ├── InvalidTaskIdError          a task id no task query can carry
    └── KlingAPIError               the Kling API (or the transport) failed
        ├── TransportError          no answer: connection failed or timed out
        │   ├── ConnectError        failed before the request was sent (safe to retry)
        │   └── AmbiguousSubmitError  the request may have reached the API (never resent)
        ├── MalformedResponseError  an answer that is not the documented JSON
        ├── AuthenticationError     401, codes 1000-1004
        ├── AccountError            1100-1103 (1102: resource pack used up)
        ├── InvalidRequestError     400/404, codes 1200-1203
        ├── PolicyError             1300, 1301, 1304
        ├── RateLimitError          1302 (rate) and 1303 (concurrency); retried with backoff
        └── ServerError             5xx, codes 5000-5002
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

#: The exit codes of the command line, which every error names in its ``exit_code``.
EXIT_ERROR = 1
EXIT_INVALID = 2
EXIT_REFUSED = 3


class KlingcostError(Exception):
    """Base of every error klingcost raises on purpose.

    ``exit_code`` says what kind of failure it is, as the command line's exit code: 1 an error
    (the API failed, the ledger is damaged), 2 invalid input (change the input and retry), 3
    refused by a budget. An error about one argument says which in data, never in flag text,
    so that a library caller and the command line each name it in their own words:

    * ``option``: the argument of the call that was wrong, by its keyword (``"by"``,
      ``"min_samples"``); the command line shows it as its option (``--by``, ``--min-samples``).
      The message then says what is wrong with it, without naming it.
    * ``field``: the field of a document (a request body, a sheet) that was wrong.
    * ``value``: what was given (None when it is not kept: a secret, say);
      ``allowed``: what would have been accepted, in words.
    """

    exit_code: ClassVar[int] = EXIT_ERROR
    # Class-level defaults: an error that names nothing has them as None, and a subclass that
    # sets one of them before calling ``super().__init__`` keeps its own.
    option: str | None = None
    field: str | None = None
    value: Any = None
    allowed: str | None = None

    def __init__(
        self,
        *args: object,
        option: str | None = None,
        field: str | None = None,
        value: Any = None,
        allowed: str | None = None,
    ) -> None:
        super().__init__(*args)
        if option is not None:
            self.option = option
        if field is not None:
            self.field = field
        if value is not None:
            self.value = value
        if allowed is not None:
            self.allowed = allowed


# --- request validation -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule: where, what was given, what is allowed."""

    field: str
    given: Any
    allowed: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message} (given {_show(self.given)}; allowed: {self.allowed})"


_MISSING = object()


def _show(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    try:
        text = repr(value)
    except ValueError:  # an int past Python's 4300-digit limit for text (or one inside value)
        if isinstance(value, int):
            return f"a whole number of about {value.bit_length() * 30103 // 100000 + 1} digits"
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= 80 else text[:77] + "..."


class RequestValidationError(KlingcostError, ValueError):
    """A request body breaks one or more of Kling's rules; ``problems`` lists every one."""

    exit_code = EXIT_INVALID

    def __init__(self, *, endpoint: str, problems: Sequence[Problem]) -> None:
        self.endpoint = endpoint
        self.problems: tuple[Problem, ...] = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        super().__init__(
            f"invalid {endpoint} request ({count} problem{'s' * (count != 1)}):\n{lines}"
        )


# --- pricing ------------------------------------------------------------------------------


class PricingError(KlingcostError):
    """The price sheet cannot price something."""


class PricingSheetError(PricingError, ValueError):
    """A price sheet file is missing, unreadable or breaks the sheet's schema."""

    exit_code = EXIT_INVALID

    def __init__(self, *, source: str, problems: Sequence[str], unreadable: bool = False) -> None:
        self.source = source
        self.problems = tuple(problems)
        if unreadable:  # the file is missing or cannot be read: nothing in it is "invalid"
            super().__init__(f"price sheet {source}: {'; '.join(self.problems)}")
            return
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"price sheet {source} is invalid:\n{lines}")


class UnknownProviderError(PricingError, LookupError):
    """``provider=`` (``--provider``) names no provider profile of the price sheet."""

    exit_code = EXIT_INVALID

    def __init__(self, *, provider: str, known: Sequence[str], source: str) -> None:
        self.provider = provider
        self.known = tuple(known)
        super().__init__(
            f"no provider {provider!r} in the price sheet ({source}); choose one of "
            f"{', '.join(self.known)}",
            option="provider",
            value=provider,
            allowed=", ".join(self.known),
        )


class UnpricedRequestError(PricingError, LookupError):
    """A valid request for which the loaded sheet has no price (an overlay removed one)."""

    exit_code = EXIT_INVALID

    def __init__(self, *, endpoint: str, model: str, missing: str) -> None:
        self.endpoint = endpoint
        self.model = model
        self.missing = missing
        super().__init__(f"the price sheet has no price for {endpoint} {model}: {missing}")


# --- ledger -------------------------------------------------------------------------------


class LedgerError(KlingcostError):
    """The ledger refused or failed an operation."""


class LedgerSchemaError(LedgerError):
    """The file is not a klingcost ledger, or was written by a newer klingcost."""


class LedgerSetupError(LedgerError, ValueError):
    """The ledger is reached in a way that cannot keep its promises: one SQLite file under two
    paths (a hard link, a file bind-mounted on its own), where each path gets its own
    write-ahead log and writers on different paths overspend. Nothing was written."""

    exit_code = EXIT_INVALID


class LedgerNotFound(LedgerError, LookupError):
    """A command that only reads was pointed at a ledger file that does not exist."""

    exit_code = EXIT_INVALID


class BudgetNotFound(LedgerError, LookupError):
    exit_code = EXIT_INVALID

    def __init__(self, *, team: str) -> None:
        self.team = team
        super().__init__(
            f"no budget named {team!r}; create it with: klingcost budget set {team} --limit N"
        )


class BudgetConfigError(LedgerError, ValueError):
    """A budget definition is invalid (a parent cycle, an unknown unit, a bad limit)."""

    exit_code = EXIT_INVALID


class HoldNotFound(LedgerError, LookupError):
    exit_code = EXIT_INVALID

    def __init__(self, *, hold: str) -> None:
        self.hold = hold
        super().__init__(f"no hold {hold!r} in the ledger")


class HoldStateError(LedgerError):
    """An operation that the hold's current state does not allow (settling a voided hold)."""


class TaskNotRecorded(LedgerError):
    """The API accepted a task, but the ledger could not record its id on the hold.

    The hold keeps counting; the task id is kept in the accepted-tasks journal (``journal``,
    None when even that could not be written), which ``klingcost sync`` replays.
    """

    def __init__(
        self,
        message: str,
        *,
        hold_id: int,
        task_id: str,
        journal: str | None,
    ) -> None:
        self.hold_id = hold_id
        self.task_id = task_id
        self.journal = journal
        super().__init__(message)


class LedgerValueError(LedgerError, ValueError):
    """A value handed to the ledger cannot be stored: an integer past 2**63 - 1, text that is
    not valid Unicode (a lone surrogate), a key or team that is not a string."""

    exit_code = EXIT_INVALID


class InvalidAmountError(LedgerError, ValueError):
    """An amount handed to the ledger is not a non-negative int in minor units (a float, -1)."""

    exit_code = EXIT_INVALID


class BudgetExceeded(LedgerError):
    """A hold would take a budget past its limit. Nothing was written."""

    exit_code = EXIT_REFUSED

    def __init__(
        self,
        *,
        team: str,
        needed: int,
        available: int,
        limit: int,
        unit: str,
        period: str,
        window: str,
        requested_by: str | None = None,
        used: int | None = None,
    ) -> None:
        self.team = team
        self.needed = needed
        self.available = available
        self.limit = limit
        self.unit = unit
        self.period = period
        self.window = window
        self.requested_by = requested_by
        via = f" (on the path of {requested_by!r})" if requested_by and requested_by != team else ""
        when = "(the budget has no period)" if period == "none" else f"in period {period} {window}"
        over = (
            f"; true charges took it past its limit ({used} {unit} used): it refuses every "
            "hold until it is back under (a new period, or a higher --limit)"
            if used is not None and used > limit
            else ""
        )
        super().__init__(
            f"budget {team!r}{via} refused: needs {needed} {unit}, "
            f"{available} of {limit} {unit} left {when}{over}"
        )


class BudgetCannotCount(LedgerError):
    """A budget on the team's path cannot count the job (a units budget of the other pack).

    Admitting it would hold nothing against that budget, so it would guard nothing: the job is
    refused, with nothing written, and the message says which budget to add or change.
    """

    exit_code = EXIT_REFUSED

    def __init__(self, *, budget: str, team: str, counts: str, pack: str, currency: str) -> None:
        self.budget = budget
        self.team = team
        self.pack = pack
        via = f" (on the path of {team!r})" if team != budget else ""
        super().__init__(
            f"budget {budget!r}{via} counts {counts} and cannot count this {pack} job, so it "
            f"would not guard it: refused, nothing was held or sent. Every budget on a team's "
            f"path must count its jobs: make {budget!r} count {currency}, which counts both "
            f"packs (`klingcost budget set {budget} --unit {currency} --limit N`), or submit "
            f"{pack} jobs as a team whose budgets count them (`klingcost budget set TEAM "
            f"--unit units --pack {pack} --limit N`)"
        )


class SheetMismatchError(LedgerError):
    """A hold priced with another price sheet than the one the ledger publishes."""

    exit_code = EXIT_INVALID

    def __init__(self, *, ledger: str, published: str, version: int, given: str | None) -> None:
        self.published = published
        self.version = version
        self.given = given
        what = f"sheet sha256 {given}" if given else "no sheet named (no sha256 given)"
        super().__init__(
            f"ledger {ledger} prices holds with its published sheet v{version} (sha256 "
            f"{published}), but this hold was priced with {what}: refused, nothing was held "
            "or sent. Price with the ledger's sheet (leave out --pricing and KLINGCOST_PRICING), "
            "publish this one for everyone (`klingcost pricing publish FILE`), or let "
            "submitters price with their own overlays (`klingcost pricing local-overlays allow`)"
        )


class ConcurrencyExceeded(LedgerError):
    """A proxy key already has ``limit`` jobs open (its ``--max-concurrent``). Nothing was
    written; the proxy answers HTTP 429 with Kling's code 1303."""

    exit_code = EXIT_REFUSED

    def __init__(self, *, key_id: str, team: str, limit: int, open_holds: int) -> None:
        self.key_id = key_id
        self.team = team
        self.limit = limit
        self.open_holds = open_holds
        super().__init__(
            f"key {key_id} of team {team!r} refused: it has {open_holds} jobs open and may "
            f"have at most {limit} at once (--max-concurrent); wait for one to finish"
        )


class KeyNotFound(LedgerError, LookupError):
    exit_code = EXIT_INVALID

    def __init__(self, *, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(f"no key {key_id!r} in the ledger; `klingcost keys list` shows them")


class KeyRefused(KlingcostError):
    """A request to ``klingcost proxy`` whose ``Authorization`` fails: ``code`` is Kling's own
    (1000 failed, 1001 empty, 1002 invalid, 1003 not yet valid, 1004 expired), ``status`` 401.
    The message never holds the key or token given."""

    def __init__(self, message: str, *, code: int) -> None:
        self.code = code
        self.status = 401
        super().__init__(message)


class ProxySecretError(KlingcostError, ValueError):
    """The server secret that proxy keys' secret keys derive from cannot be used: a file that
    others may read, or too short a secret. The message says which file or variable."""

    exit_code = EXIT_INVALID


# --- reports and calibration --------------------------------------------------------------


class ReportError(KlingcostError, ValueError):
    """A report was asked for in a way that cannot work (which option, what was given)."""

    exit_code = EXIT_INVALID


class CalibrationError(KlingcostError, ValueError):
    """Calibration or a usage import could not proceed: which file or row, and why."""

    exit_code = EXIT_INVALID


# --- setup ----------------------------------------------------------------------------------


class HookSecretError(KlingcostError, ValueError):
    """The hook secret is too short, or its file can be read by others (which file, the fix)."""

    exit_code = EXIT_INVALID


# --- the Kling API ------------------------------------------------------------------------


class KlingAPIError(KlingcostError):
    """The Kling API answered with an error, or could not be reached.

    ``code`` is the API's own code (None when there was no JSON answer), ``status`` the HTTP
    status (None when there was no answer), ``request_id`` the API's id for the call.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = message
        self.code = code
        self.status = status
        self.request_id = request_id
        parts = [message]
        if code is not None:
            parts.append(f"code {code}")
        if status is not None:
            parts.append(f"HTTP {status}")
        if request_id:
            parts.append(f"request {request_id}")
        super().__init__(" | ".join(parts))


class TransportError(KlingAPIError):
    """No usable answer arrived."""


class ConnectError(TransportError):
    """The connection failed before the request was sent: safe to retry."""


class AmbiguousSubmitError(TransportError):
    """The request may have reached the API; the outcome is unknown. Never resent."""


class MalformedResponseError(KlingAPIError):
    """The answer was not the documented JSON envelope."""


class AuthenticationError(KlingAPIError):
    """HTTP 401, codes 1000-1004: the key is missing, invalid, not yet valid or expired."""


class AccountError(KlingAPIError):
    """Codes 1100-1103: account abnormal, in arrears, pack used up, or no permission."""


class InvalidTaskIdError(KlingcostError, ValueError):
    """A task id that no task query can carry (empty, or with a "/"), refused before sending."""


class InvalidRequestError(KlingAPIError):
    """HTTP 400/404, codes 1200-1203: the API refused the parameters."""


class PolicyError(KlingAPIError):
    """Codes 1300, 1301, 1304: platform policy, content safety, IP whitelist."""


class RateLimitError(KlingAPIError):
    """Codes 1302 (rate) and 1303 (parallel tasks over the pack's limit)."""


class ServerError(KlingAPIError):
    """HTTP 5xx, codes 5000-5002."""
