"""klingcost: know, cap and check what Kling video and image generation costs."""

from __future__ import annotations

from klingcost.errors import (
    KlingcostError,
    Problem,
    RequestValidationError,
)

__all__ = [
    "KlingcostError",
    "Problem",
    "RequestValidationError",
]
