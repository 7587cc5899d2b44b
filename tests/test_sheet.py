"""klingcost.sheet: the bundled price sheet, overlays, replacement, and strict validation."""

from __future__ import annotations

import copy
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from klingcost.errors import KlingcostError, PricingSheetError, UnknownProviderError
from klingcost.sheet import BUNDLED, PRICING_ENV, PriceSheet, load_sheet, parse_sheet


@pytest.fixture(autouse=True)
def _no_env_sheet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRICING_ENV, raising=False)


def bundled_yaml() -> dict[str, Any]:
    text = resources.files("klingcost").joinpath("data/pricing.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def write(tmp_path: Path, text: str, name: str = "sheet.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def sheet_error(path: Path) -> PricingSheetError:
    with pytest.raises(PricingSheetError) as info:
        load_sheet(path)
    return info.value


# --- the bundled sheet --------------------------------------------------------------------------


def test_bundled_sheet_loads() -> None:
    sheet = load_sheet()
    assert isinstance(sheet, PriceSheet)
    assert sheet.origin == BUNDLED
    assert sheet.default_provider == "openai-hk"
    assert sheet.version == 1


def test_bundled_yaml_holds_no_float() -> None:
    def walk(node: Any, path: str) -> None:
        assert not isinstance(node, float), f"{path} is a YAML float: {node!r}"
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}.{index}")

    walk(bundled_yaml(), "(top)")


def test_bundled_amounts_are_exact_fractions() -> None:
    sheet = load_sheet()
    assert sheet.video.base.units == 1
    assert sheet.video.models["kling-v1-5"]["pro"].factor == Fraction(7, 2)
    assert sheet.omni["kling-video-o1"].pro.factor == Fraction(4, 3)
    assert sheet.omni["kling-video-o1"].per_second.units == Fraction(3, 5)
    assert sheet.providers["kling-global"].per_unit["image"].amount == Fraction(35, 10000)
    for modes in sheet.video.models.values():
        for factor in modes.values():
            assert type(factor.factor) is Fraction


def test_bundled_sheet_states_what_is_inferred() -> None:
    # kling-facts.md: the sheet must say which figures are stated and which are inferred.
    sheet = load_sheet()
    openai_hk = sheet.providers["openai-hk"]
    assert openai_hk.currency == "credits"
    assert openai_hk.per_unit["video"].amount == 15000
    assert openai_hk.per_unit["video"].source == "inferred"
    assert openai_hk.per_unit["image"].source == "inferred"
    assert "inferred" in sheet.sources


def test_bundled_prompt_limits_per_provider() -> None:
    sheet = load_sheet()
    limits = sheet.providers["openai-hk"].prompt_limits
    assert (limits.prompt, limits.negative_prompt) == (500, 200)
    kling = sheet.providers["kling-global"].prompt_limits
    assert (kling.prompt, kling.negative_prompt) == (2500, 2500)


def test_provider_lookup() -> None:
    sheet = load_sheet()
    name, profile = sheet.provider()
    assert name == "openai-hk"
    assert profile.currency == "credits"
    assert sheet.provider("kling-cn")[1].currency == "cny"
    with pytest.raises(UnknownProviderError, match="no provider 'nope'") as caught:
        sheet.provider("nope")
    assert caught.value.known == ("kling-cn", "kling-global", "openai-hk")
    assert "is invalid" not in str(caught.value)  # the sheet is fine; the name is not


# --- overlay and replacement --------------------------------------------------------------------


def test_overlay_changes_only_its_entries(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "providers:\n  openai-hk:\n    per_unit:\n"
        "      video: { amount: 12000, source: inferred, note: my account }\n",
    )
    sheet = load_sheet(path)
    assert sheet.origin == str(path)
    assert sheet.providers["openai-hk"].per_unit["video"].amount == 12000
    assert sheet.providers["openai-hk"].per_unit["video"].note == "my account"
    # Everything else is the bundled sheet's.
    assert sheet.providers["openai-hk"].per_unit["image"].amount == 375
    assert sheet.video.models["kling-v1-5"]["pro"].factor == Fraction(7, 2)
    assert "kling-global" in sheet.providers


def test_overlay_can_add_a_provider(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "sources:\n  mine: my invoice\n"
        "default_provider: reseller\n"
        "providers:\n  reseller:\n    currency: eur\n    exponent: 2\n    per_unit:\n"
        '      video: { amount: "0.12", source: mine }\n'
        '      image: { amount: "0.01", source: mine }\n',
    )
    sheet = load_sheet(path)
    assert sheet.default_provider == "reseller"
    assert sheet.providers["reseller"].per_unit["video"].amount == Fraction(12, 100)
    assert "openai-hk" in sheet.providers
    assert "seed" in sheet.sources


def minimal_sheet() -> dict[str, Any]:
    return {
        "replace": True,
        "version": 1,
        "sources": {"me": "my own figures"},
        "video": {
            "base": {"units": 1, "source": "me"},
            "durations": {"5": {"factor": 1, "source": "me"}},
            "models": {"kling-v1": {"std": {"factor": 1, "source": "me"}}},
        },
        "omni": {},
        "images": {},
        "default_provider": "p",
        "providers": {
            "p": {
                "currency": "credits",
                "exponent": 0,
                "per_unit": {
                    "video": {"amount": 100, "source": "me"},
                    "image": {"amount": 1, "source": "me"},
                },
            }
        },
    }


def test_replace_true_replaces_the_bundled_sheet(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump(minimal_sheet()))
    sheet = load_sheet(path)
    assert list(sheet.video.models) == ["kling-v1"]
    assert list(sheet.providers) == ["p"]
    assert sheet.sources == {"me": "my own figures"}
    assert sheet.omni == {}


@pytest.mark.parametrize("value", ['"yes"', "1", "[true]"])
def test_replace_must_be_a_boolean(tmp_path: Path, value: str) -> None:
    error = sheet_error(write(tmp_path, f"replace: {value}\ndefault_provider: kling-cn\n"))
    assert error.problems[0].startswith("replace:")
    assert "not true or false" in error.problems[0]


def test_replace_false_is_an_overlay(tmp_path: Path) -> None:
    sheet = load_sheet(write(tmp_path, "replace: false\ndefault_provider: kling-cn\n"))
    assert sheet.default_provider == "kling-cn"
    assert "kling-v1" in sheet.video.models


def test_env_var_names_the_overlay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        "providers:\n  openai-hk:\n    per_unit:\n"
        "      video: { amount: 9999, source: inferred }\n",
    )
    monkeypatch.setenv(PRICING_ENV, str(path))
    assert load_sheet().providers["openai-hk"].per_unit["video"].amount == 9999
    assert load_sheet().origin == str(path)


def test_explicit_path_beats_the_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = write(tmp_path, "default_provider: kling-cn\n", "env.yaml")
    arg = write(tmp_path, "default_provider: kling-global\n", "arg.yaml")
    monkeypatch.setenv(PRICING_ENV, str(env))
    assert load_sheet(arg).default_provider == "kling-global"
    assert load_sheet().default_provider == "kling-cn"


def test_empty_env_var_means_the_bundled_sheet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRICING_ENV, "")
    assert load_sheet().origin == BUNDLED


# --- strict validation: file, key path, problem ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "key_path", "problem"),
    [
        (
            'video:\n  durations:\n    "10": { factor: 2.5, source: seed }\n',
            "video.durations.10.factor",
            "YAML float",
        ),
        ("video:\n  base: { units: 1.10, source: seed }\n", "video.base.units", "YAML float"),
        (
            "video:\n  base: { units: 1, source: seed, colour: red }\n",
            "video.base.colour",
            "unknown key",
        ),
        ("surprise: 1\n", "surprise", "unknown key"),
        ("video:\n  base: { units: 0, source: seed }\n", "video.base.units", "not positive"),
        ('video:\n  base: { units: "-1", source: seed }\n', "video.base.units", "not positive"),
        ("video:\n  base: { units: abc, source: seed }\n", "video.base.units", "not an exact"),
        ('video:\n  base: { units: "1/0", source: seed }\n', "video.base.units", "not an exact"),
        ("video:\n  base: { units: true, source: seed }\n", "video.base.units", "not an amount"),
        ("video:\n  base: { units: [1], source: seed }\n", "video.base.units", "not an amount"),
        (
            "catalog:\n  videos/lipsync:\n    kling-v1: { source: seed }\n",
            "catalog.videos/lipsync",
            "'images/generations'",
        ),
        (
            'catalog:\n  videos/text2video:\n    kling-v1: { source: seed, durations: "9-3" }\n',
            "catalog.videos/text2video.kling-v1.durations",
            "empty range",
        ),
        (
            "omni:\n  kling-video-o1:\n    pro: { factor: 1.5, source: seed }\n",
            "omni.kling-video-o1.pro.factor",
            "YAML float",
        ),
        (
            "providers:\n  openai-hk:\n    per_unit:\n      audio: { amount: 1, source: seed }\n",
            "providers.openai-hk.per_unit.audio",
            "'video' or 'image'",
        ),
        ("version: 2\n", "version", ""),
    ],
)
def test_bad_overlay_names_file_key_path_and_problem(
    tmp_path: Path, text: str, key_path: str, problem: str
) -> None:
    path = write(tmp_path, text)
    error = sheet_error(path)
    assert error.source == str(path)
    assert str(path) in str(error)
    matching = [p for p in error.problems if p.startswith((key_path + ":", key_path + ".[key]:"))]
    assert matching, f"no problem at {key_path}: {error.problems}"
    assert problem in matching[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "catalog:\n  videos/text2video:\n    kling-v9: { source: seed }\n",
            "catalog.videos/text2video.kling-v9.durations: missing",
        ),
        (
            "catalog:\n  videos/text2video:\n    kling-v9: { source: nobody, durations: [5] }\n",
            "catalog.videos/text2video.kling-v9.source: unknown source 'nobody'",
        ),
        (
            "catalog:\n  videos/text2video:\n"
            "    kling-v9: { source: seed, durations: [5, 10], default_duration: 7 }\n",
            "catalog.videos/text2video.kling-v9.default_duration: 7 is not one of its durations",
        ),
        (
            "catalog:\n  videos/text2video:\n"
            "    kling-v1: { source: seed, durations: [5, 10], default_mode: turbo }\n",
            "catalog.videos/text2video.kling-v1.default_mode: 'turbo' is not a mode the sheet "
            "prices for it (pro, std)",
        ),
        (
            "catalog:\n  videos/text2video:\n"
            "    kling-v1: { source: seed, durations: [5, 10], sound_modes: [loud] }\n",
            "catalog.videos/text2video.kling-v1.sound_modes: 'loud' is not a mode",
        ),
    ],
)
def test_catalogue_entries_are_checked(tmp_path: Path, text: str, expected: str) -> None:
    error = sheet_error(write(tmp_path, text))
    assert any(p.startswith(expected) for p in error.problems), error.problems


def test_a_mode_an_overlay_prices_is_a_mode_the_api_takes(tmp_path: Path) -> None:
    from klingcost.pricing import estimate

    path = write(
        tmp_path, "video:\n  models:\n    kling-v1:\n      turbo: { factor: 2, source: seed }\n"
    )
    sheet = load_sheet(path)
    body = {"prompt": "p", "mode": "turbo"}
    assert estimate("videos/text2video", body, sheet=sheet).units == 2
    assert "turbo" in sheet.models["videos/text2video"]["kling-v1"].modes


def test_every_broken_key_is_listed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "video:\n  base: { units: 1.5, source: seed }\n"
        '  durations:\n    "10": { factor: 2, source: seed, extra: x }\n',
    )
    error = sheet_error(path)
    paths = {p.split(":")[0] for p in error.problems}
    assert {"video.base.units", "video.durations.10.extra"} <= paths


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "video:\n  base: { units: 1, source: hearsay }\n",
            "video.base.source: unknown source 'hearsay'",
        ),
        ("default_provider: nobody\n", "default_provider: no provider 'nobody'"),
        (
            "providers:\n  openai-hk:\n    exponent: 12\n",
            "providers.openai-hk.exponent: 12 is not 0 to 9",
        ),
    ],
)
def test_cross_references_are_checked(tmp_path: Path, text: str, expected: str) -> None:
    error = sheet_error(write(tmp_path, text))
    assert any(p.startswith(expected) for p in error.problems), error.problems


def test_provider_needs_both_packs(tmp_path: Path) -> None:
    data = minimal_sheet()
    del data["providers"]["p"]["per_unit"]["image"]
    error = sheet_error(write(tmp_path, yaml.safe_dump(data)))
    assert "providers.p.per_unit.image: missing" in error.problems


def test_replacement_missing_sections_are_named(tmp_path: Path) -> None:
    data = minimal_sheet()
    del data["video"]
    del data["providers"]
    error = sheet_error(write(tmp_path, yaml.safe_dump(data)))
    assert "video: missing" in error.problems
    assert "providers: missing" in error.problems


def test_missing_file_fails_loudly(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    error = sheet_error(path)
    assert error.source == str(path)
    assert error.problems == ("file not found",)


def test_invalid_yaml(tmp_path: Path) -> None:
    error = sheet_error(write(tmp_path, "video: [unclosed\n"))
    assert error.problems[0].startswith("not valid YAML")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_sheet_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    error = sheet_error(write(tmp_path, text))
    assert "must be a mapping" in error.problems[0]


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    error = sheet_error(path)
    assert error.problems[0].startswith("cannot read")


def test_a_directory_is_not_a_sheet(tmp_path: Path) -> None:
    error = sheet_error(tmp_path)
    assert error.source == str(tmp_path)


def test_sheet_error_is_a_klingcost_error(tmp_path: Path) -> None:
    error = sheet_error(write(tmp_path, "surprise: 1\n"))
    assert isinstance(error, KlingcostError)
    assert isinstance(error, ValueError)
    assert error.__cause__ is None


def test_parse_sheet_validates_data_already_read() -> None:
    data = bundled_yaml()
    assert parse_sheet(data, origin="mine.yaml").origin == "mine.yaml"
    broken = copy.deepcopy(data)
    broken["video"]["models"]["kling-v1"]["pro"]["factor"] = 3.5
    with pytest.raises(PricingSheetError) as info:
        parse_sheet(broken, origin="mine.yaml")
    assert info.value.source == "mine.yaml"
    assert info.value.problems[0].startswith("video.models.kling-v1.pro.factor:")
    assert "YAML float" in info.value.problems[0]


def test_quoted_exact_forms_are_accepted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'omni:\n  kling-video-o1:\n    pro: { factor: "4/3", source: seed }\n'
        '    video_reference: { factor: "1.50", source: seed }\n',
    )
    omni = load_sheet(path).omni["kling-video-o1"]
    assert omni.pro.factor == Fraction(4, 3)
    assert omni.video_reference.factor == Fraction(3, 2)


def test_sheets_are_immutable() -> None:
    sheet = load_sheet()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        sheet.default_provider = "kling-cn"  # type: ignore[misc]


# --- the frozen JSON of the bundled sheet (issue 14: no YAML parser on the estimate path) ------


def test_frozen_bundled_sheet_is_current_and_equals_the_yaml() -> None:
    from klingcost.sheet import frozen as frozen_module
    from klingcost.sheet.read import _parse_yaml

    text = (frozen_module._DATA / "pricing.yaml").read_text(encoding="utf-8")
    frozen = frozen_module._frozen_data(text)
    assert frozen is not None, "pricing.yaml changed: run scripts/freeze_pricing.py"
    assert frozen == _parse_yaml(text, "bundled")  # same keys, same types


def test_an_edited_bundled_yaml_is_never_hidden_by_the_frozen_json() -> None:
    from klingcost.sheet import frozen as frozen_module

    text = (frozen_module._DATA / "pricing.yaml").read_text(encoding="utf-8")
    assert frozen_module._frozen_data(text) is not None
    edited = text.replace("units: 1\n", "units: 2\n", 1)
    assert edited != text
    assert frozen_module._frozen_data(edited) is None  # the YAML itself is then parsed
