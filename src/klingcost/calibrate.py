"""Calibration: learn Kling's real prices from the charges the ledger has observed.

    result = calibrate(ledger, min_samples=3)
    result.observed        # units really charged per job class, with how many tasks say so
    result.multipliers     # the seed's multipliers fitted to them (10 s, pro, model, sound, ...)
    write_overlay(result.overlay, "observed.yaml")   # load it like any overlay: --pricing FILE

Only *trusted* observations count: settled tasks whose ``final_unit_deduction`` parsed as a
positive number below the cap and whose task did not fail. A job class's observed price is the
charge most of its tasks got (the mode), exactly; ``support`` says how many tasks got it.

Each multiplier is an exact ratio between two observed classes that differ by one factor only
(10 s against 5 s, pro against std, a model against kling-v1, sound on against off, with a video
reference against without). When several pairs give a ratio, the one most tasks support wins
and ``consistent`` says whether they all agreed. A model never seen beside kling-v1 gets its
tier against the sheet's base price instead (``basis`` says which).

The proposed overlay holds only the sheet entries the observations contradict, each with
``source: observed`` and a note saying how many tasks support it; the base price is never moved
(a model's own factor absorbs its drift, so models nobody observed keep their prices). Before it
is returned, the overlay is merged over the sheet and every observed class is priced again with
it: ``reproduced`` lists the classes whose price it now matches.

``import_usage`` reads openai-hk's usage log (rows with ``fen``: credits charged, ``yufen``:
credits left, ``model`` and ``reqid``) and learns the credits per unit the proxy really charges.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

from klingcost._json import JSONInputError, loads
from klingcost.errors import CalibrationError, KlingcostError
from klingcost.ledger import Ledger
from klingcost.money import UNIT_EXPONENT, exact, format_amount
from klingcost.reconcile import JobClass
from klingcost.sheet import PriceSheet, load_sheet, parse_sheet

OBSERVED_SOURCE: Final = "observed"
VIDEO_ENDPOINTS: Final = frozenset({"videos/text2video", "videos/image2video"})
OMNI_ENDPOINT: Final = "videos/omni-video"
IMAGE_ENDPOINT: Final = "images/generations"


@dataclass(frozen=True, slots=True)
class Observed:
    """What one job class was really charged: the most common charge, exactly."""

    job: JobClass
    units: Fraction
    support: int
    tasks: int
    sheet_units: Fraction | None = None

    @property
    def agrees_with_sheet(self) -> bool | None:
        return None if self.sheet_units is None else self.sheet_units == self.units

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.job.to_dict(),
            "label": self.job.label,
            "units": format_amount(self.units),
            "support": self.support,
            "tasks": self.tasks,
            "sheet_units": None if self.sheet_units is None else format_amount(self.sheet_units),
        }


@dataclass(frozen=True, slots=True)
class Multiplier:
    """One fitted multiplier of the seed's price rules, and the evidence for it."""

    name: str  # duration, pro_mode, model_tier, sound, video_reference
    scope: str  # "10 s vs 5 s", a model name
    fitted: Fraction
    sheet: Fraction | None
    support: int  # tasks in the pairs that agree with ``fitted``
    pairs: int
    consistent: bool
    basis: str = "pairs"  # or "sheet base" (no kling-v1 observation to compare with)

    @property
    def changed(self) -> bool:
        return self.sheet is not None and self.sheet != self.fitted

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scope": self.scope,
            "fitted": format_amount(self.fitted),
            "sheet": None if self.sheet is None else format_amount(self.sheet),
            "support": self.support,
            "pairs": self.pairs,
            "consistent": self.consistent,
            "basis": self.basis,
            "changed": self.changed,
        }


@dataclass(frozen=True, slots=True)
class Calibration:
    """Observed prices, fitted multipliers, and the overlay that makes the sheet match them."""

    observed: tuple[Observed, ...]
    multipliers: tuple[Multiplier, ...]
    overlay: dict[str, Any]
    reproduced: tuple[str, ...] = ()
    not_reproduced: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # classes below min_samples
    notes: tuple[str, ...] = ()
    trusted: int = 0  # trusted charges in every class, below min_samples or not

    @property
    def changes(self) -> int:
        return _count_entries(self.overlay)

    def to_dict(self) -> dict[str, Any]:
        return {
            "observed": [o.to_dict() for o in self.observed],
            "multipliers": [m.to_dict() for m in self.multipliers],
            "overlay": self.overlay,
            "reproduced": list(self.reproduced),
            "not_reproduced": list(self.not_reproduced),
            "skipped": list(self.skipped),
            "notes": list(self.notes),
            "trusted": self.trusted,
        }


def _count_entries(data: Any) -> int:
    if isinstance(data, Mapping):
        if "source" in data:
            return 1
        return sum(_count_entries(v) for k, v in data.items() if k != "sources")
    return 0


# --- observations -------------------------------------------------------------------------

_OBSERVED_SQL = (
    "SELECT COALESCE(endpoint, ''), COALESCE(model, ''), COALESCE(mode, ''),"
    " COALESCE(duration, ''), COALESCE(sound, 0), COALESCE(video_reference, 0),"
    " COALESCE(reference_image, 0), COALESCE(n, 0), pack, units_milli, COUNT(*)"
    " FROM holds WHERE state = 'settled' AND deduction_flag = 'ok'"
    " AND task_status IS NOT 'failed' GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10"
)


def observe(ledger: Ledger) -> list[tuple[JobClass, dict[int, int]]]:
    """Per job class, how many trusted tasks were charged each amount (milli-units)."""
    counts: dict[JobClass, dict[int, int]] = defaultdict(dict)
    with ledger.reading():
        rows = ledger.execute(_OBSERVED_SQL).fetchall()
    for row in rows:
        job = JobClass.from_row(row)
        counts[job][int(row[9])] = int(row[10])
    return sorted(counts.items())


def _mode(charges: Mapping[int, int]) -> tuple[Fraction, int, int]:
    """The most common charge (ties: the lower), its count, and the total."""
    milli, support = max(charges.items(), key=lambda item: (item[1], -item[0]))
    return Fraction(milli, 10**UNIT_EXPONENT), support, sum(charges.values())


def request_body(job: JobClass) -> tuple[str, dict[str, Any]]:
    """A request body of ``job``'s class, to price it with a sheet."""
    body: dict[str, Any] = {"model_name": job.model, "prompt": "calibration"}
    if job.endpoint == IMAGE_ENDPOINT:
        body["n"] = job.n or 1
        if job.reference_image:
            body["image"] = "https://example.com/reference.png"
        return job.endpoint, body
    if job.mode:
        body["mode"] = job.mode
    if job.endpoint == OMNI_ENDPOINT:
        body["duration"] = int(job.duration or 5)
        if job.video_reference:
            body["video_list"] = [{"video_url": "https://example.com/ref.mp4"}]
        return job.endpoint, body
    body["duration"] = job.duration or "5"
    if job.sound:
        body["sound"] = "on"
    if job.endpoint == "videos/image2video":
        body["image"] = "https://example.com/first-frame.png"
    if job.endpoint == "videos/multi-image2video":
        body["image_list"] = [{"image": "https://example.com/first-frame.png"}]
    return job.endpoint, body


def sheet_units(job: JobClass, sheet: PriceSheet) -> Fraction | None:
    """What ``sheet`` prices ``job``'s class at, or None when it cannot (unknown to it)."""
    from klingcost.pricing import estimate

    endpoint, body = request_body(job)
    try:
        return estimate(endpoint, body, sheet=sheet).units
    except KlingcostError:
        return None


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
        (o.job.model, o.job.mode or "flat", o.job.duration, o.job.sound): o
        for o in obs
        if o.job.endpoint in VIDEO_ENDPOINTS
    }
    omni = {
        (o.job.model, o.job.mode, o.job.duration, o.job.video_reference): o
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
        if j.endpoint in VIDEO_ENDPOINTS and not j.sound and j.duration in durations:
            candidates[(j.model, j.mode or "flat")].append(
                (o.units / (base * durations[j.duration]), o.support)
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
        if j.endpoint in VIDEO_ENDPOINTS and j.sound and j.duration in durations:
            sheet_mode = sheet.video.models.get(j.model, {}).get(mode)
            mm = factors.get((j.model, mode), sheet_mode.factor if sheet_mode else None)
            if mm:
                sound_candidates[j.model].append(
                    (o.units / (base * mm * durations[j.duration]), o.support)
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


def with_sources(overlay: Mapping[str, Any], note: str) -> dict[str, Any]:
    """``overlay`` with the ``observed`` source declared, as the sheet requires."""
    return {"sources": {OBSERVED_SOURCE: note}, **overlay} if overlay else {}


def merge_overlay(sheet_data: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(sheet_data)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_overlay(merged[key], value)
        else:
            merged[key] = value
    return merged


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


# --- writing an overlay ------------------------------------------------------------------


def overlay_yaml(overlay: Mapping[str, Any], *, header: str = "") -> str:
    """The overlay as YAML: amounts quoted (never a YAML float), comments on top."""
    import yaml

    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [
        "# A klingcost price-sheet overlay. Load it with --pricing FILE or KLINGCOST_PRICING;",
        "# it is merged key by key over the bundled sheet.",
    ]
    body = yaml.safe_dump(dict(overlay), sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(lines) + "\n" + body


def write_overlay(
    overlay: Mapping[str, Any], path: str | os.PathLike[str], *, header: str = ""
) -> None:
    """Write ``overlay`` to ``path`` whole or not at all.

    The YAML is first proved through the sheet loader (PricingSheetError, and nothing
    written, if it does not validate), then written to a temporary file in ``path``'s folder
    and renamed over ``path``: a reader never sees half a file, and a failure leaves the old
    file as it was. A folder that does not exist or cannot be written is a CalibrationError.
    """
    target = check_write_target(path)
    _publish(_stage_overlay(overlay, target, header=header), target)


def check_write_target(path: str | os.PathLike[str]) -> Path:
    """``path`` as a file to write an overlay to: its folder must exist and be writable
    (CalibrationError otherwise, before any work is done)."""
    target = Path(path)
    folder = target.parent
    if not folder.exists():
        raise CalibrationError(
            f"cannot write the overlay to {target}: the folder {folder} does not exist"
            " (create it, or give a file in an existing folder)"
        )
    if not folder.is_dir():
        raise CalibrationError(f"cannot write the overlay to {target}: {folder} is not a folder")
    if target.is_dir():
        raise CalibrationError(f"cannot write the overlay to {target}: it is a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CalibrationError(
            f"cannot write the overlay to {target}: the folder {folder} is not writable"
        )
    return target


def _proved_yaml(overlay: Mapping[str, Any], target: Path, header: str) -> str:
    """The overlay's YAML, once the sheet loader has accepted it over the bundled sheet (the
    loader's own steps, on the text: nothing is on disk yet)."""
    from klingcost.sheet import _bundled_data, _parse_yaml

    text = overlay_yaml(overlay, header=header)
    parse_sheet(merge_overlay(_bundled_data(), _parse_yaml(text, str(target))), origin=str(target))
    return text


def _write_error(target: Path, exc: OSError) -> KlingcostError:
    message = f"cannot write the overlay to {target}: {exc.strerror or exc}"
    if isinstance(exc, FileNotFoundError | NotADirectoryError | PermissionError):
        return CalibrationError(message)  # the path given is wrong: invalid input (exit 2)
    return KlingcostError(message)  # a full disk, an I/O error: exit 1


def _stage_overlay(overlay: Mapping[str, Any], target: Path, *, header: str = "") -> Path:
    """Prove the overlay, then write it to a new temporary file beside ``target``; its path.
    The caller renames it into place (:func:`_publish`) or removes it (:func:`_discard`)."""
    text = _proved_yaml(overlay, target, header)
    staged = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        # O_EXCL: never another's file; mode 0o666 less the umask, as a plain write would give.
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise _write_error(target, exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename makes it the overlay
    except OSError as exc:
        _discard([staged])
        raise _write_error(target, exc) from None
    except BaseException:
        _discard([staged])
        raise
    return staged


def _publish(staged: Path, target: Path) -> None:
    """Rename ``staged`` over ``target``: atomic, as both are in one folder."""
    try:
        os.replace(staged, target)
    except OSError as exc:
        _discard([staged])
        raise _write_error(target, exc) from None


def _discard(staged: list[Path]) -> None:
    for path in staged:
        with contextlib.suppress(OSError):
            path.unlink()
    staged.clear()


# --- the usage log ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One row of openai-hk's usage log: credits charged (``fen``) for one request."""

    reqid: str
    model: str | None
    fen: Fraction
    yufen: Fraction | None
    at: str | None
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CreditRate:
    """Credits per unit observed for one pack, against the sheet's figure."""

    pack: str
    provider: str
    credits: Fraction
    units: Fraction
    rows: int
    distinct: tuple[Fraction, ...]
    sheet: Fraction | None

    @property
    def per_unit(self) -> Fraction:
        return self.credits / self.units

    def to_dict(self) -> dict[str, Any]:
        return {
            "pack": self.pack,
            "provider": self.provider,
            "credits": format_amount(self.credits),
            "units": format_amount(self.units),
            "rows": self.rows,
            "per_unit": format_amount(self.per_unit),
            "per_unit_values": [format_amount(v) for v in self.distinct],
            "sheet": None if self.sheet is None else format_amount(self.sheet),
        }


@dataclass(frozen=True, slots=True)
class UsageImport:
    """What an import did and what it learned."""

    read: int
    new: int
    matched_by_id: int
    matched_by_order: int
    unmatched: tuple[str, ...]
    rates: tuple[CreditRate, ...]
    overlay: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "new": self.new,
            "matched_by_id": self.matched_by_id,
            "matched_by_order": self.matched_by_order,
            "unmatched": list(self.unmatched),
            "rates": [r.to_dict() for r in self.rates],
            "overlay": self.overlay,
        }


_TIME_FIELDS: Final = ("created_at", "create_time", "created", "time", "ctime", "date", "at")


def _amount(row: Mapping[str, Any], name: str, where: str, required: bool) -> Fraction | None:
    value = row.get(name)
    if value is None or value == "":
        if required:
            raise CalibrationError(f"{where}: no {name!r} (credits); every row needs one")
        return None
    try:
        return exact(value)
    except (TypeError, ValueError):
        raise CalibrationError(
            f"{where}: {name} {_shown(value)} is not a number of credits"
            " (write 15000, 15000.5 or 4/3)"
        ) from None


def _shown(value: Any) -> str:
    """A value of the log as its JSON had it: ``0.5``, not ``Decimal('0.5')``."""
    return str(value) if isinstance(value, Decimal) else repr(value)


def _fen(row: Mapping[str, Any], where: str) -> Fraction:
    """The credits a row was charged: a positive amount. Zero or less is no charge to learn
    from (and would make a rate of 0 or below), so the log is refused, naming the row."""
    fen = _amount(row, "fen", where, True)
    assert fen is not None
    if fen <= 0:
        raise CalibrationError(
            f"{where}: fen {_shown(row['fen'])} is not a positive number of credits (fen is"
            " what the request was charged: above 0)"
        )
    return fen


def parse_usage(text: str, *, origin: str = "usage log") -> list[UsageRow]:
    """Rows from JSON (a list, or ``{"data": [...]}``) or JSON Lines. Floats never enter:
    numbers are read as Decimals."""
    stripped = text.strip()
    items: list[Any]
    try:
        data: Any = loads(stripped, decimals=True)
    except ValueError as whole:  # not one document (JSON Lines?), or out of bounds
        try:
            data = [loads(line, decimals=True) for line in stripped.splitlines() if line.strip()]
        except ValueError as exc:
            # A number or nesting out of bounds is the reason, wherever it was met first.
            unread = next((e for e in (whole, exc) if isinstance(e, JSONInputError)), None)
            if unread is not None:
                raise CalibrationError(
                    f"{origin}: JSON klingcost will not read: {unread}"
                ) from None
            raise CalibrationError(f"{origin}: not JSON or JSON Lines: {exc}") from None
    if isinstance(data, Mapping) and "reqid" in data:
        items = [data]  # JSON Lines with one row
    elif isinstance(data, Mapping):
        inner = data.get("data")
        if isinstance(inner, Mapping):
            inner = inner.get("list", inner.get("rows", inner.get("data")))
        if not isinstance(inner, list):
            raise CalibrationError(f"{origin}: a JSON object needs a 'data' list of rows")
        items = inner
    elif isinstance(data, list):
        items = data
    else:
        raise CalibrationError(f"{origin}: expected a list of rows")
    rows = []
    for i, item in enumerate(items, 1):
        where = f"{origin} row {i}"
        if not isinstance(item, Mapping):
            raise CalibrationError(f"{where}: expected an object with fen, yufen, model, reqid")
        reqid = item.get("reqid")
        if not isinstance(reqid, str | int) or isinstance(reqid, bool) or str(reqid) == "":
            raise CalibrationError(f"{where}: no 'reqid' (the request id); every row needs one")
        fen = _fen(item, where)
        at = next((str(item[k]) for k in _TIME_FIELDS if item.get(k) not in (None, "")), None)
        model = item.get("model")
        rows.append(
            UsageRow(
                str(reqid),
                str(model) if model is not None else None,
                fen,
                _amount(item, "yufen", where, False),
                at,
                item,
            )
        )
    return rows


def _match(conn: Any, reqid: str) -> int | None:
    row = conn.execute("SELECT hold_id FROM tasks WHERE task_id = ?", (reqid,)).fetchone()
    if row is None:
        row = conn.execute("SELECT id FROM holds WHERE idempotency_key = ?", (reqid,)).fetchone()
    return None if row is None else int(row[0])


def import_usage(
    ledger: Ledger,
    path: str | os.PathLike[str],
    *,
    newest_first: bool = False,
    provider: str = "openai-hk",
    sheet: PriceSheet | None = None,
    write: str | os.PathLike[str] | None = None,
    header: str = "",
) -> UsageImport:
    """Store the log's rows (once each, by ``reqid``), match them to holds, and learn the
    credits per unit. A row matches the hold whose task id, or whose key (sent as
    ``external_task_id``), equals its ``reqid``; the rest are paired with the unmatched
    settled holds of the same model, newest with newest (the ledger does not keep the proxy's
    request ids, so this is the fallback).

    With ``write``, the overlay (when there is one) is written there as :func:`write_overlay`
    does. The rows are kept only if everything succeeds: a bad row, an overlay the sheet
    refuses or a file that cannot be written leaves the ledger and ``write`` as they were."""
    target = None if write is None else check_write_target(write)  # before any work
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalibrationError(f"cannot read the usage log {source}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CalibrationError(
            f"the usage log {source} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
            f"position {exc.start}): export it as UTF-8 JSON"
        ) from None
    rows = parse_usage(text, origin=str(source))
    if any(r.at for r in rows) and all(r.at for r in rows):
        rows.sort(key=lambda r: r.at or "")
    elif newest_first:
        rows.reverse()
    sheet = sheet if sheet is not None else load_sheet()
    now = ledger.clock.now().isoformat()
    new = by_id = by_order = 0
    staged: list[Path] = []

    def operation(conn: Any) -> tuple[list[CreditRate], dict[str, Any]]:
        nonlocal new, by_id, by_order
        new = 0
        _discard(staged)  # the transaction is being retried: drop the last attempt's file
        for r in rows:
            hold_id = _match(conn, r.reqid)
            cursor = conn.execute(
                "INSERT INTO usage_rows (reqid, model, fen, yufen, at, hold_id, matched_by, raw,"
                " imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (reqid) DO NOTHING",
                (
                    r.reqid,
                    r.model,
                    format_amount(r.fen),
                    None if r.yufen is None else format_amount(r.yufen),
                    r.at,
                    hold_id,
                    "id" if hold_id is not None else None,
                    json.dumps(r.raw, default=str, ensure_ascii=False),
                    now,
                ),
            )
            new += cursor.rowcount
        by_order = _match_by_order(conn)
        by_id = conn.execute("SELECT COUNT(*) FROM usage_rows WHERE matched_by = 'id'").fetchone()[
            0
        ]
        rates = _credit_rates(conn.execute(_CREDIT_SQL).fetchall(), provider, sheet)
        overlay = _credit_overlay(rates, provider)
        if target is not None and overlay:
            staged.append(_stage_overlay(overlay, target, header=header))
        return rates, overlay

    # Nothing is kept unless the whole import succeeds. The overlay is learned from the rows
    # inside the transaction, proved and written to a temporary file beside the target before
    # the rows are committed: any failure rolls the rows back and removes that file. Only the
    # rename follows the commit; it is atomic, in a folder just written to, and should it fail
    # the rows are kept once each (by reqid), so running the import again writes the same file.
    try:
        rates, overlay = ledger._write(operation)
    except BaseException:
        _discard(staged)
        raise
    if target is not None and staged:
        _publish(staged[-1], target)
    with ledger.reading():
        unmatched = tuple(
            r[0]
            for r in ledger.execute(
                "SELECT reqid FROM usage_rows WHERE hold_id IS NULL ORDER BY reqid LIMIT 50"
            )
        )
    return UsageImport(len(rows), new, by_id, by_order, unmatched, tuple(rates), overlay)


def _match_by_order(conn: Any) -> int:
    """Pair unmatched rows with unmatched settled holds of the same model, newest first."""
    paired = 0
    models = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT model FROM usage_rows WHERE hold_id IS NULL AND model IS NOT NULL"
        )
    ]
    for model in models:
        rows = [
            r[0]
            for r in conn.execute(
                "SELECT reqid FROM usage_rows WHERE hold_id IS NULL AND model = ?"
                " ORDER BY COALESCE(at, ''), rowid",
                (model,),
            )
        ]
        rows.reverse()  # newest first
        holds = [
            h[0]
            for h in conn.execute(
                "SELECT h.id FROM holds AS h WHERE h.state = 'settled' AND h.model = ?"
                " AND NOT EXISTS (SELECT 1 FROM usage_rows AS u WHERE u.hold_id = h.id)"
                " ORDER BY h.reserved_at DESC, h.id DESC LIMIT ?",
                (model, len(rows)),
            )
        ]
        for reqid, hold_id in zip(rows, holds, strict=False):
            conn.execute(
                "UPDATE usage_rows SET hold_id = ?, matched_by = 'order' WHERE reqid = ?",
                (hold_id, reqid),
            )
            paired += 1
    return paired


_CREDIT_SQL: Final = (
    "SELECT h.pack, u.fen, h.units_milli FROM usage_rows AS u JOIN holds AS h"
    " ON h.id = u.hold_id WHERE h.state = 'settled' AND h.units_milli > 0"
)


def credit_rates(
    ledger: Ledger, *, provider: str = "openai-hk", sheet: PriceSheet | None = None
) -> list[CreditRate]:
    """Credits per unit per pack, over every imported row matched to a settled hold."""
    sheet = sheet if sheet is not None else load_sheet()
    with ledger.reading():
        rows = ledger.execute(_CREDIT_SQL).fetchall()
    return _credit_rates(rows, provider, sheet)


def _credit_overlay(rates: Sequence[CreditRate], provider: str) -> dict[str, Any]:
    """The overlay of the credits per unit that differ from the sheet's; {} when none do."""
    per_unit: dict[str, Any] = {}
    for rate in rates:
        if rate.sheet != rate.per_unit:
            per_unit[rate.pack] = {
                "amount": format_amount(rate.per_unit),
                "source": OBSERVED_SOURCE,
                "note": f"credits charged / units charged over {rate.rows} usage-log rows"
                + ("" if rate.sheet is None else f" (the sheet said {format_amount(rate.sheet)})"),
            }
    if not per_unit:
        return {}
    return with_sources(
        {"providers": {provider: {"per_unit": per_unit}}},
        f"{provider}'s usage log (fen per request), imported by klingcost import-usage",
    )


def _credit_rates(rows: Iterable[Any], provider: str, sheet: PriceSheet) -> list[CreditRate]:
    sums: dict[str, list[Any]] = {}
    for pack, fen, units_milli in rows:
        credits = exact(fen)
        units = Fraction(units_milli, 10**UNIT_EXPONENT)
        entry = sums.setdefault(pack, [Fraction(0), Fraction(0), 0, set()])
        entry[0] += credits
        entry[1] += units
        entry[2] += 1
        entry[3].add(credits / units)
    profile = sheet.providers.get(provider)
    out = []
    for pack, (credits, units, count, distinct) in sorted(sums.items()):
        rule = profile.per_unit.get(pack) if profile else None  # type: ignore[call-overload]
        out.append(
            CreditRate(
                pack,
                provider,
                credits,
                units,
                count,
                tuple(sorted(distinct)),
                rule.amount if rule else None,
            )
        )
    return out


__all__ = [
    "Calibration",
    "CalibrationError",
    "CreditRate",
    "Multiplier",
    "Observed",
    "UsageImport",
    "UsageRow",
    "calibrate",
    "check_write_target",
    "credit_rates",
    "import_usage",
    "observe",
    "overlay_yaml",
    "parse_usage",
    "request_body",
    "sheet_units",
    "write_overlay",
]
