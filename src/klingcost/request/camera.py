"""Camera control's rules: only at 5 s in std mode, only on a model that takes it, and a simple
move sets exactly one axis (the seed and Kling's capability map)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from klingcost.errors import Problem
from klingcost.request.catalog import CAMERA_AXES
from klingcost.request.validated import ValidatedRequest

if TYPE_CHECKING:
    from klingcost.request.models import CameraControl
    from klingcost.sheet import Capabilities, PriceSheet


def camera_rules(
    request: ValidatedRequest,
    camera: CameraControl,
    caps: Capabilities,
    sheet: PriceSheet,
    problems: list[Problem],
) -> None:
    if request.duration != 5 or request.mode != "std":
        problems.append(
            Problem(
                "camera_control",
                f"{request.duration} s, {request.mode or 'no mode'}",
                "5 s in std mode",
                "camera control works only at 5 s in std mode (seed)",
            )
        )
    if not caps.camera_control:
        problems.append(
            Problem(
                "camera_control",
                request.model,
                models_with(sheet, request.endpoint, "camera_control"),
                f"{request.model} takes no camera control on {request.endpoint} (Kling's "
                "capability map)",
            )
        )
    if camera.type == "simple":
        config = camera.config
        moved = [axis for axis in CAMERA_AXES if config is not None and getattr(config, axis)]
        if len(moved) != 1:
            given = (
                {a: getattr(config, a) for a in CAMERA_AXES if getattr(config, a) is not None}
                if config
                else None
            )
            problems.append(
                Problem(
                    "camera_control.config",
                    given,
                    "exactly one of " + ", ".join(CAMERA_AXES) + " set, and not to 0",
                    "a simple camera move sets exactly one non-zero axis",
                )
            )
    elif camera.config is not None:
        problems.append(
            Problem(
                "camera_control.config",
                camera.config.model_dump(exclude_none=True),
                "no config",
                f"type {camera.type} takes no config (only simple does)",
            )
        )


def models_with(sheet: PriceSheet, endpoint: str, feature: str) -> str:
    """The models of ``endpoint`` that have ``feature`` (a truthy Capabilities attribute)."""
    return ", ".join(m for m, c in sheet.models[endpoint].items() if getattr(c, feature)) or "none"
