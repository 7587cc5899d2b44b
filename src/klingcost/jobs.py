"""A job as a file or a batch line gives it: a body, and the endpoint it is for.

Kept apart from pricing so that reading a job costs no import of pydantic: the CLI's shared
code imports it, and ``klingcost --help`` must stay light.
"""

from __future__ import annotations

from typing import Any

from klingcost.errors import _MISSING, Problem, RequestValidationError


def split_job(value: Any, default_endpoint: str | None) -> tuple[str, Any]:
    """The endpoint and the body of one job as a file or a batch line gives it.

    A job is a body (its endpoint from ``--endpoint``), ``{"endpoint": E, "body": {...}}``,
    or a body with an ``endpoint`` field beside its own (no Kling body has one). An endpoint
    in the job wins over ``--endpoint``, so one batch can mix endpoints. Without either:
    RequestValidationError, naming the field.
    """
    endpoint, body = default_endpoint, value
    if isinstance(value, dict) and "endpoint" in value:
        if "body" in value and set(value) <= {"endpoint", "body"}:
            body = value["body"]
        else:
            body = {name: field for name, field in value.items() if name != "endpoint"}
        endpoint = value["endpoint"] or default_endpoint
    elif isinstance(value, dict) and "body" in value and set(value) == {"body"}:
        body = value["body"]
    if endpoint is None:
        raise RequestValidationError(
            endpoint="(no endpoint given)",
            problems=[
                Problem(
                    "endpoint",
                    _MISSING,
                    'give --endpoint, or an "endpoint" field in the job',
                    "no endpoint",
                )
            ],
        )
    return endpoint, body
