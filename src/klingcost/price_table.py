"""The price table: every combination the price sheet prices, priced by the cost function.

``klingcost prices`` prints it; each row is what :func:`~klingcost.estimate` answers for a
body of that combination, so the table cannot disagree with an estimate.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from klingcost.money import format_amount
from klingcost.pricing import estimate
from klingcost.sheet import PriceSheet


def price_table(sheet: PriceSheet, provider: str | None = None) -> Iterator[dict[str, Any]]:
    """Every priced combination, priced by the cost function itself (so the table is the truth):
    one dict per row with endpoint, model, mode, duration, options, units, pack, cost (exact
    text) and currency, in the sheet's order."""

    def row(endpoint: str, body: dict[str, Any], options: str) -> dict[str, Any]:
        result = estimate(endpoint, body, sheet=sheet, provider=provider)
        return {
            "endpoint": result.endpoint,
            "model": result.model,
            "mode": result.request.mode,
            "duration": result.request.duration,
            "options": options,
            "units": format_amount(result.units),
            "pack": result.pack,
            "cost": format_amount(result.cost.amount),
            "currency": result.cost.currency,
        }

    video = [{"video_url": "https://example.com/v.mp4"}]
    voices = [{"voice_id": "voice-1"}]
    clips = sheet.models["videos/text2video"]
    for model, modes in sheet.video.models.items():
        if model not in clips or model in sheet.per_second:
            continue
        for mode in modes:
            for seconds in sheet.video.durations:
                body: dict[str, Any] = {"model_name": model, "prompt": "p", "duration": seconds}
                if mode != "flat":
                    body["mode"] = mode
                yield row("videos/text2video", body, "")
                if mode in clips[model].sound_modes:
                    yield row("videos/text2video", {**body, "sound": "on"}, "sound on")
                    if model in sheet.video.voice:
                        with_voices = {**body, "sound": "on", "voice_list": voices}
                        yield row("videos/text2video", with_voices, "sound on, voices")
    # Multi-image to video: each model the catalogue lists there (kling-v1-6), silent.
    images = [{"image": "https://example.com/1.png"}, {"image": "https://example.com/2.png"}]
    for model, caps in sheet.models["videos/multi-image2video"].items():
        multi_seconds = {min(caps.durations), max(caps.durations)} | ({5, 10} & caps.durations)
        multi_modes: list[str | None] = [*sorted(caps.modes)] or [None]
        for multi_mode in multi_modes:
            for shown_seconds in sorted(multi_seconds):
                body = {"model_name": model, "prompt": "p", "image_list": images}
                body["duration"] = shown_seconds
                if multi_mode is not None:
                    body["mode"] = multi_mode
                yield row("videos/multi-image2video", body, "1 to 4 images")
    # Per-second models: each mode and option at the shortest, 5 s, 10 s and the longest.
    for endpoint in ("videos/text2video", "videos/omni-video"):
        for model, caps in sheet.models[endpoint].items():
            if model not in sheet.per_second:
                continue
            seconds_shown = sorted(
                {min(caps.durations), max(caps.durations)} | ({5, 10} & caps.durations)
            )
            for mode, rates in sheet.per_second[model].items():
                for shown in seconds_shown:
                    body = {"model_name": model, "prompt": "p", "mode": mode, "duration": shown}
                    yield row(endpoint, body, "")
                    if rates.sound is not None and mode in caps.sound_modes:
                        yield row(endpoint, {**body, "sound": "on"}, "sound on")
                    if rates.voice is not None and endpoint != "videos/omni-video":
                        with_voices = {**body, "sound": "on", "voice_list": voices}
                        yield row(endpoint, with_voices, "sound on, voices")
                    if rates.video is not None and endpoint == "videos/omni-video":
                        yield row(endpoint, {**body, "video_list": video}, "video reference")
    for model in sheet.omni:
        o1 = sheet.models["videos/omni-video"].get(model)
        if o1 is None or model in sheet.per_second:
            continue
        for mode in ("std", "pro"):
            for o1_seconds in sorted({min(o1.durations), 5, 10} & o1.durations):
                body = {"model_name": model, "prompt": "p", "mode": mode, "duration": o1_seconds}
                yield row("videos/omni-video", body, "")
                yield row("videos/omni-video", {**body, "video_list": video}, "video reference")
    for model, image in sheet.images.items():
        if model not in sheet.models["images/generations"]:
            continue
        yield row("images/generations", {"model_name": model, "prompt": "p"}, "per image")
        reference = {"model_name": model, "prompt": "p", "image": "https://example.com/i.png"}
        yield row("images/generations", reference, "reference image")
        for resolution, size in image.resolutions.items():
            if size.factor != 1:
                sized = {"model_name": model, "prompt": "p", "resolution": resolution}
                yield row("images/generations", sized, f"{resolution}, per image")
