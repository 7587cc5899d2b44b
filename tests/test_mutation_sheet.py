"""klingcost.sheet: the edges of what a sheet may say and the exact words of each refusal;
what mutation testing showed the other tests never asked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from klingcost.errors import PricingSheetError, UnknownProviderError
from klingcost.sheet import (
    BUNDLED,
    PRICING_ENV,
    Capabilities,
    PriceSheet,
    canonical_text,
    load_sheet,
    parse_sheet,
    sheet_from_canonical,
    sheet_hash,
)

PROVIDER = (
    "sources:\n  mine: my invoice\n"
    "providers:\n  reseller:\n    currency: {currency}\n    exponent: {exponent}\n"
    "    per_unit:\n"
    "      video: {{ amount: 12, source: mine }}\n"
    "      image: {{ amount: 1, source: mine }}\n"
)


@pytest.fixture(autouse=True)
def _no_env_sheet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRICING_ENV, raising=False)


def write(tmp_path: Path, text: str, name: str = "sheet.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def sheet_error(path: Path | str) -> PricingSheetError:
    with pytest.raises(PricingSheetError) as caught:
        load_sheet(path)
    return caught.value


@pytest.mark.parametrize("exponent", [0, 9])
def test_a_provider_of_an_unknown_currency_may_count_from_0_to_9_places(
    tmp_path: Path, exponent: int
) -> None:
    path = write(tmp_path, PROVIDER.format(currency="points", exponent=exponent))
    assert load_sheet(path).providers["reseller"].exponent == exponent


@pytest.mark.parametrize("exponent", [-1, 10])
def test_an_exponent_outside_0_to_9_is_refused(tmp_path: Path, exponent: int) -> None:
    path = write(tmp_path, PROVIDER.format(currency="points", exponent=exponent))
    error = sheet_error(path)
    assert error.source == str(path)
    assert error.problems == (f"providers.reseller.exponent: {exponent} is not 0 to 9",)
    assert str(error) == (
        f"price sheet {path} is invalid:\n  - providers.reseller.exponent: {exponent} is not 0 to 9"
    )


def test_a_known_currency_at_another_exponent_says_how_far_off_it_would_count(
    tmp_path: Path,
) -> None:
    error = sheet_error(write(tmp_path, PROVIDER.format(currency="usd", exponent=2)))
    assert error.problems == (
        "providers.reseller.exponent: usd is kept to 10^-4 in the ledger; 2 would count every "
        "cost 10^2 times off",
    )


def test_bills_as_pro_must_name_a_known_source(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  openai-hk:\n    bills_as_pro: { kling-v1: rumour }\n")
    error = sheet_error(path)
    assert error.problems == (
        "providers.openai-hk.bills_as_pro.kling-v1: unknown source 'rumour'; add it under sources",
    )


def test_a_missing_file_is_unreadable_not_invalid(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    assert str(sheet_error(path)) == f"price sheet {path}: file not found"


def test_a_file_that_cannot_be_decoded_is_unreadable_not_invalid(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    message = str(sheet_error(path))
    assert message.startswith(f"price sheet {path}: cannot read: ")
    assert "is invalid:" not in message


def test_a_sheet_in_utf8_with_accents_reads_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, 'sources:\n  mine: "facture de l\'été, 12 €"\n')
    assert load_sheet(path).sources["mine"] == "facture de l'été, 12 €"


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "video: [unclosed\n")
    error = sheet_error(path)
    assert error.source == str(path)
    assert str(error).startswith(f"price sheet {path} is invalid:\n  - not valid YAML: ")


def test_a_sheet_that_is_not_a_mapping_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n")
    error = sheet_error(path)
    assert error.source == str(path)
    assert error.problems == ("(top): the sheet must be a mapping",)


def test_the_words_of_each_kind_of_problem(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "surprise: 1\nvideo:\n  base: { units: -1, source: seed }\n"
        "providers:\n  new:\n    currency: eur\n    exponent: 2\n",
    )
    error = sheet_error(path)
    assert "surprise: unknown key" in error.problems
    assert "providers.new.per_unit: missing" in error.problems
    assert "video.base.units: -1 is not positive; every price and factor must be above 0" in (
        error.problems
    )


def test_an_invalid_reference_names_the_sheet_it_is_in(tmp_path: Path) -> None:
    path = write(tmp_path, "default_provider: nobody\n")
    error = sheet_error(path)
    assert error.source == str(path)
    assert error.problems == ("default_provider: no provider 'nobody'",)


def test_the_bundled_sheet_is_named_as_such() -> None:
    assert load_sheet().origin == BUNDLED


def test_several_overlays_apply_in_order_and_are_all_named(tmp_path: Path) -> None:
    first = write(tmp_path, PROVIDER.format(currency="points", exponent=1), "first.yaml")
    second = write(tmp_path, "default_provider: reseller\n", "second.yaml")
    sheet = load_sheet(f"{first}{os.pathsep}{second}")
    assert sheet.origin == f"{first} + {second}"
    assert sheet.provider() == ("reseller", sheet.providers["reseller"])


def test_the_env_var_is_used_only_without_an_explicit_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = write(tmp_path, "default_provider: kling-cn\n", "env.yaml")
    mine = write(tmp_path, "default_provider: kling-global\n", "mine.yaml")
    monkeypatch.setenv(PRICING_ENV, str(env))
    assert load_sheet().origin == str(env)
    assert load_sheet().default_provider == "kling-cn"
    assert load_sheet(mine).default_provider == "kling-global"
    assert load_sheet(Path(mine)).origin == str(mine)


def test_a_provider_is_looked_up_by_name_or_the_default() -> None:
    sheet = load_sheet()
    name, profile = sheet.provider("kling-global")
    assert (name, profile) == ("kling-global", sheet.providers["kling-global"])
    assert sheet.provider() == ("openai-hk", sheet.providers["openai-hk"])
    assert sheet.provider(None)[0] == "openai-hk"


def test_an_unknown_provider_is_refused_naming_the_sheet_and_the_choices(tmp_path: Path) -> None:
    path = write(tmp_path, PROVIDER.format(currency="points", exponent=1))
    with pytest.raises(UnknownProviderError) as caught:
        load_sheet(path).provider("nobody")
    assert (caught.value.provider, caught.value.known) == (
        "nobody",
        ("kling-cn", "kling-global", "openai-hk", "reseller"),
    )
    assert str(caught.value) == (
        f"no provider 'nobody' in the price sheet ({path}); choose one of "
        "kling-cn, kling-global, openai-hk, reseller"
    )
    assert (caught.value.option, caught.value.exit_code) == ("provider", 2)


# --- the canonical form a ledger publishes and a hold's hash names ----------------------------


def test_the_canonical_text_is_compact_sorted_json_without_the_origin() -> None:
    import json

    sheet = load_sheet()
    text = canonical_text(sheet)
    data = sheet.model_dump(mode="json", exclude={"origin"})
    assert text == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert text.startswith('{"catalog":{')
    assert '"origin"' not in text


def test_the_hash_is_the_sha256_of_the_canonical_text_whatever_the_origin() -> None:
    import hashlib

    sheet = load_sheet()
    expected = hashlib.sha256(canonical_text(sheet).encode("utf-8")).hexdigest()
    assert sheet_hash(sheet) == expected
    assert sheet_hash(sheet) == expected  # the cached value is the same
    again = parse_sheet(sheet.model_dump(mode="json", exclude={"origin"}), origin="elsewhere")
    assert sheet_hash(again) == expected


def test_a_sheet_read_back_from_its_canonical_text_is_the_same_sheet() -> None:
    sheet = load_sheet()
    back = sheet_from_canonical(canonical_text(sheet), origin="ledger")
    assert canonical_text(back) == canonical_text(sheet)
    assert back.origin == "ledger"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "not canonical JSON: Expecting property name enclosed in double quotes"),
        ("[1]", "(top): the sheet must be a mapping"),
    ],
)
def test_a_damaged_canonical_text_is_refused_naming_its_origin(text: str, problem: str) -> None:
    with pytest.raises(PricingSheetError) as caught:
        sheet_from_canonical(text, origin="ledger")
    assert caught.value.source == "ledger"
    assert caught.value.problems[0].startswith(problem)


# --- the frozen bundled sheet and its YAML fallback -------------------------------------------


def test_a_missing_frozen_sheet_falls_back_to_the_yaml_and_freezing_writes_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    import json

    from klingcost.sheet import frozen as frozen_module

    frozen = json.loads(frozen_module.FROZEN.read_text(encoding="utf-8"))
    monkeypatch.setattr(frozen_module, "FROZEN", tmp_path / "frozen.json")
    assert frozen_module._bundled_data() == frozen["sheet"]  # from the YAML itself
    assert frozen_module.freeze_bundled_sheet() == tmp_path / "frozen.json"
    written = (tmp_path / "frozen.json").read_text(encoding="utf-8")
    assert written.endswith("}\n")
    assert json.loads(written) == frozen
    text = (frozen_module._DATA / "pricing.yaml").read_text(encoding="utf-8")
    assert json.loads(written)["yaml_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert frozen_module._bundled_data() == frozen["sheet"]  # now from the frozen JSON


# --- the catalogue, resolved: what request validation allows --------------------------------


def caps(sheet_path: Path | None, endpoint: str, model: str) -> Capabilities:
    return load_sheet(sheet_path).models[endpoint][model]


def fresh_bundled_sheet() -> PriceSheet:
    """The bundled sheet parsed anew: load_sheet() keeps one per process, so a test using it
    may never run the resolving code (and mutation testing would not count it among its tests)."""
    import yaml

    from klingcost.sheet.frozen import _DATA

    data = yaml.safe_load((_DATA / "pricing.yaml").read_text(encoding="utf-8"))
    return parse_sheet(data, origin=BUNDLED)


def test_each_kind_of_bundled_model_is_resolved_whole() -> None:
    sheet = fresh_bundled_sheet()
    assert sheet.models["images/generations"]["kling-v3-omni"] == Capabilities(
        model="kling-v3-omni",
        endpoint="images/generations",
        modes=frozenset(),
        default_mode=None,
        durations=frozenset(),
        default_duration=5,
        sound_modes=frozenset(),
        voice=False,
        camera_control=False,
        multi_shot=False,
        elements=False,
        edit_hold_seconds=None,
        resolutions=frozenset({"1k", "2k", "4k"}),
        price_key="images.kling-v3-omni",
        source="kling-official",
    )
    assert sheet.models["videos/image2video"]["kling-v2-6"] == Capabilities(
        model="kling-v2-6",
        endpoint="videos/image2video",
        modes=frozenset({"std", "pro"}),
        default_mode="pro",
        durations=frozenset({5, 10}),
        default_duration=5,
        sound_modes=frozenset({"pro"}),
        voice=True,
        camera_control=True,
        multi_shot=False,
        elements=False,
        edit_hold_seconds=None,
        resolutions=frozenset(),
        price_key="video.models.kling-v2-6",
        source="openai-hk-docs",
    )
    assert sheet.models["videos/text2video"]["kling-v3"] == Capabilities(
        model="kling-v3",
        endpoint="videos/text2video",
        modes=frozenset({"std", "pro", "4k"}),
        default_mode="std",
        durations=frozenset(range(3, 16)),
        default_duration=5,
        sound_modes=frozenset({"std", "pro", "4k"}),
        voice=True,
        camera_control=False,
        multi_shot=True,
        elements=True,
        edit_hold_seconds=None,
        resolutions=frozenset(),
        price_key="per_second.kling-v3",
        source="kling-api-reference",
    )
    # Priced per second without a voice variant: no voice_list.
    omni_v3 = sheet.models["videos/omni-video"]["kling-v3-omni"]
    assert (omni_v3.voice, omni_v3.price_key, omni_v3.edit_hold_seconds) == (
        False,
        "per_second.kling-v3-omni",
        10,
    )
    o1 = sheet.models["videos/omni-video"]["kling-video-o1"]
    assert (o1.modes, o1.default_mode, o1.price_key, o1.sound_modes, o1.voice) == (
        frozenset({"std", "pro"}),
        "pro",
        "omni.kling-video-o1",
        frozenset(),
        False,
    )
    assert o1.durations == frozenset(range(3, 11))
    flat = sheet.models["videos/text2video"]["kling-v2-master"]
    assert (flat.modes, flat.default_mode, flat.sound_modes, flat.voice) == (
        frozenset(),
        None,
        frozenset(),
        False,
    )
    assert (flat.model, flat.endpoint, flat.duration_text()) == (
        "kling-v2-master",
        "videos/text2video",
        '"5" or "10"',
    )


PRICE_ONLY = """\
sources:
  mine: my invoice
video:
  models:
    my-clip:
      pro: { factor: 3, source: mine }
      turbo: { factor: 4, source: mine }
    my-flat:
      flat: { factor: 5, source: mine }
  sound:
    my-flat: { factor: 2, source: mine }
omni:
  my-omni:
    per_second: { units: 1, source: mine }
    pro: { factor: 2, source: mine }
    video_reference: { factor: 2, source: mine }
images:
  my-image:
    text: { units: 1, source: mine }
    reference: { units: 2, source: mine }
"""


def test_a_price_only_overlay_adds_usable_models_on_the_endpoints_of_their_prices(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, PRICE_ONLY)
    sheet = load_sheet(path)
    image = sheet.models["images/generations"]["my-image"]
    assert image == Capabilities(
        model="my-image",
        endpoint="images/generations",
        modes=frozenset(),
        default_mode=None,
        durations=frozenset(),
        default_duration=5,
        sound_modes=frozenset(),
        voice=False,
        camera_control=False,
        multi_shot=False,
        elements=False,
        edit_hold_seconds=None,
        resolutions=frozenset(),
        price_key="images.my-image",
        source="(its price)",
    )
    assert image.duration_text() == "none"
    for endpoint in ("videos/text2video", "videos/image2video"):
        clip = sheet.models[endpoint]["my-clip"]
        # No std price: the default mode is the first priced one, in order.
        assert (clip.modes, clip.default_mode, clip.source) == (
            frozenset({"pro", "turbo"}),
            "pro",
            "(its price)",
        )
        assert clip.durations == frozenset({5, 10})  # the sheet's clip durations
        assert clip.price_key == "video.models.my-clip"
        flat = sheet.models[endpoint]["my-flat"]
        assert (flat.modes, flat.default_mode, flat.sound_modes) == (
            frozenset(),
            None,
            frozenset({"flat"}),
        )
    assert "my-clip" not in sheet.models["videos/multi-image2video"]
    omni = sheet.models["videos/omni-video"]["my-omni"]
    assert (omni.modes, omni.default_mode, omni.price_key, omni.source) == (
        frozenset({"std", "pro"}),
        "std",
        "omni.my-omni",
        "(its price)",
    )
    assert omni.durations == frozenset(range(3, 11))
    assert omni.duration_text() == "3 to 10 seconds"


def test_a_listed_model_whose_price_was_removed_keeps_std_and_pro(tmp_path: Path) -> None:
    import yaml

    from klingcost.sheet.frozen import _DATA

    data = yaml.safe_load((_DATA / "pricing.yaml").read_text(encoding="utf-8"))
    del data["video"]["models"]["kling-v1-5"]
    data["replace"] = True
    path = write(tmp_path, yaml.safe_dump(data))
    clip = caps(path, "videos/text2video", "kling-v1-5")
    assert (clip.modes, clip.default_mode, clip.sound_modes) == (
        frozenset({"std", "pro"}),
        "std",
        frozenset(),
    )


# --- YAML a user's file may hold that the parser refuses -------------------------------------


def test_a_hostile_nesting_in_a_users_file_is_refused_as_nested_too_deeply(tmp_path: Path) -> None:
    # A user's file is read by the pure-Python parser, whose recursion limit turns this into
    # one line; libyaml (kept for the bundled sheet) would say something else, or worse.
    path = write(tmp_path, "video: " + "[" * 1200 + "]" * 1200 + "\n")
    error = sheet_error(path)
    assert error.source == str(path)
    assert error.problems == ("(top): nested too deeply",)


def test_an_integer_past_4300_digits_is_refused_in_a_few_words(tmp_path: Path) -> None:
    path = write(tmp_path, "version: " + "9" * 5000 + "\n")
    error = sheet_error(path)
    assert error.source == str(path)
    assert error.problems == ("not valid YAML: an integer of over 4,300 digits",)


def test_an_impossible_date_is_refused_with_the_parsers_words(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 2026-13-45\n")
    error = sheet_error(path)
    assert error.source == str(path)
    assert error.problems == ("not valid YAML: month must be in 1..12",)


# --- text that is not ASCII, kept as written --------------------------------------------------


def test_the_canonical_text_keeps_what_is_not_ascii_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, 'sources:\n  mine: "facture de l\'été, 12 €"\n')
    text = canonical_text(load_sheet(path))
    assert '"mine":"facture de l\'été, 12 €"' in text


def test_freezing_writes_the_committed_file_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rerunning scripts/freeze_pricing.py on an unchanged sheet must leave no diff to commit.
    from klingcost.sheet import frozen as frozen_module

    committed = frozen_module.FROZEN.read_text(encoding="utf-8")
    monkeypatch.setattr(frozen_module, "FROZEN", tmp_path / "frozen.json")
    frozen_module.freeze_bundled_sheet()
    assert (tmp_path / "frozen.json").read_text(encoding="utf-8") == committed


def test_freezing_keeps_what_is_not_ascii_as_written_in_utf8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from klingcost.sheet import frozen as frozen_module

    data = tmp_path / "data"
    data.mkdir()
    (data / "pricing.yaml").write_text('sources:\n  mine: "l\'été, 12 €"\n', encoding="utf-8")
    monkeypatch.setattr(frozen_module, "_DATA", data)
    monkeypatch.setattr(frozen_module, "FROZEN", data / "pricing.json")
    frozen_module.freeze_bundled_sheet()
    written = (data / "pricing.json").read_bytes().decode("utf-8")
    assert '"mine": "l\'été, 12 €"' in written
    assert json.loads(written)["sheet"] == {"sources": {"mine": "l'été, 12 €"}}


# --- the catalogue's own rules -----------------------------------------------------------------

CLIP = """\
sources:
  mine: my invoice
video:
  models:
    my-clip:
      std: {{ factor: 1, source: mine }}
catalog:
  videos/omni-video:
    my-clip:
      source: mine
      durations: {durations}
      default_duration: {default}
      edit_hold_seconds: {hold}
"""


def test_one_second_is_the_shortest_a_clip_or_a_held_edit_may_last(tmp_path: Path) -> None:
    path = write(tmp_path, CLIP.format(durations="[1, 2]", default=1, hold=1))
    clip = load_sheet(path).models["videos/omni-video"]["my-clip"]
    assert (clip.durations, clip.default_duration, clip.edit_hold_seconds) == (
        frozenset({1, 2}),
        1,
        1,
    )


def test_zero_seconds_is_refused_for_a_clip_and_for_a_held_edit(tmp_path: Path) -> None:
    error = sheet_error(write(tmp_path, CLIP.format(durations="[0, 5]", default=5, hold=0)))
    assert error.problems == (
        "catalog.videos/omni-video.my-clip.durations: seconds must be 1 or more",
        "catalog.videos/omni-video.my-clip.edit_hold_seconds: must be 1 or more",
    )


def test_a_per_second_price_must_name_a_known_source(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "per_second:\n  kling-v3:\n    std:\n      silent: { units: 1, source: rumour }\n",
    )
    error = sheet_error(path)
    assert error.problems == (
        "per_second.kling-v3.std.silent.source: unknown source 'rumour'; add it under sources",
    )


def test_a_range_of_one_second_is_that_second(tmp_path: Path) -> None:
    path = write(tmp_path, CLIP.format(durations='"5-5"', default=5, hold=5))
    assert load_sheet(path).models["videos/omni-video"]["my-clip"].durations == frozenset({5})


@pytest.mark.parametrize(
    ("durations", "problem"),
    [
        ('"5"', "'5' is not a list of seconds or a range such as \"3-15\""),
        ('"3-x"', "'3-x' is not a list of seconds or a range such as \"3-15\""),
        ('"x-3"', "'x-3' is not a list of seconds or a range such as \"3-15\""),
        ('"7-3"', "'7-3' is an empty range"),
    ],
)
def test_a_range_of_seconds_that_is_not_one_is_refused_saying_what_is_written(
    tmp_path: Path, durations: str, problem: str
) -> None:
    error = sheet_error(write(tmp_path, CLIP.format(durations=durations, default=5, hold=5)))
    assert error.problems == (f"catalog.videos/omni-video.my-clip.durations: {problem}",)


def test_a_default_or_sound_mode_the_sheet_does_not_price_is_refused_naming_the_file(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "catalog:\n  videos/text2video:\n"
        "    kling-v1: { source: seed, durations: [5], default_mode: turbo, sound_modes: [4k] }\n",
    )
    error = sheet_error(path)
    assert error.source == str(path)
    assert error.problems == (
        "catalog.videos/text2video.kling-v1.default_mode: 'turbo' is not a mode the sheet prices"
        " for it (pro, std)",
        "catalog.videos/text2video.kling-v1.sound_modes: '4k' is not a mode the sheet prices"
        " for it (pro, std)",
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        ({5, 6}, '"5" or "6"'),
        ({3, 4, 5}, "3 to 5 seconds"),
        ({5, 10, 15}, '"5" or "10" or "15"'),
        ({3, 4, 6}, '"3" or "4" or "6"'),
    ],
)
def test_the_durations_a_refusal_lists(seconds: set[int], text: str) -> None:
    import dataclasses

    o1 = load_sheet().models["videos/omni-video"]["kling-video-o1"]
    assert dataclasses.replace(o1, durations=frozenset(seconds)).duration_text() == text


def test_the_bundled_sheet_and_its_frozen_form_are_ascii() -> None:
    # So they read alike under any locale's codec (the reason their reads are not mutated).
    from klingcost.sheet import frozen as frozen_module

    assert (frozen_module._DATA / "pricing.yaml").read_bytes().isascii()
    assert frozen_module.FROZEN.read_bytes().isascii()


def test_a_frozen_sheet_that_is_not_a_mapping_is_ignored_for_the_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    import json

    from klingcost.sheet import frozen as frozen_module

    text = (frozen_module._DATA / "pricing.yaml").read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    damaged = tmp_path / "frozen.json"
    damaged.write_text(json.dumps({"yaml_sha256": digest, "sheet": [1]}), encoding="utf-8")
    monkeypatch.setattr(frozen_module, "FROZEN", damaged)
    assert frozen_module._frozen_data(text) is None
    assert frozen_module._bundled_data()["default_provider"] == "openai-hk"
