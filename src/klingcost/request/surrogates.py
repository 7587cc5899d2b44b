"""Text that cannot be sent: a lone surrogate, anywhere in a body, is refused before any hold."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from klingcost.errors import Problem, RequestValidationError
from klingcost.request.catalog import Endpoint


def refuse_lone_surrogates(endpoint: Endpoint, body: Mapping[str, Any]) -> None:
    """Refuse a body with a lone surrogate in any string, value or key, at any depth.

    JSON's ``"\ud800"`` escape makes one, and so does a file name decoded with surrogateescape.
    It cannot be encoded as UTF-8: the request would fail only after its hold was placed, and
    leave the hold unknown. Refused alone (other problems are not listed with it), so that no
    message quotes the raw text: every field and value shown here is escaped.
    """
    if not _has_lone_surrogate(body):  # the common case, kept cheap: no paths are built
        return
    problems: list[Problem] = []
    allowed = "valid Unicode text (no lone surrogate such as \\ud800)"
    stack: list[tuple[str, object]] = [("", body)]
    seen: set[int] = set()
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            at = _lone_surrogate_at(node)
            if at is not None:
                problems.append(
                    Problem(path or "body", node, allowed, f"a lone surrogate at character {at}")
                )
        elif isinstance(node, Mapping | list | tuple) and id(node) not in seen:
            seen.add(id(node))
            items = node.items() if isinstance(node, Mapping) else enumerate(node)
            for key, value in items:
                name = str(key).encode("utf-8", "backslashreplace").decode("utf-8")
                field = f"{path}.{name}" if path else name
                if isinstance(key, str) and _lone_surrogate_at(key) is not None:
                    problems.append(
                        Problem(field, key, allowed, "a field name with a lone surrogate")
                    )
                stack.append((field, value))
    if problems:
        problems.sort(key=lambda problem: problem.field)
        raise RequestValidationError(endpoint=endpoint, problems=problems)


_PLAIN: Final = frozenset({int, float, bool, type(None), str})


def _has_lone_surrogate(body: Mapping[str, Any]) -> bool:
    """Whether any string, value or key of ``body`` holds a lone surrogate (the fast pass of
    :func:`refuse_lone_surrogates`, which an estimate pays on every call)."""
    stack: list[object] = [body]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if type(node) is str:
            if not node.isascii() and _lone_surrogate_at(node) is not None:
                return True
        elif type(node) is dict or isinstance(node, Mapping):
            if id(node) in seen:
                continue
            seen.add(id(node))
            for key, value in node.items():
                if type(key) is str and not key.isascii() and _lone_surrogate_at(key) is not None:
                    return True
                # Numbers, None and ASCII text (most values) cannot hold one: not stacked.
                kind = type(value)
                if kind not in _PLAIN or (kind is str and not value.isascii()):
                    stack.append(value)
        elif type(node) is list or isinstance(node, list | tuple):
            if id(node) not in seen:
                seen.add(id(node))
                stack.extend(node)
        elif isinstance(node, str) and _lone_surrogate_at(node) is not None:
            return True  # a str subclass
    return False


def _lone_surrogate_at(text: str) -> int | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None
