"""Bodies of plain fields, read without pydantic: the common case, kept cheap.

Most bodies are a handful of top-level strings and numbers (a prompt, a model, a mode, a
duration). :func:`read_plain` reads such a body field by field, accepting exactly what the
pydantic models accept (:mod:`~klingcost.request.fields` is shared with them) and converting
it the same way. At the first doubt (a field it does not know, a nested value, a value of
another type, a required field missing, anything out of range) it returns None and the body
goes through pydantic, which names every problem in the usual words: the fast path never
refuses and never writes a message of its own. ``tests/test_request_plain.py`` holds it to
the pydantic path, body by body.

Why: a ``klingcost estimate`` process that builds one pydantic validator pays for pydantic's
machinery (its model and schema modules, its plugin discovery) several times over what
klingcost's own work costs; the guard and the proxy save the validator's call on every create.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final

from klingcost.request import fields
from klingcost.request.catalog import IMAGE_ASPECTS, VIDEO_ASPECTS, Endpoint

if TYPE_CHECKING:
    from klingcost.request.models import RequestModel


class _Doubt(Exception):
    """A value the fast path will not judge: pydantic reads the body instead."""


Reader = Callable[[Any], Any]


def _text(value: Any) -> Any:
    if type(value) is not str:
        raise _Doubt
    return value


def _choice(*allowed: str) -> Reader:
    options = frozenset(allowed)

    def read(value: Any) -> Any:
        if type(value) is not str or value not in options:
            raise _Doubt
        return value

    return read


#: pydantic reads an int of any size; the fast path leaves the far ones to it.
_INT_RANGE: Final = range(-(2**63), 2**63)


def _count(value: Any) -> Any:
    try:
        number = fields.count(value)
    except ValueError:
        raise _Doubt from None
    if type(number) is not int or number not in _INT_RANGE:
        raise _Doubt
    return number


def _images(value: Any) -> Any:  # n: 1 to 9
    number = _count(value)
    if not 1 <= number <= 9:
        raise _Doubt
    return number


def _unit(value: Any) -> Any:  # cfg_scale, image_fidelity...: a number from 0 to 1, as float
    kind = type(value)
    if (kind is float or kind is int) and 0 <= value <= 1:
        return float(value)
    raise _Doubt


def _flag(value: Any) -> Any:
    if type(value) is not bool:
        raise _Doubt
    return value


_HOOKS: Final[dict[str, Reader]] = dict.fromkeys(
    ("notify_hook", "callback_url", "external_task_id"), _text
)
_VIDEO: Final[dict[str, Reader]] = {
    **_HOOKS,
    "model_name": _text,
    "prompt": _text,
    "negative_prompt": _text,
    "mode": _text,
    "aspect_ratio": _choice(*VIDEO_ASPECTS),
    "duration": _count,
    "sound": _choice("on", "off"),
    "multi_shot": _flag,
    "shot_type": _choice("customize", "intelligence"),
}
#: The plain fields of each endpoint, and how each is read. An endpoint left out
#: (multi-image2video: its image_list is a list) always goes through pydantic.
READERS: Final[dict[Endpoint, dict[str, Reader]]] = {
    "images/generations": {
        **_HOOKS,
        "model_name": _text,
        "prompt": _text,
        "negative_prompt": _text,
        "image": _text,
        "image_reference": _choice("subject", "face"),
        "image_fidelity": _unit,
        "human_fidelity": _unit,
        "resolution": _text,
        "n": _images,
        "aspect_ratio": _choice(*IMAGE_ASPECTS),
    },
    "videos/text2video": {**_VIDEO, "cfg_scale": _unit},
    "videos/image2video": {
        **_VIDEO,
        "cfg_scale": _unit,
        "image": _text,
        "image_tail": _text,
        "static_mask": _text,
    },
    "videos/omni-video": _VIDEO,
}
#: The fields a plain body must have (pydantic names a missing one).
REQUIRED: Final[dict[Endpoint, tuple[str, ...]]] = {
    "images/generations": ("prompt",),
    "videos/image2video": ("image",),
}
#: The fields of each endpoint's model that are never plain (objects and lists): a plain body
#: reads them as None.
NESTED: Final[dict[Endpoint, tuple[str, ...]]] = {
    "images/generations": ("watermark_info",),
    "videos/text2video": (
        "watermark_info",
        "voice_list",
        "camera_control",
        "multi_prompt",
        "element_list",
    ),
    "videos/image2video": (
        "watermark_info",
        "voice_list",
        "camera_control",
        "multi_prompt",
        "element_list",
        "dynamic_masks",
    ),
    "videos/omni-video": (
        "watermark_info",
        "image_list",
        "element_list",
        "video_list",
        "multi_prompt",
    ),
}


class PlainBody:
    """A body of plain fields, read as its endpoint's pydantic model reads: each field of the
    model is an attribute, None when the body leaves it out. One class per endpoint
    (:data:`PLAIN_BODY`); the values given live in the instance, the Nones in the class, so
    reading a field costs what reading a pydantic model's does."""

    endpoint: ClassVar[Endpoint]

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:
        # Reached only for a name that is no field of the endpoint's model.
        raise AttributeError(f"{self.endpoint} has no field {name!r}")

    def to_model(self) -> RequestModel:
        """The same body as its endpoint's pydantic model."""
        from klingcost.request.models import MODEL_FOR

        return MODEL_FOR[self.endpoint].model_validate(self.__dict__)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PlainBody)
            and other.endpoint == self.endpoint
            and other.__dict__ == self.__dict__
        )

    __hash__ = None  # type: ignore[assignment]  # mutable in principle, like a dict

    def __repr__(self) -> str:
        return f"PlainBody({self.endpoint!r}, {self.__dict__!r})"


def _body_class(endpoint: Endpoint) -> type[PlainBody]:
    namespace: dict[str, Any] = dict.fromkeys((*READERS[endpoint], *NESTED[endpoint]))
    namespace["endpoint"] = endpoint
    namespace["__module__"] = __name__
    return type(f"PlainBody[{endpoint}]", (PlainBody,), namespace)


PLAIN_BODY: Final[dict[Endpoint, type[PlainBody]]] = {e: _body_class(e) for e in READERS}


def read_plain(endpoint: Endpoint, prepared: Mapping[str, Any]) -> PlainBody | None:
    """``prepared`` (nulls and empty strings already dropped) as a :class:`PlainBody`, or None
    when any of it needs pydantic's judgement."""
    readers = READERS.get(endpoint)
    if readers is None:
        return None
    values: dict[str, Any] = {}
    try:
        for key, value in prepared.items():
            reader = readers.get(key)
            if reader is None:  # a field this path does not read: unknown, nested, or a list
                return None
            values[key] = reader(value)
    except _Doubt:
        return None
    for key in REQUIRED.get(endpoint, ()):
        if key not in values:
            return None
    return PLAIN_BODY[endpoint](values)
