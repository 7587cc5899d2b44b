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
        "kling-cn, kling-global, openai-hk, reseller (--provider)"
    )


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

    from klingcost import sheet as sheet_module

    frozen = json.loads(sheet_module.FROZEN.read_text(encoding="utf-8"))
    monkeypatch.setattr(sheet_module, "FROZEN", tmp_path / "frozen.json")
    assert sheet_module._bundled_data() == frozen["sheet"]  # from the YAML itself
    assert sheet_module.freeze_bundled_sheet() == tmp_path / "frozen.json"
    written = (tmp_path / "frozen.json").read_text(encoding="utf-8")
    assert written.endswith("}\n")
    assert json.loads(written) == frozen
    text = (sheet_module._DATA / "pricing.yaml").read_text(encoding="utf-8")
    assert json.loads(written)["yaml_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert sheet_module._bundled_data() == frozen["sheet"]  # now from the frozen JSON
