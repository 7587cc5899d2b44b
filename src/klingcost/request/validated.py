"""The validated request: a body that keeps every rule, with Kling's defaults filled in.

Pure (no pydantic): what pricing, the guard and the ledger read of a request is here, and a
body of plain fields is validated and priced without pydantic being imported at all
(:mod:`~klingcost.request.plain`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from klingcost.jobclass import JobClass
from klingcost.request.catalog import Endpoint

if TYPE_CHECKING:
    from klingcost.request.models import RequestModel
    from klingcost.request.plain import PlainBody


class ValidatedRequest(NamedTuple):
    """A body that keeps every rule, with Kling's defaults filled in. Immutable.

    ``job`` is the request's *job class*: everything that decides its price and nothing else.
    Its fields are the first ones here, in :class:`~klingcost.jobclass.JobClass`'s order.
    ``warnings`` name the fields klingcost did not know and priced as if absent. ``parsed`` is
    the body as it was read: its pydantic model, or, for a body whose every field is a plain
    value, a :class:`~klingcost.request.plain.PlainBody` with the same fields; :attr:`body`
    is always the pydantic model.

    A named tuple, not a frozen dataclass: one is built per estimate, and a frozen dataclass
    of these 13 fields costs about 1 us to build against 0.2 us (the estimate's budget is 10 us).
    """

    endpoint: Endpoint
    model: str
    mode: str | None  # None: the model has no std/pro split
    duration: int | None  # seconds; None for images
    sound: bool
    video_reference: bool
    reference_image: bool
    n: int
    parsed: RequestModel | PlainBody
    voice: bool = False  # sound with a voice_list
    resolution: str | None = None  # images: the resolution priced
    #: The duration was not given and is held at the longest the output can last (a video edit).
    held_duration: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def body(self) -> RequestModel:
        """The validated body as its endpoint's pydantic model (built on first use for a plain
        body: nothing on the estimate path needs it)."""
        from klingcost.request.plain import PlainBody

        parsed = self.parsed
        return parsed.to_model() if isinstance(parsed, PlainBody) else parsed

    @property
    def job(self) -> JobClass:
        """The request's job class (:class:`~klingcost.jobclass.JobClass`): everything that
        decides its price and nothing else."""
        return JobClass.from_request(self)

    @property
    def job_key(self) -> tuple[Any, ...]:
        """The fields of :attr:`job` as a plain tuple, in JobClass's order: every field but
        ``parsed`` and ``warnings``. Equal keys, equal classes; a cache key for what runs on
        every estimate (hashing it costs a fifth of building the JobClass)."""
        return self[:8] + self[9:12]  # two slices: half the cost of naming the 11 fields
