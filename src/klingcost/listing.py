"""What a price sheet lists: every job class its catalogue takes, and the range of units each
shape (endpoint and duration) costs across them.

Priced by the same rules as every estimate (:func:`klingcost.pricing.kling_units`: Kling's rules,
before a provider's ``bills_as_pro``), so the listing cannot drift from the sheet. The deduction
verdict judges a task's charge against it (:mod:`klingcost.deduction`); the catalogue's classes
are also what tests price one by one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from fractions import Fraction
from typing import TYPE_CHECKING, Final, cast

from klingcost.errors import UnpricedRequestError
from klingcost.jobclass import JobClass
from klingcost.pricing import kling_units
from klingcost.request import ValidatedRequest

if TYPE_CHECKING:
    from klingcost.request import Endpoint, RequestModel
    from klingcost.sheet import Capabilities, PriceSheet

#: ``(endpoint, seconds)`` -> the lowest and highest units one clip (or one image) of that
#: shape costs, across every model, mode and option the catalogue takes. ``seconds`` is None
#: for images, and for a clip of any duration.
Listing = Mapping[tuple[str, int | None], tuple[Fraction, Fraction]]

# The listing's key in the sheet's cache of derived values (no job-class key equals it).
_LISTING: Final = object()
# A job class has no body: pricing reads only the fields of the class.
_NO_BODY: Final = cast("RequestModel", None)


def listed_units(sheet: PriceSheet) -> Listing:
    """What ``sheet`` lists for each endpoint and duration, priced by the same rules as every
    estimate (Kling's rules, before a provider's ``bills_as_pro``), so it cannot drift from the
    sheet. Computed once per sheet (a sheet is immutable) and kept in its cache."""
    cache = sheet.priced
    found: Listing | None = cache.get(_LISTING)  # pragma: no mutate (a miss recomputes: same)
    if found is None:
        found = cache[_LISTING] = _list_units(sheet)
    return found


def catalogue_jobs(sheet: PriceSheet) -> Iterator[ValidatedRequest]:
    """Every job class the sheet's catalogue takes, as a request without a body, to
    :func:`price` (see :func:`catalogue_classes`)."""
    for job in catalogue_classes(sheet):
        yield ValidatedRequest(
            cast("Endpoint", job.endpoint),  # pragma: no mutate (cast returns its 2nd argument)
            job.model,
            job.mode,
            job.duration,
            job.sound,
            job.video_reference,
            job.reference_image,
            job.n,
            _NO_BODY,  # pragma: no mutate (it is None)
            job.voice,
            job.resolution,
        )


def catalogue_classes(sheet: PriceSheet) -> Iterator[JobClass]:
    """Every job class the sheet's catalogue takes (one image, one clip of each duration, mode,
    sound, voice, video-reference and resolution option the model allows)."""
    for endpoint, models in sheet.models.items():
        for caps in models.values():
            yield from _classes(endpoint, caps)


#: The endpoints whose every clip starts from a reference image.
_FRAMED: Final = ("videos/image2video", "videos/multi-image2video")


def _classes(endpoint: str, caps: Capabilities) -> Iterator[JobClass]:
    model = caps.model
    if endpoint == "images/generations":
        for reference in (False, True):
            for size in (None, *sorted(caps.resolutions)):
                yield JobClass(
                    endpoint, model, None, None, reference_image=reference, resolution=size
                )
        return
    omni = endpoint == "videos/omni-video"
    seconds = set(caps.durations)
    if caps.edit_hold_seconds is not None:
        seconds.add(caps.edit_hold_seconds)
    modes: list[str | None] = [*sorted(caps.modes)] or [None]  # None: one price, no std/pro
    for mode in modes:
        options = [(False, False)]
        if (mode or "flat") in caps.sound_modes:
            options.append((True, False))
            if caps.voice and not omni:  # voices are a text2video/image2video option
                options.append((True, True))
        for sound, voice in options:
            for video in (False, True) if omni else (False,):
                for second in sorted(seconds):
                    yield JobClass(
                        endpoint,
                        model,
                        mode,
                        second,
                        sound=sound,
                        video_reference=video,
                        reference_image=endpoint in _FRAMED,
                        voice=voice,
                    )


def _list_units(sheet: PriceSheet) -> dict[tuple[str, int | None], tuple[Fraction, Fraction]]:
    listing: dict[tuple[str, int | None], tuple[Fraction, Fraction]] = {}

    def widen(key: tuple[str, int | None], units: Fraction) -> None:
        low, high = listing.get(key, (units, units))
        listing[key] = (min(low, units), max(high, units))

    for job in catalogue_classes(sheet):
        try:
            units = kling_units(job, sheet)
        except UnpricedRequestError:
            continue  # the catalogue takes it but no price is given: nothing can be charged
        widen((job.endpoint, job.duration), units)
        if job.duration is not None:
            widen((job.endpoint, None), units)
    return listing
