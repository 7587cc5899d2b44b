"""Pydantic's validation errors, told in klingcost's words: one Problem per field, naming the
value given and what is allowed (pydantic's own messages name its classes)."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from klingcost.errors import _MISSING, Problem
from klingcost.request.catalog import CAMERA_AXES, DURATION_TEXT
from klingcost.request.models import model_in


def from_pydantic(exc: ValidationError, model: type[BaseModel]) -> list[Problem]:
    """One Problem per field ``exc`` names, in klingcost's words."""
    problems: dict[str, Problem] = {}
    for error in exc.errors(include_url=False):
        kind = error["type"]
        field, _owner = _field_path(model, error["loc"], kind)
        name = field.rsplit(".", 1)[-1]
        ctx = error.get("ctx") or {}
        given = error.get("input", _MISSING)
        if kind == "missing":
            given, allowed, message = _MISSING, "a value", "is required"
        elif kind == "literal_error":
            allowed = str(ctx.get("expected"))
            message = "not an allowed value"
        elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            allowed = _number_text(model, name) or ", ".join(f"{k} {v}" for k, v in ctx.items())
            message = "out of range"
        elif kind.startswith("int") or kind == "value_error":
            # Value errors come only from our own validators (_parse_whole, _fraction_number,
            # _flag), so their text is ours to show.
            allowed = _number_text(model, name) or (
                "true or false"
                if ctx.get("error") and "true or false" in str(ctx["error"])
                else 'a whole number, as 5 or "5"'
            )
            message = str(ctx["error"]) if kind == "value_error" else "not a whole number"
        else:
            allowed, message = _expected_type(kind)
            if name == "mask" and kind.startswith("string"):
                allowed = "an http(s) URL or base64 image data"
        earlier = problems.get(field)
        if earlier is not None:
            # A union field (element_id: a number or a string) fails once per member.
            allowed, message = f"{earlier.allowed}, or {allowed}", "not an allowed type"
        problems[field] = Problem(field, given, allowed, message)
    return list(problems.values())


def _field_path(
    model: type[BaseModel], loc: tuple[int | str, ...], kind: str
) -> tuple[str, type[BaseModel]]:
    """The dotted name of an error's field, and the model that holds the field.

    The error of a union member carries the member as one more part ("str",
    "function-before[whole_number(), int]"). It names no field, so it is left out.
    """
    parts: list[str] = []
    current: type[BaseModel] | None = model
    owner = model
    for part in loc:
        if isinstance(part, int):  # a list index
            parts.append(str(part))
        elif current is not None and part in current.model_fields:
            owner = current
            parts.append(part)
            info = current.model_fields.get(part)
            current = model_in(info.annotation) if info is not None else None
    return ".".join(parts) or "body", owner


def _number_text(model: type[BaseModel], field: str) -> str | None:
    """What a numeric field allows, for both a value out of range and one of the wrong type."""
    if field == "duration":
        return DURATION_TEXT
    if field in CAMERA_AXES:
        return "a number from -10 to 10"
    return {
        "n": "1 to 9",
        "cfg_scale": "0 to 1",
        "image_fidelity": "0 to 1",
        "human_fidelity": "0 to 1",
    }.get(field)


def _expected_type(kind: str) -> tuple[str, str]:
    """(allowed, message) of a type error in our words: pydantic's messages name its classes."""
    if kind.startswith("string"):
        return "a string", "not a string"
    if kind.startswith("float") or kind.startswith("decimal"):
        return "a number", "not a number"
    if kind.startswith("bool"):
        return "true or false", "not true or false"
    if kind in ("list_type", "too_long", "too_short"):
        return "a list", "not a list"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "a JSON object", "not a JSON object"
    return "see the Kling API documentation", "not an allowed value"
