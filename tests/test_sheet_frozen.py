"""The bundled sheet's fast path (issue 14): loaded from its frozen, validated form without
pydantic, it is the same sheet, giving the same estimates, as the YAML validated in full; and a
frozen form that is stale, changed or damaged is never trusted (full validation runs instead)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from klingcost.errors import KlingcostError, PricingSheetError
from klingcost.pricing import estimate
from klingcost.sheet import (
    BUNDLED,
    PRICING_ENV,
    CatalogEntry,
    PriceSheet,
    canonical_text,
    load_sheet,
    parse_sheet,
    sheet_hash,
)
from klingcost.sheet import frozen as frozen_module
from klingcost.sheet.load import _load_cached
from klingcost.sheet.read import _parse_yaml

YAML_TEXT = (frozen_module._DATA / "pricing.yaml").read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def _no_env_sheet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRICING_ENV, raising=False)


def fast_sheet() -> PriceSheet:
    sheet = frozen_module._frozen_sheet(YAML_TEXT)
    assert sheet is not None, "the frozen sheet is stale: run scripts/freeze_pricing.py"
    return sheet


def validated_sheet() -> PriceSheet:
    # The YAML itself, parsed and validated in full (no frozen file involved).
    return parse_sheet(_parse_yaml(YAML_TEXT, BUNDLED), origin=BUNDLED)


# --- the fast path gives the validated path's sheet and answers --------------------------------


def test_the_frozen_sheet_is_the_validated_sheet_field_for_field_and_in_order() -> None:
    fast, slow = fast_sheet(), validated_sheet()
    assert fast is not slow
    assert fast == slow
    assert fast.origin == slow.origin == BUNDLED
    # Order too (the prices command lists models in the sheet's order): dumps compared as text.
    assert json.dumps(fast.model_dump(mode="json")) == json.dumps(slow.model_dump(mode="json"))
    assert canonical_text(fast) == canonical_text(slow)
    assert sheet_hash(fast) == sheet_hash(slow)
    assert fast.video.base.units == Fraction(1) and type(fast.video.base.units) is Fraction
    # The resolved catalogue, what request validation allows, in the same order.
    assert list(fast.models) == list(slow.models)
    for endpoint, models in slow.models.items():
        assert list(fast.models[endpoint].items()) == list(models.items())


def bodies(sheet: PriceSheet) -> Iterator[tuple[str, dict[str, Any]]]:
    """A body for every endpoint, model, mode, duration and sound the catalogue offers, and some
    it refuses (a duration it lacks, sound where it has none)."""
    image = "https://example.com/frame.png"
    for endpoint, models in sheet.models.items():
        for model, caps in models.items():
            base: dict[str, Any] = {"model_name": model, "prompt": "a ship at dawn"}
            if endpoint == "images/generations":
                yield endpoint, {**base, "n": 2}
                for resolution in sorted(caps.resolutions):
                    yield endpoint, {**base, "resolution": resolution, "image": image}
                continue
            if endpoint == "videos/image2video":
                base["image"] = image
            if endpoint == "videos/multi-image2video":
                base["image_list"] = [{"image": image}, {"image": image}]
            modes: list[str | None] = [*sorted(caps.modes)] or [None]
            for mode in modes:
                for seconds in [*sorted(caps.durations), 7, 99]:
                    body = {**base, "duration": str(seconds)}
                    if mode is not None:
                        body["mode"] = mode
                    yield endpoint, body
                    yield endpoint, {**body, "sound": "on"}


def outcome(sheet: PriceSheet, endpoint: str, body: dict[str, Any], provider: str) -> Any:
    try:
        found = estimate(endpoint, body, sheet=sheet, provider=provider)
    except KlingcostError as exc:
        return ("refused", type(exc).__name__, str(exc))
    return ("priced", found.units, repr(found.cost), repr(found.breakdown), found.request.job)


def test_the_frozen_sheet_prices_every_catalogue_body_as_the_validated_sheet_does() -> None:
    fast, slow = fast_sheet(), validated_sheet()
    seen = {"priced": 0, "refused": 0}
    for provider in slow.providers:
        for endpoint, body in bodies(slow):
            expected = outcome(slow, endpoint, body, provider)
            assert outcome(fast, endpoint, body, provider) == expected, (provider, endpoint, body)
            seen[expected[0]] += 1
    # Both kinds were compared, on every endpoint: the walk above is not vacuous.
    assert seen["priced"] > 1000 and seen["refused"] > 600, seen


def test_klingcost_loads_the_bundled_sheet_by_the_fast_path_without_pydantic() -> None:
    # A fresh process: load_sheet() (no overlay) must not import pydantic nor a YAML parser.
    code = (
        "import sys\n"
        "from klingcost.sheet import load_sheet\n"
        "sheet = load_sheet()\n"
        "assert sheet.models['videos/text2video'], 'no catalogue'\n"
        "print(sorted(m for m in ('pydantic', 'pydantic_core', 'yaml') if m in sys.modules))\n"
    )
    env_free = {k: v for k, v in os.environ.items() if k != PRICING_ENV}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env_free, check=True
    )
    assert done.stdout.strip() == "[]"


def test_an_overlay_is_still_validated_in_full(tmp_path: Path) -> None:
    overlay = tmp_path / "mine.yaml"
    overlay.write_text("video:\n  base:\n    units: 1.5\n    source: seed\n", encoding="utf-8")
    with pytest.raises(PricingSheetError) as caught:
        load_sheet(overlay)
    assert list(caught.value.problems) == [
        'video.base.units: 1.5 is a YAML float; quote it ("1.5") or use an integer'
    ]


# --- a stale, changed or damaged frozen file is never trusted ------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the package's data folder that the sheet module reads instead."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "pricing.yaml").write_text(YAML_TEXT, encoding="utf-8")
    (data / "pricing.json").write_text(
        frozen_module.FROZEN.read_text(encoding="utf-8"), encoding="utf-8"
    )
    monkeypatch.setattr(frozen_module, "_DATA", data)
    monkeypatch.setattr(frozen_module, "FROZEN", data / "pricing.json")
    return data


def load_bundled() -> PriceSheet:
    # The loader itself, past its per-process cache (the real bundled sheet stays cached).
    sheet: PriceSheet = _load_cached.__wrapped__(None)
    return sheet


def frozen(data: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((data / "pricing.json").read_text(encoding="utf-8"))
    return found


def write_frozen(data: Path, content: dict[str, Any]) -> None:
    (data / "pricing.json").write_text(json.dumps(content), encoding="utf-8")


def test_the_copied_data_folder_takes_the_fast_path(data_dir: Path) -> None:
    # The control for the tests below: unchanged, the frozen form is used.
    assert frozen_module._frozen_sheet(YAML_TEXT) is not None
    assert load_bundled() == validated_sheet()


def test_an_edited_yaml_is_validated_and_used_not_its_stale_frozen_form(data_dir: Path) -> None:
    edited = YAML_TEXT.replace("units: 1\n", 'units: "1.25"\n', 1)
    assert edited != YAML_TEXT
    (data_dir / "pricing.yaml").write_text(edited, encoding="utf-8")
    assert frozen_module._frozen_sheet(edited) is None
    assert load_bundled().video.base.units == Fraction(5, 4)


def test_an_edited_yaml_that_is_invalid_is_refused_despite_a_valid_frozen_form(
    data_dir: Path,
) -> None:
    edited = YAML_TEXT.replace("units: 1\n", "units: 1.25\n", 1)
    (data_dir / "pricing.yaml").write_text(edited, encoding="utf-8")
    with pytest.raises(PricingSheetError) as caught:
        load_bundled()
    assert list(caught.value.problems) == [
        'video.base.units: 1.25 is a YAML float; quote it ("1.25") or use an integer'
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("models_sha256", "0" * 64),  # frozen by sheet types of another shape
        ("format", 1),  # an older frozen format
        ("yaml_sha256", hashlib.sha256(b"another sheet").hexdigest()),
    ],
)
def test_a_frozen_form_from_other_types_format_or_yaml_is_not_trusted(
    data_dir: Path, key: str, value: Any
) -> None:
    content = frozen(data_dir)
    # A price the YAML does not say, so that trusting this file would show.
    content["validated"]["video"]["base"]["units"] = "9"
    content[key] = value
    write_frozen(data_dir, content)
    assert frozen_module._frozen_sheet(YAML_TEXT) is None
    assert load_bundled().video.base.units == Fraction(1)  # the YAML's, validated


@pytest.mark.parametrize(
    "damage",
    [
        lambda v: v["video"]["base"].update(units=1.5),  # an amount that is not "n/d" text
        lambda v: v["video"]["base"].update(colour="red"),  # a key no sheet type has
        lambda v: v.update(version=2),  # not a version the sheet type allows
        lambda v: v["providers"]["openai-hk"].update(exponent="4"),  # text for a number
        lambda v: v.update(omni=[1]),  # a list for a mapping
        lambda v: v.pop("video"),  # a required part missing
        lambda v: v["catalog"]["videos/text2video"]["kling-v1"].update(durations="5"),
    ],
)
def test_a_damaged_frozen_form_falls_back_to_full_validation(data_dir: Path, damage: Any) -> None:
    content = frozen(data_dir)
    damage(content["validated"])
    write_frozen(data_dir, content)
    assert frozen_module._frozen_sheet(YAML_TEXT) is None
    assert load_bundled() == validated_sheet()


@pytest.mark.parametrize("text", ["", "[1, 2]", '{"format": 2}', "not json"])
def test_a_frozen_file_that_is_not_one_is_ignored(data_dir: Path, text: str) -> None:
    (data_dir / "pricing.json").write_text(text, encoding="utf-8")
    assert frozen_module._frozen_sheet(YAML_TEXT) is None
    assert load_bundled() == validated_sheet()


def test_an_invalid_sheet_is_frozen_without_a_validated_form_and_refused_on_load(
    data_dir: Path,
) -> None:
    broken = YAML_TEXT.replace("default_provider: openai-hk", "default_provider: nobody", 1)
    assert broken != YAML_TEXT
    (data_dir / "pricing.yaml").write_text(broken, encoding="utf-8")
    frozen_module.freeze_bundled_sheet()
    content = frozen(data_dir)
    assert "validated" not in content
    assert content["yaml_sha256"] == hashlib.sha256(broken.encode()).hexdigest()
    with pytest.raises(PricingSheetError) as caught:
        load_bundled()
    assert list(caught.value.problems) == ["default_provider: no provider 'nobody'"]


def test_freezing_a_valid_sheet_writes_the_form_the_fast_path_trusts(data_dir: Path) -> None:
    (data_dir / "pricing.json").unlink()
    assert frozen_module._frozen_sheet(YAML_TEXT) is None
    frozen_module.freeze_bundled_sheet()
    content = frozen(data_dir)
    assert content["format"] == frozen_module._FROZEN_FORMAT
    assert content["models_sha256"] == frozen_module._models_fingerprint()
    assert content["validated"] == validated_sheet().model_dump(mode="json", exclude={"origin"})
    assert frozen_module._frozen_sheet(YAML_TEXT) == validated_sheet()


def test_the_fingerprint_sees_a_changed_field_of_a_sheet_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dataclasses

    before = frozen_module._models_fingerprint()
    (entry,) = (f for f in dataclasses.fields(CatalogEntry) if f.name == "source")
    monkeypatch.setattr(entry, "default", "(its price)")  # a required field gains a default
    assert frozen_module._models_fingerprint() != before
