"""The public API: ``__all__`` resolves, and ``import klingcost`` stays light."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from fractions import Fraction

import pytest

import klingcost
from klingcost.errors import KlingcostError


def test_every_name_in_all_resolves() -> None:
    assert len(klingcost.__all__) == len(set(klingcost.__all__))
    for name in klingcost.__all__:
        assert getattr(klingcost, name) is not None, name


def test_the_issue_names_are_public() -> None:
    for name in (
        "estimate",
        "price",
        "Estimate",
        "ImageRequest",
        "TextToVideoRequest",
        "ImageToVideoRequest",
        "OmniVideoRequest",
        "ValidatedRequest",
        "validate_request",
        "RequestValidationError",
        "PricingSheetError",
        "UnpricedRequestError",
        "KlingcostError",
        "load_sheet",
    ):
        assert name in klingcost.__all__, name


def test_public_objects_are_the_real_ones() -> None:
    from klingcost import estimate
    from klingcost.pricing import estimate as real_estimate
    from klingcost.request import TextToVideoRequest

    assert estimate is real_estimate
    assert klingcost.TextToVideoRequest is TextToVideoRequest
    assert estimate("videos/text2video", {"prompt": "p", "mode": "pro"}).units == Fraction(7, 2)


def test_public_errors_share_one_base() -> None:
    errors = [
        getattr(klingcost, name)
        for name in klingcost.__all__
        if isinstance(getattr(klingcost, name), type)
        and issubclass(getattr(klingcost, name), BaseException)
    ]
    assert len(errors) >= 20
    assert all(issubclass(error, KlingcostError) for error in errors)


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        klingcost.nothing_here  # noqa: B018


def _modules_after(code: str) -> set[str]:
    script = textwrap.dedent(code) + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    import json

    return set(json.loads(out.strip().splitlines()[-1]))


HEAVY = {"httpx", "sqlite_utils", "sqlite3", "click", "starlette", "uvicorn"}


def test_import_klingcost_is_light() -> None:
    loaded = _modules_after("import klingcost")
    assert not loaded & HEAVY, loaded & HEAVY
    # The pydantic models load on first use, not with the package.
    assert "klingcost.request" not in loaded
    assert "yaml" not in loaded


def test_estimate_does_not_pull_in_the_network_or_the_ledger() -> None:
    loaded = _modules_after(
        """
        from klingcost import estimate
        estimate("videos/text2video", {"prompt": "p"})
        """
    )
    assert "klingcost.pricing" in loaded
    assert not loaded & {"httpx", "sqlite_utils", "click"}, loaded & HEAVY
