"""A body read by pydantic: every field checked against its endpoint's model, each problem told
in klingcost's words (:mod:`~klingcost.request.problems`), unknown fields warned about or
refused (:mod:`~klingcost.request.unknown`).

The path of every body the plain reader (:mod:`~klingcost.request.plain`) leaves alone: nested
fields, unknown ones, values of another type. Imported on first use, so that a process whose
bodies are all plain never imports pydantic.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from klingcost.errors import Problem, RequestValidationError
from klingcost.request.catalog import Endpoint
from klingcost.request.models import MODEL_FOR, REQUIRED_BY_RULE, RequestModel
from klingcost.request.problems import from_pydantic
from klingcost.request.unknown import nested_fields, unknown_fields


def parse_fields(
    name: Endpoint, prepared: dict[str, Any], strict: bool, problems: list[Problem]
) -> tuple[RequestModel, tuple[str, ...]]:
    """``prepared`` as ``name``'s model, and the warnings about fields klingcost does not know.

    Every problem found is appended to ``problems``; a body broken past reading is raised at
    once, with what was found. A body with broken fields is still read without them (a stand-in
    for a broken required one), so that the rules that span fields are checked too and one
    error names every problem.
    """
    model = MODEL_FOR[name]
    try:
        # The validator itself, not model_validate(): the same call without its Python wrapper
        # (a deferred model is built on first use either way).
        parsed: RequestModel = model.__pydantic_validator__.validate_python(prepared)
    except ValidationError as exc:
        problems.extend(from_pydantic(exc, model))
        # Check the rest of the body too, so that one error lists every problem.
        broken = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        rest = {k: v for k, v in prepared.items() if k not in broken}
        # A missing or broken required field (already reported) must not hide the other rules:
        # stand in a value that keeps every rule (a URL is not inspected).
        for key, info in model.model_fields.items():
            if info.is_required() and key not in rest:
                rest[key] = (
                    [{"image": "https://placeholder.invalid/"}]
                    if key == "image_list"
                    else "https://placeholder.invalid/"
                    if key == "image"
                    else "-"
                )
            elif key in REQUIRED_BY_RULE and key in broken:
                rest[key] = "-"
        try:
            parsed = model.model_validate(rest)
        except ValidationError:
            raise RequestValidationError(endpoint=name, problems=problems) from None
    warnings: tuple[str, ...] = ()
    if parsed.__pydantic_extra__ or not nested_fields(type(parsed)).isdisjoint(
        parsed.__pydantic_fields_set__
    ):
        warnings = unknown_fields(parsed, "", strict, problems)
    return parsed, warnings
