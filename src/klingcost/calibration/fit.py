"""Fitting: the charges the ledger observed, per job class, turned into the seed's
multipliers and the overlay that makes the sheet reproduce them (:func:`calibrate`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from klingcost.calibration.model import (
    IMAGE_ENDPOINT,
    OMNI_ENDPOINT,
    VIDEO_ENDPOINTS,
    Calibration,
    Multiplier,
    Observed,
    sheet_units,
)
from klingcost.calibration.overlay import OBSERVED_SOURCE, merge_overlay, with_sources
from klingcost.errors import CalibrationError
from klingcost.ledger import Ledger, queries
from klingcost.ledger.queries import StoredClass
from klingcost.money import UNIT_EXPONENT, format_amount
from klingcost.sheet import PriceSheet, load_sheet, parse_sheet


def observe(ledger: Ledger) -> list[tuple[StoredClass, dict[int, int]]]:
    """Per job class, how many trusted tasks were charged each amount (milli-units)."""
    counts: dict[StoredClass, dict[int, int]] = defaultdict(dict)
    for charge in queries.observed_charges(ledger):
        counts[charge.job][charge.units_milli] = charge.tasks
    return sorted(counts.items(), key=lambda item: item[0].sort_key())


def _seconds(job: StoredClass) -> str:
    """The class's duration as the sheet keys durations (``"5"``); ``""`` for none."""
    return "" if job.duration is None else str(job.duration)


def _mode(charges: Mapping[int, int]) -> tuple[Fraction, int, int]:
    """The most common charge (ties: the lower), its count, and the total."""
    milli, support = max(charges.items(), key=lambda item: (item[1], -item[0]))
    return Fraction(milli, 10**UNIT_EXPONENT), support, sum(charges.values())


# --- fitting ------------------------------------------------------------------------------


@dataclass
class _Ratios:
    """Ratios from pairs of classes, each with the tasks that support it."""

    values: dict[Fraction, int] = field(default_factory=dict)
    pairs: int = 0

    def add(self, a: Observed, b: Observed) -> None:
        if b.units == 0:
            return
        ratio = a.units / b.units
        self.values[ratio] = self.values.get(ratio, 0) + a.support + b.support
        self.pairs += 1

    def best(self) -> tuple[Fraction, int, bool] | None:
        if not self.values:
            return None
        ratio, support = max(self.values.items(), key=lambda item: (item[1], -item[0]))
        return ratio, support, len(self.values) == 1


def _pairs(
    name: str,
    scope: str,
    ratios: _Ratios,
    sheet_value: Fraction | None,
    basis: str = "pairs",
) -> Multiplier | None:
    best = ratios.best()
    if best is None:
        return None
    fitted, support, consistent = best
    return Multiplier(name, scope, fitted, sheet_value, support, ratios.pairs, consistent, basis)


def _fit_multipliers(
    obs: Sequence[Observed], sheet: PriceSheet, durations: Mapping[str, Fraction]
) -> list[Multiplier]:
    video = {
        (o.job.model, o.job.mode or "flat", _seconds(o.job), o.job.sound): o
        for o in obs
        if o.job.endpoint in VIDEO_ENDPOINTS
    }
    omni = {
        (o.job.model, o.job.mode or "", _seconds(o.job), o.job.video_reference): o
        for o in obs
        if o.job.endpoint == OMNI_ENDPOINT
    }
    found: list[Multiplier] = []
    # Duration: 10 s against 5 s, same model, mode and sound.
    ratios = _Ratios()
    for (model, mode, duration, sound), o in video.items():
        other = video.get((model, mode, "5", sound))
        if duration == "10" and other is not None:
            ratios.add(o, other)
    d = sheet.video.durations
    sheet_dur = d["10"].factor / d["5"].factor if "10" in d and "5" in d else None
    found += filter(None, [_pairs("duration", "10 s vs 5 s", ratios, sheet_dur)])
    models = sorted({k[0] for k in video} | {k[0] for k in omni})
    for model in models:
        modes = sheet.video.models.get(model, {})
        # Pro against std, same duration and sound.
        ratios = _Ratios()
        for (m, mode, duration, sound), o in video.items():
            other = video.get((m, "std", duration, sound))
            if m == model and mode == "pro" and other is not None:
                ratios.add(o, other)
        sheet_pro = (
            modes["pro"].factor / modes["std"].factor if {"pro", "std"} <= modes.keys() else None
        )
        if model in sheet.omni:
            for (m, mode, duration, ref), o in omni.items():
                other = omni.get((m, "std", duration, ref))
                if m == model and mode == "pro" and other is not None:
                    ratios.add(o, other)
            sheet_pro = sheet.omni[model].pro.factor
        found += filter(None, [_pairs("pro_mode", model, ratios, sheet_pro)])
        # Model tier: against kling-v1 std at the same duration, silent.
        ratios, basis = _Ratios(), "pairs"
        mode_key = "flat" if "flat" in modes else "std"
        for (m, mode, duration, sound), o in video.items():
            base = video.get(("kling-v1", "std", duration, False))
            if m == model and mode == mode_key and not sound and base is not None:
                ratios.add(o, base)
        if not ratios.values and model != "kling-v1":
            basis = "sheet base"
            for (m, mode, duration, sound), o in video.items():
                if m == model and mode == mode_key and not sound and duration in durations:
                    unit = sheet.video.base.units * durations[duration]
                    ratios.values[o.units / unit] = ratios.values.get(o.units / unit, 0) + o.support
                    ratios.pairs += 1
        if model != "kling-v1" and mode_key in modes:
            base_factor = sheet.video.models.get("kling-v1", {}).get("std")
            sheet_tier = modes[mode_key].factor / (base_factor.factor if base_factor else 1)
            found += filter(None, [_pairs("model_tier", model, ratios, sheet_tier, basis)])
        # Sound on against off.
        ratios = _Ratios()
        for (m, mode, duration, sound), o in video.items():
            other = video.get((m, mode, duration, False))
            if m == model and sound and other is not None:
                ratios.add(o, other)
        sound_rule = sheet.video.sound.get(model)
        found += filter(
            None, [_pairs("sound", model, ratios, sound_rule.factor if sound_rule else None)]
        )
        # Video reference (O1): with against without.
        if model in sheet.omni:
            ratios = _Ratios()
            for (m, mode, duration, ref), o in omni.items():
                other = omni.get((m, mode, duration, False))
                if m == model and ref and other is not None:
                    ratios.add(o, other)
            ref_rule = sheet.omni[model].video_reference.factor
            found += filter(None, [_pairs("video_reference", model, ratios, ref_rule)])
    return found


def _entry(kind: str, value: Fraction, support: int, before: Fraction | None) -> dict[str, str]:
    was = "new" if before is None else f"the sheet said {format_amount(before)}"
    return {
        kind: format_amount(value),
        "source": OBSERVED_SOURCE,
        "note": f"fitted from {support} charged task{'s' if support != 1 else ''} ({was})",
    }


def _best(candidates: Iterable[tuple[Fraction, int]]) -> tuple[Fraction, int] | None:
    tally: dict[Fraction, int] = {}
    for value, support in candidates:
        tally[value] = tally.get(value, 0) + support
    if not tally:
        return None
    return max(tally.items(), key=lambda item: (item[1], -item[0]))


def _fit_overlay(
    obs: Sequence[Observed], sheet: PriceSheet, multipliers: Sequence[Multiplier]
) -> tuple[dict[str, Any], dict[str, Fraction]]:
    overlay: dict[str, Any] = {}
    video_out: dict[str, Any] = {}
    base = sheet.video.base.units
    durations = {k: v.factor for k, v in sheet.video.durations.items()}
    for m in multipliers:
        if m.name == "duration" and m.consistent and m.changed and "5" in durations:
            durations["10"] = durations["5"] * m.fitted
            video_out["durations"] = {
                "10": _entry(
                    "factor", durations["10"], m.support, sheet.video.durations["10"].factor
                )
            }
    # Model-and-mode factors, from silent clips.
    factors: dict[tuple[str, str], Fraction] = {}
    candidates: dict[tuple[str, str], list[tuple[Fraction, int]]] = defaultdict(list)
    for o in obs:
        j = o.job
        if j.endpoint in VIDEO_ENDPOINTS and not j.sound and _seconds(j) in durations:
            candidates[(j.model, j.mode or "flat")].append(
                (o.units / (base * durations[_seconds(j)]), o.support)
            )
    models_out: dict[str, Any] = {}
    for (model, mode), values in sorted(candidates.items()):
        best = _best(values)
        assert best is not None
        factor, support = best
        factors[(model, mode)] = factor
        current = sheet.video.models.get(model, {}).get(mode)
        if current is None or current.factor != factor:
            before = None if current is None else current.factor
            models_out.setdefault(model, {})[mode] = _entry("factor", factor, support, before)
    if models_out:
        video_out["models"] = models_out
    # Sound factors, against the model-and-mode factor (fitted, else the sheet's).
    sound_candidates: dict[str, list[tuple[Fraction, int]]] = defaultdict(list)
    for o in obs:
        j = o.job
        mode = j.mode or "flat"
        if j.endpoint in VIDEO_ENDPOINTS and j.sound and _seconds(j) in durations:
            sheet_mode = sheet.video.models.get(j.model, {}).get(mode)
            mm = factors.get((j.model, mode), sheet_mode.factor if sheet_mode else None)
            if mm:
                sound_candidates[j.model].append(
                    (o.units / (base * mm * durations[_seconds(j)]), o.support)
                )
    sound_out: dict[str, Any] = {}
    for model, values in sorted(sound_candidates.items()):
        best = _best(values)
        assert best is not None
        current_sound = sheet.video.sound.get(model)
        if current_sound is None or current_sound.factor != best[0]:
            before = None if current_sound is None else current_sound.factor
            sound_out[model] = _entry("factor", best[0], best[1], before)
    if sound_out:
        video_out["sound"] = sound_out
    if video_out:
        overlay["video"] = video_out
    omni_out = _fit_omni(obs, sheet)
    if omni_out:
        overlay["omni"] = omni_out
    images_out = _fit_images(obs, sheet)
    if images_out:
        overlay["images"] = images_out
    return overlay, durations


def _fit_omni(obs: Sequence[Observed], sheet: PriceSheet) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model, rules in sheet.omni.items():
        mine = [o for o in obs if o.job.endpoint == OMNI_ENDPOINT and o.job.model == model]
        if not mine:
            continue
        seconds = {o: Fraction(int(o.job.duration or 0)) for o in mine}
        std = _best(
            (o.units / seconds[o], o.support)
            for o in mine
            if o.job.mode == "std" and not o.job.video_reference and seconds[o]
        )
        per_second = std[0] if std else rules.per_second.units
        pro = _best(
            (o.units / (per_second * seconds[o]), o.support)
            for o in mine
            if o.job.mode == "pro" and not o.job.video_reference and seconds[o]
        )
        pro_factor = pro[0] if pro else rules.pro.factor
        ref = _best(
            (
                o.units / (per_second * (pro_factor if o.job.mode == "pro" else 1) * seconds[o]),
                o.support,
            )
            for o in mine
            if o.job.video_reference and seconds[o]
        )
        entry: dict[str, Any] = {}
        if std and std[0] != rules.per_second.units:
            entry["per_second"] = _entry("units", std[0], std[1], rules.per_second.units)
        if pro and pro[0] != rules.pro.factor:
            entry["pro"] = _entry("factor", pro[0], pro[1], rules.pro.factor)
        if ref and ref[0] != rules.video_reference.factor:
            entry["video_reference"] = _entry(
                "factor", ref[0], ref[1], rules.video_reference.factor
            )
        if entry:
            out[model] = entry
    return out


def _fit_images(obs: Sequence[Observed], sheet: PriceSheet) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in sorted({o.job.model for o in obs if o.job.endpoint == IMAGE_ENDPOINT}):
        current = sheet.images.get(model)
        entry: dict[str, Any] = {}
        for kind, with_ref in (("text", False), ("reference", True)):
            best = _best(
                (o.units / o.job.n, o.support)
                for o in obs
                if o.job.endpoint == IMAGE_ENDPOINT
                and o.job.model == model
                and o.job.reference_image == with_ref
                and o.job.n > 0
            )
            before = None if current is None else getattr(current, kind).units
            if best is not None and best[0] != before:
                entry[kind] = _entry("units", best[0], best[1], before)
        if entry:
            if current is None and len(entry) == 1:  # a new model needs both prices
                only = next(iter(entry.values()))
                entry = {"text": only, "reference": dict(only)}
            out[model] = entry
    return out


def calibrate(
    ledger: Ledger, *, min_samples: int = 1, sheet: PriceSheet | None = None
) -> Calibration:
    """Observe, fit and propose an overlay (see the module docstring)."""
    if min_samples < 1:
        raise CalibrationError(
            f"must be at least 1 (given {min_samples})", option="min_samples", value=min_samples
        )
    sheet = sheet if sheet is not None else load_sheet()
    observed, skipped, trusted = [], [], 0
    for job, charges in observe(ledger):
        units, support, tasks = _mode(charges)
        trusted += tasks
        if tasks < min_samples:
            skipped.append(f"{job.label} ({tasks} task{'s' if tasks != 1 else ''})")
            continue
        observed.append(Observed(job, units, support, tasks, sheet_units(job, sheet)))
    durations = {k: v.factor for k, v in sheet.video.durations.items()}
    multipliers = _fit_multipliers(observed, sheet, durations)
    fitted, _ = _fit_overlay(observed, sheet, multipliers)
    notes = [
        f"{m.name} for {m.scope}: the pairs disagree; the ratio most tasks support was used"
        for m in multipliers
        if not m.consistent
    ]
    overlay = with_sources(
        fitted,
        f"units charged by Kling, observed by klingcost calibrate in {ledger.path}"
        f" on {ledger.clock.now().date().isoformat()}",
    )
    reproduced: list[str] = []
    missed: list[str] = []
    if observed:
        candidate = _candidate_sheet(sheet, overlay)
        for o in observed:
            again = sheet_units(o.job, candidate)
            (reproduced if again == o.units else missed).append(o.job.label)
    return Calibration(
        tuple(observed),
        tuple(multipliers),
        overlay,
        tuple(reproduced),
        tuple(missed),
        tuple(skipped),
        tuple(notes),
        trusted,
    )


def _candidate_sheet(sheet: PriceSheet, overlay: Mapping[str, Any]) -> PriceSheet:
    data = sheet.model_dump(mode="python", exclude={"origin"})
    return parse_sheet(merge_overlay(_plain(data), overlay), origin="(calibrated overlay)")


def _plain(data: Any) -> Any:
    """A dumped sheet back into what YAML would give: Fractions as exact strings."""
    if isinstance(data, Mapping):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_plain(v) for v in data]
    if isinstance(data, Fraction):
        return format_amount(data)
    return data


__all__ = ["calibrate", "observe"]
