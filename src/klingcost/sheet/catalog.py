"""The catalogue, resolved: which models each endpoint takes and what they allow.

A model is taken where the catalogue lists it, or where the sheet prices it; a mode, a sound
option or a resolution is allowed exactly when the sheet prices it (or the catalogue says so).
"""

from klingcost.sheet.types import Capabilities, CatalogEntry, PriceSheet

_VIDEO_ENDPOINTS = ("videos/text2video", "videos/image2video")
#: Priced as clips too, but only for the models the catalogue lists there (kling-v1-6): a model
#: priced under video.models is not implied on it.
_LISTED_ONLY = ("videos/multi-image2video",)


def resolve_catalog(sheet: PriceSheet) -> dict[str, dict[str, Capabilities]]:
    """Each endpoint's models and what they take. A model the sheet prices but the catalogue
    does not list is taken on the endpoints its price is for, with the sheet's clip durations
    (O1-style omni prices: 3 to 10 s), so a price-only overlay still adds a usable model."""
    clip_seconds = tuple(int(k) for k in sheet.video.durations if k.isdigit())
    resolved: dict[str, dict[str, Capabilities]] = {
        endpoint: {}
        for endpoint in (
            "images/generations",
            *_VIDEO_ENDPOINTS,
            *_LISTED_ONLY,
            "videos/omni-video",
        )
    }
    declared: dict[tuple[str, str], CatalogEntry] = {
        (e, m): entry for e, models in sheet.catalog.items() for m, entry in models.items()
    }
    # Implied entries for priced models the catalogue leaves out.
    implied = CatalogEntry
    for model in sheet.images:
        declared.setdefault(("images/generations", model), implied(source="(its price)"))
    for model in sheet.video.models:
        for endpoint in _VIDEO_ENDPOINTS:
            declared.setdefault(
                (endpoint, model), implied(source="(its price)", durations=clip_seconds)
            )
    for model in sheet.omni:
        declared.setdefault(
            ("videos/omni-video", model),
            implied(source="(its price)", durations=tuple(range(3, 11))),
        )
    for (endpoint, model), entry in declared.items():
        resolved[endpoint][model] = _capabilities(sheet, endpoint, model, entry)
    return resolved


def _capabilities(
    sheet: PriceSheet, endpoint: str, model: str, entry: CatalogEntry
) -> Capabilities:
    modes: set[str] = set()
    sound: set[str] = set()
    voice = False
    resolutions: frozenset[str] = frozenset()
    if endpoint == "images/generations":
        price_key = f"images.{model}"
        image = sheet.images.get(model)
        if image is not None:
            resolutions = frozenset(image.resolutions)
    elif model in sheet.per_second:
        price_key = f"per_second.{model}"
        for mode, rates in sheet.per_second[model].items():
            modes.add(mode)
            if rates.sound is not None:
                sound.add(mode)
            voice = voice or rates.voice is not None
    elif endpoint == "videos/omni-video":
        price_key = f"omni.{model}"
        modes = {"std", "pro"}
    else:
        price_key = f"video.models.{model}"
        # A listed model whose price an overlay removed keeps std/pro: it is valid, and pricing
        # says which price is missing.
        modes = set(sheet.video.models.get(model, {"std": None, "pro": None})) - {"flat"}
        if model in sheet.video.sound:
            sound = set(modes) or {"flat"}
        voice = model in sheet.video.voice
    if entry.sound_modes is not None:
        # Said in the catalogue: the API takes it; a missing price is then named by pricing.
        sound = set(entry.sound_modes)
    default_mode = entry.default_mode
    if default_mode is None and modes:
        default_mode = "std" if "std" in modes else sorted(modes)[0]
    return Capabilities(
        model=model,
        endpoint=endpoint,
        modes=frozenset(modes),
        default_mode=default_mode,
        durations=frozenset(entry.durations),
        default_duration=entry.default_duration,
        sound_modes=frozenset(sound),
        voice=voice,
        camera_control=entry.camera_control,
        multi_shot=entry.multi_shot,
        elements=entry.elements,
        edit_hold_seconds=entry.edit_hold_seconds,
        resolutions=resolutions,
        price_key=price_key,
        source=entry.source,
    )
