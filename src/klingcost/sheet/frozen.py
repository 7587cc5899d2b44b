"""The bundled sheet's frozen form, ``data/pricing.json``, and the sheet built from it.

The bundled sheet alone (no overlay) is loaded from its frozen, already validated form without
running pydantic's validators (issue 14: they were a fifth of ``klingcost estimate``'s start):
see :func:`_frozen_sheet` for when that form is trusted. ``scripts/freeze_pricing.py`` writes it
(:func:`freeze_bundled_sheet`).
"""

from collections.abc import Callable
from fractions import Fraction
from functools import cache, partial
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from klingcost.errors import PricingSheetError
from klingcost.sheet import types as sheet_types
from klingcost.sheet.catalog import resolve_catalog
from klingcost.sheet.read import _parse_yaml
from klingcost.sheet.types import _STRICT, BUNDLED, PriceSheet
from klingcost.sheet.validate import parse_sheet

_DATA = Path(__file__).parent.parent / "data"
# The bundled sheet as JSON, with the SHA-256 of the YAML text it was made from: reading it
# skips importing and running a YAML parser (the largest part of `klingcost estimate`'s start).
# It is used only while that hash matches the YAML beside it, so an edited sheet is never
# hidden; `python scripts/freeze_pricing.py` rewrites it, and a test keeps it current.
FROZEN = _DATA / "pricing.json"


def _bundled_data() -> dict[str, Any]:
    text = (_DATA / "pricing.yaml").read_text(encoding="utf-8")  # pragma: no mutate (ASCII)
    frozen = _frozen_data(text)  # pragma: no mutate (a fallback: the YAML gives the same data)
    if frozen is not None:
        return frozen
    return _parse_yaml(text, BUNDLED, trusted=True)  # pragma: no mutate (ours: either loader)


def _frozen_data(text: str) -> dict[str, Any] | None:
    """The frozen JSON of the bundled sheet, if it was made from exactly ``text``."""
    import hashlib
    import json

    try:
        frozen = json.loads(FROZEN.read_text(encoding="utf-8"))  # pragma: no mutate (ASCII)
    except (OSError, ValueError):
        return None
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()  # pragma: no mutate (the default)
    if not isinstance(frozen, dict) or frozen.get("yaml_sha256") != digest:
        return None
    data = frozen.get("sheet")
    return data if isinstance(data, dict) else None


def freeze_bundled_sheet() -> Path:
    """Write :data:`FROZEN` from the bundled YAML; returns its path.

    It holds the YAML's data (``sheet``, onto which an overlay merges) and, when that data is a
    valid sheet, the validated sheet itself (``validated``: :func:`canonical_text`'s data, in
    the sheet's own order) with the :func:`_models_fingerprint` of the models that validated
    it. An invalid sheet is frozen without ``validated``, so loading it validates it and says
    what is wrong (``scripts/freeze_pricing.py`` does, after writing).
    """
    import hashlib
    import json

    text = (_DATA / "pricing.yaml").read_text(encoding="utf-8")
    data = _parse_yaml(text, BUNDLED)
    yaml_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    frozen: dict[str, Any] = {"yaml_sha256": yaml_sha256, "sheet": data}
    try:
        sheet = parse_sheet(data, origin=BUNDLED)
    except PricingSheetError:
        pass  # frozen unvalidated: every load validates it, and refuses it naming the problems
    else:
        frozen = {
            "format": _FROZEN_FORMAT,
            "yaml_sha256": yaml_sha256,
            "models_sha256": _models_fingerprint(),
            "sheet": data,
            "validated": sheet.model_dump(mode="json", exclude={"origin"}),
        }
    FROZEN.write_text(json.dumps(frozen, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return FROZEN


# --- the frozen, validated bundled sheet: loaded without pydantic's validators ------------------

#: Bumped when what ``validated`` holds changes meaning in a way the fingerprint cannot see.
_FROZEN_FORMAT = 2


def _frozen_sheet(text: str) -> PriceSheet | None:
    """The bundled sheet from the validated form frozen beside ``text`` (its YAML), or None.

    That form was written by :func:`freeze_bundled_sheet` after the YAML passed
    :func:`parse_sheet`, so it is trusted, and built without validation, only while: it was
    made from exactly ``text`` (the YAML's SHA-256), in this format, by sheet models of the
    same shape as these (:func:`_models_fingerprint`: every field's name, type and default).
    Anything else (an edited YAML, a changed model, a damaged or older file, a value of a type
    the builder does not know) returns None, and the YAML's data is validated in full.
    ``tests/test_sheet_frozen.py`` proves both paths give the same sheet.
    """
    import hashlib
    import json

    try:
        frozen = json.loads(FROZEN.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(frozen, dict)
        or frozen.get("format") != _FROZEN_FORMAT
        or frozen.get("yaml_sha256") != hashlib.sha256(text.encode("utf-8")).hexdigest()
        or frozen.get("models_sha256") != _models_fingerprint()
    ):
        return None
    try:
        sheet = _build(PriceSheet, {**frozen["validated"], "origin": BUNDLED})
        assert isinstance(sheet, PriceSheet)
        sheet.models.update(resolve_catalog(sheet))
    except (_Unfrozen, KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError):
        return None
    return sheet


class _Unfrozen(Exception):
    """The frozen form holds what the builder cannot build: validate instead."""


def _frozen_bundled_sheet() -> PriceSheet | None:
    """The bundled sheet from its frozen form, or None when that form is not current."""
    return _frozen_sheet((_DATA / "pricing.yaml").read_text(encoding="utf-8"))


def _sheet_types() -> list[type]:
    # Every sheet type of klingcost.sheet.types (a new one is seen without being listed anywhere).
    return [
        kind
        for kind in vars(sheet_types).values()
        if isinstance(kind, type) and getattr(kind, "__pydantic_config__", None) is _STRICT
    ]


def _models_fingerprint() -> str:
    """SHA-256 of every sheet type's fields: name, annotation as written, and default."""
    import dataclasses
    import hashlib

    lines = []
    for kind in sorted(_sheet_types(), key=lambda k: k.__name__):
        for item in dataclasses.fields(kind):
            if item.default is not dataclasses.MISSING:
                default = repr(item.default)
            elif item.default_factory is not dataclasses.MISSING:
                default = f"{getattr(item.default_factory, '__name__', '?')}()"
            else:
                default = "(required)"
            lines.append(f"{kind.__name__}.{item.name}: {_type_text(item.type)} = {default}")
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _type_text(kind: Any) -> str:
    """A field's type as text that no Python version spells otherwise (typing's reprs vary)."""
    origin, args = get_origin(kind), get_args(kind)
    if origin is Annotated:
        return f"{_type_text(args[0])} with {', '.join(repr(a) for a in args[1:])}"
    if origin is Literal:
        return f"Literal{list(args)!r}"
    if origin is Union or origin is UnionType:
        return " | ".join(_type_text(arg) for arg in args)
    if origin is not None:
        inner = ", ".join("..." if arg is Ellipsis else _type_text(arg) for arg in args)
        return f"{origin.__name__}[{inner}]"
    return str(getattr(kind, "__name__", repr(kind)))


def _build(annotation: Any, value: Any) -> Any:
    """``value`` (JSON of a validated sheet) as ``annotation``, without validation."""
    return _builder(annotation)(value)


@cache
def _builder(annotation: Any) -> Callable[[Any], Any]:
    """A function that builds ``annotation`` from its JSON, made once per type; it raises
    :class:`_Unfrozen` for a value of another shape. Only the shapes the sheet's types use are
    known: a sheet type, ``X | None``, ``dict``, ``tuple[X, ...]``, ``Literal``, str, int, bool
    and Fraction (an amount, frozen as "n/d" text)."""
    import dataclasses

    if getattr(annotation, "__pydantic_config__", None) is _STRICT:
        kind: Any = annotation
        types: dict[str, Any] = {item.name: item.type for item in dataclasses.fields(kind)}
        fields = {name: _builder(field_type) for name, field_type in types.items()}

        def sheet_type(value: Any) -> Any:
            if type(value) is not dict:
                raise _Unfrozen(kind.__name__)
            built = {}
            for key, item in value.items():
                build = fields.get(key)
                if build is None:
                    raise _Unfrozen(f"{kind.__name__}.{key}")
                built[key] = build(item)
            return kind(**built)

        return sheet_type
    if annotation is Fraction:
        return _fraction
    if annotation in (str, int, bool):
        return partial(_exactly, annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:  # an amount, durations: the marker only validates
        return _builder(args[0])
    if origin is Literal:
        return partial(_one_of, args)
    if (origin is Union or origin is UnionType) and len(args) == 2 and type(None) in args:
        inner = _builder(next(arg for arg in args if arg is not type(None)))
        return lambda value: None if value is None else inner(value)
    if origin is dict:
        key, item = _builder(args[0]), _builder(args[1])
        return lambda value: {key(k): item(v) for k, v in _exactly(dict, value).items()}
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _builder(args[0])
        return lambda value: tuple(item(v) for v in _exactly(list, value))
    raise _Unfrozen(repr(annotation))


def _fraction(value: Any) -> Fraction:
    if type(value) is not str:
        raise _Unfrozen(f"{value!r} is not an amount")
    return Fraction(value)


def _exactly(kind: type, value: Any) -> Any:
    if type(value) is not kind:
        raise _Unfrozen(f"{value!r} is not {kind.__name__}")
    return value


def _one_of(allowed: tuple[Any, ...], value: Any) -> Any:
    if not any(type(value) is type(choice) and value == choice for choice in allowed):
        raise _Unfrozen(f"{value!r} is not one of {allowed}")
    return value
