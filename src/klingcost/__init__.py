"""klingcost: know, cap and check what Kling video and image generation costs.

    >>> from klingcost import estimate
    >>> estimate("videos/text2video", {"model_name": "kling-v1-5", "mode": "pro",
    ...                                "duration": "10", "prompt": "a ship"}).units
    Fraction(7, 1)

The errors load with the package; every other public name loads on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from klingcost.errors import (
    AccountError,
    AmbiguousSubmitError,
    AuthenticationError,
    BudgetConfigError,
    BudgetExceeded,
    BudgetNotFound,
    CalibrationError,
    ConcurrencyExceeded,
    ConnectError,
    HoldNotFound,
    HoldStateError,
    InvalidAmountError,
    InvalidRequestError,
    KeyNotFound,
    KeyRefused,
    KlingAPIError,
    KlingcostError,
    LedgerError,
    LedgerNotFound,
    LedgerSchemaError,
    LedgerSetupError,
    LedgerValueError,
    MalformedResponseError,
    PolicyError,
    PricingError,
    PricingSheetError,
    Problem,
    ProxySecretError,
    RateLimitError,
    ReportError,
    RequestValidationError,
    ServerError,
    TaskNotRecorded,
    TransportError,
    UnknownProviderError,
    UnpricedRequestError,
)

if TYPE_CHECKING:  # pragma: no cover - resolved lazily by __getattr__ below
    from klingcost.api.client import AsyncKlingClient, KlingClient
    from klingcost.api.envelope import ImageResult, Task, VideoResult
    from klingcost.batch import BatchEstimate, BatchLine, BatchTotals, estimate_batch
    from klingcost.budgets import Budget, BudgetStatus, HoldAmounts
    from klingcost.calibrate import (
        Calibration,
        Multiplier,
        Observed,
        calibrate,
        import_usage,
        write_overlay,
    )
    from klingcost.clock import Clock, FixedClock, ManualClock, SystemClock
    from klingcost.deduction import Deduction
    from klingcost.guard import AsyncGuardedClient, GuardedClient, Submission
    from klingcost.html_report import html_report
    from klingcost.ledger import Hold, Ledger
    from klingcost.pricing import Cost, Estimate, Step, estimate, price
    from klingcost.reconcile import (
        ClassReconciliation,
        JobClass,
        Reconciliation,
        TaskCheck,
        reconcile,
    )
    from klingcost.reports import (
        Report,
        ReportRow,
        TaskRow,
        export_tasks_csv,
        export_tasks_json,
        iter_tasks,
        spending_report,
        write_csv,
        write_json,
        write_markdown,
    )
    from klingcost.request import (
        ENDPOINTS,
        CameraConfig,
        CameraControl,
        ImageRequest,
        ImageToVideoRequest,
        OmniElement,
        OmniImage,
        OmniVideo,
        OmniVideoRequest,
        TextToVideoRequest,
        ValidatedRequest,
        normalize_endpoint,
        validate_request,
    )
    from klingcost.settlement import Resolution
    from klingcost.sheet import PriceSheet, load_sheet

# Every public name but the errors is imported on first access (PEP 562): building pydantic
# models costs ~60 ms and httpx/sqlite-utils more, so `import klingcost` stays as light as
# `import pydantic`, and a process pays only for the parts it uses.
_LAZY: dict[str, str] = {
    **dict.fromkeys(["Cost", "Estimate", "Step", "estimate", "price"], "klingcost.pricing"),
    **dict.fromkeys(
        [
            "ENDPOINTS",
            "CameraConfig",
            "CameraControl",
            "ImageRequest",
            "ImageToVideoRequest",
            "OmniElement",
            "OmniImage",
            "OmniVideo",
            "OmniVideoRequest",
            "TextToVideoRequest",
            "ValidatedRequest",
            "normalize_endpoint",
            "validate_request",
        ],
        "klingcost.request",
    ),
    **dict.fromkeys(["PriceSheet", "load_sheet"], "klingcost.sheet"),
    **dict.fromkeys(
        ["BatchEstimate", "BatchLine", "BatchTotals", "estimate_batch"], "klingcost.batch"
    ),
    **dict.fromkeys(["KlingClient", "AsyncKlingClient"], "klingcost.api.client"),
    **dict.fromkeys(["Task", "ImageResult", "VideoResult"], "klingcost.api.envelope"),
    **dict.fromkeys(["Deduction"], "klingcost.deduction"),
    **dict.fromkeys(["GuardedClient", "AsyncGuardedClient", "Submission"], "klingcost.guard"),
    **dict.fromkeys(["Resolution"], "klingcost.settlement"),
    **dict.fromkeys(["Ledger", "Hold"], "klingcost.ledger"),
    **dict.fromkeys(["Budget", "BudgetStatus", "HoldAmounts"], "klingcost.budgets"),
    **dict.fromkeys(["Clock", "SystemClock", "FixedClock", "ManualClock"], "klingcost.clock"),
    **dict.fromkeys(
        [
            "Report",
            "ReportRow",
            "TaskRow",
            "spending_report",
            "iter_tasks",
            "export_tasks_csv",
            "export_tasks_json",
            "write_csv",
            "write_json",
            "write_markdown",
        ],
        "klingcost.reports",
    ),
    **dict.fromkeys(["html_report"], "klingcost.html_report"),
    **dict.fromkeys(
        ["Reconciliation", "ClassReconciliation", "JobClass", "TaskCheck", "reconcile"],
        "klingcost.reconcile",
    ),
    **dict.fromkeys(
        ["Calibration", "Multiplier", "Observed", "calibrate", "import_usage", "write_overlay"],
        "klingcost.calibrate",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'klingcost' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ENDPOINTS",
    "AccountError",
    "AmbiguousSubmitError",
    "AsyncGuardedClient",
    "AsyncKlingClient",
    "AuthenticationError",
    "BatchEstimate",
    "BatchLine",
    "BatchTotals",
    "Budget",
    "BudgetConfigError",
    "BudgetExceeded",
    "BudgetNotFound",
    "BudgetStatus",
    "Calibration",
    "CalibrationError",
    "CameraConfig",
    "CameraControl",
    "ClassReconciliation",
    "Clock",
    "ConcurrencyExceeded",
    "ConnectError",
    "Cost",
    "Deduction",
    "Estimate",
    "FixedClock",
    "GuardedClient",
    "Hold",
    "HoldAmounts",
    "HoldNotFound",
    "HoldStateError",
    "ImageRequest",
    "ImageResult",
    "ImageToVideoRequest",
    "InvalidAmountError",
    "InvalidRequestError",
    "JobClass",
    "KeyNotFound",
    "KeyRefused",
    "KlingAPIError",
    "KlingClient",
    "KlingcostError",
    "Ledger",
    "LedgerError",
    "LedgerNotFound",
    "LedgerSchemaError",
    "LedgerSetupError",
    "LedgerValueError",
    "MalformedResponseError",
    "ManualClock",
    "Multiplier",
    "Observed",
    "OmniElement",
    "OmniImage",
    "OmniVideo",
    "OmniVideoRequest",
    "PolicyError",
    "PriceSheet",
    "PricingError",
    "PricingSheetError",
    "Problem",
    "ProxySecretError",
    "RateLimitError",
    "Reconciliation",
    "Report",
    "ReportError",
    "ReportRow",
    "RequestValidationError",
    "Resolution",
    "ServerError",
    "Step",
    "Submission",
    "SystemClock",
    "Task",
    "TaskCheck",
    "TaskNotRecorded",
    "TaskRow",
    "TextToVideoRequest",
    "TransportError",
    "UnknownProviderError",
    "UnpricedRequestError",
    "ValidatedRequest",
    "VideoResult",
    "calibrate",
    "estimate",
    "estimate_batch",
    "export_tasks_csv",
    "export_tasks_json",
    "html_report",
    "import_usage",
    "iter_tasks",
    "load_sheet",
    "normalize_endpoint",
    "price",
    "reconcile",
    "spending_report",
    "validate_request",
    "write_csv",
    "write_json",
    "write_markdown",
    "write_overlay",
]
