"""Overlay files: an overlay declared and merged over a sheet, written as YAML whole or not at
all (proved through the sheet loader first, staged beside the target, renamed into place)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from klingcost.errors import CalibrationError, KlingcostError
from klingcost.sheet import parse_sheet

#: The source every entry calibration writes declares (``source: observed``).
OBSERVED_SOURCE: Final = "observed"


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
    publish_overlay(stage_overlay(overlay, target, header=header), target)


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
    from klingcost.sheet.frozen import _bundled_data
    from klingcost.sheet.read import _parse_yaml

    text = overlay_yaml(overlay, header=header)
    parse_sheet(merge_overlay(_bundled_data(), _parse_yaml(text, str(target))), origin=str(target))
    return text


def _file_error(target: Path, exc: OSError) -> KlingcostError:
    message = f"cannot write the overlay to {target}: {exc.strerror or exc}"
    if isinstance(exc, FileNotFoundError | NotADirectoryError | PermissionError):
        return CalibrationError(message)  # the path given is wrong: invalid input (exit 2)
    return KlingcostError(message)  # a full disk, an I/O error: exit 1


def stage_overlay(overlay: Mapping[str, Any], target: Path, *, header: str = "") -> Path:
    """Prove the overlay, then write it to a new temporary file beside ``target``; its path.
    The caller renames it into place (:func:`publish_overlay`) or removes it
    (:func:`discard_staged`)."""
    text = _proved_yaml(overlay, target, header)
    staged = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        # O_EXCL: never another's file; mode 0o666 less the umask, as a plain write would give.
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise _file_error(target, exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename makes it the overlay
    except OSError as exc:
        discard_staged([staged])
        raise _file_error(target, exc) from None
    except BaseException:
        discard_staged([staged])
        raise
    return staged


def publish_overlay(staged: Path, target: Path) -> None:
    """Rename ``staged`` over ``target``: atomic, as both are in one folder."""
    try:
        os.replace(staged, target)
    except OSError as exc:
        discard_staged([staged])
        raise _file_error(target, exc) from None


def discard_staged(staged: list[Path]) -> None:
    for path in staged:
        with contextlib.suppress(OSError):
            path.unlink()
    staged.clear()


__all__ = [
    "OBSERVED_SOURCE",
    "check_write_target",
    "merge_overlay",
    "overlay_yaml",
    "with_sources",
    "write_overlay",
]
