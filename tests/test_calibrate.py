"""Calibration against a drifted fake Kling: the known multipliers come back, exactly, and the
overlay it writes makes ``estimate`` and the guard price what Kling charged."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import anyio
import pytest

from fake_fixtures import KEY, _fake_session, fake_server  # noqa: F401
from klingcost.api.client import AsyncKlingClient
from klingcost.calibration import (
    CalibrationError,
    calibrate,
    import_usage,
    overlay_yaml,
    parse_usage,
    write_overlay,
)
from klingcost.errors import PricingSheetError
from klingcost.fake_server import FakeKling
from klingcost.guard import GuardedClient
from klingcost.ledger import Ledger
from klingcost.pricing import estimate
from klingcost.sheet import load_sheet
from klingcost.sync import sync_holds

DRIFT = {"kling-v1-5": "6/5", "kling-video-o1": "5/4"}

T2V = "videos/text2video"
OMNI = "videos/omni-video"
IMAGES = "images/generations"
REF = [{"video_url": "https://example.com/ref.mp4"}]

#: (endpoint, body, how many): every pair the multipliers need.
JOBS: list[tuple[str, dict[str, Any], int]] = [
    (T2V, {"model_name": "kling-v1", "mode": "std", "duration": "5"}, 3),
    (T2V, {"model_name": "kling-v1", "mode": "std", "duration": "10"}, 2),
    (T2V, {"model_name": "kling-v1", "mode": "pro", "duration": "5"}, 2),
    (T2V, {"model_name": "kling-v1-5", "mode": "std", "duration": "5"}, 3),
    (T2V, {"model_name": "kling-v1-5", "mode": "std", "duration": "10"}, 2),
    (T2V, {"model_name": "kling-v1-5", "mode": "pro", "duration": "5"}, 2),
    (T2V, {"model_name": "kling-v1-5", "mode": "pro", "duration": "10"}, 2),
    (T2V, {"model_name": "kling-v2-6", "mode": "pro", "duration": "5"}, 2),
    (T2V, {"model_name": "kling-v2-6", "mode": "pro", "duration": "5", "sound": "on"}, 2),
    (OMNI, {"model_name": "kling-video-o1", "mode": "std", "duration": 5}, 2),
    (OMNI, {"model_name": "kling-video-o1", "mode": "pro", "duration": 5}, 2),
    (OMNI, {"model_name": "kling-video-o1", "mode": "std", "duration": 5, "video_list": REF}, 2),
    (IMAGES, {"model_name": "kling-v1-5", "n": 2}, 2),
]


def drifted_ledger(
    path: Path, fake: FakeKling, jobs: list[tuple[str, dict[str, Any], int]]
) -> Ledger:
    """Submit ``jobs`` through the guard to a drifted fake, then settle them with ``sync``."""
    fake.configure(drift=DRIFT, done_after=0)
    ledger = Ledger.open(path)
    ledger.set_budget("studio", limit=10**12)
    with GuardedClient("studio", ledger=ledger, api_key=KEY, base_url=fake.base_url) as guard:
        for endpoint, body, count in jobs:
            for _ in range(count):
                guard.submit(endpoint, {"prompt": "calibration", **body})

    async def sync() -> None:
        async with AsyncKlingClient(KEY, base_url=fake.base_url, max_retries=0) as client:
            report = await sync_holds(ledger, client)
            assert report.settled == sum(count for *_, count in jobs), report.to_dict()

    anyio.run(sync)
    return ledger


@pytest.fixture
def ledger(tmp_path: Path, fake: FakeKling) -> Iterator[Ledger]:
    opened = drifted_ledger(tmp_path / "ledger.db", fake, JOBS)
    try:
        yield opened
    finally:
        opened.close()


def charged_by_fake(endpoint: str, body: dict[str, Any]) -> Fraction:
    priced = estimate(endpoint, {"prompt": "x", **body}, sheet=load_sheet())
    return priced.units * Fraction(DRIFT.get(priced.model, "1"))


def test_calibration_recovers_the_known_multipliers(ledger: Ledger) -> None:
    result = calibrate(ledger, min_samples=2)
    fitted = {(m.name, m.scope): m for m in result.multipliers}
    duration = fitted[("duration", "10 s vs 5 s")]
    assert (duration.fitted, duration.consistent, duration.changed) == (Fraction(2), True, False)
    assert duration.pairs == 3  # kling-v1 std, kling-v1-5 std and pro
    tier = fitted[("model_tier", "kling-v1-5")]
    assert (tier.fitted, tier.sheet, tier.basis) == (Fraction(12, 5), Fraction(2), "pairs")
    assert tier.changed and tier.support == 3 + 3 + 2 + 2  # two pairs: 5 s and 10 s
    assert fitted[("pro_mode", "kling-v1")].fitted == Fraction(7, 2)
    assert fitted[("pro_mode", "kling-v1-5")].fitted == Fraction(7, 4)  # 3.5 / 2, drift cancels
    assert fitted[("sound", "kling-v2-6")].fitted == 2
    assert fitted[("video_reference", "kling-video-o1")].fitted == Fraction(3, 2)
    # openai-hk bills O1 as pro whatever the mode (the seed's recorded "4" units for std 5 s), so
    # what its std tasks are charged shows no pro multiplier: calibration learns that.
    assert fitted[("pro_mode", "kling-video-o1")].fitted == 1
    assert fitted[("pro_mode", "kling-video-o1")].changed
    observed = {o.job.label: o for o in result.observed}
    v15 = observed["videos/text2video kling-v1-5 std 5s"]
    assert (v15.units, v15.support, v15.tasks, v15.sheet_units) == (
        Fraction(12, 5),
        3,
        3,
        Fraction(2),
    )


def test_the_overlay_reproduces_the_drifted_charges(ledger: Ledger, tmp_path: Path) -> None:
    result = calibrate(ledger, min_samples=2)
    assert result.not_reproduced == ()
    assert len(result.reproduced) == len(result.observed) == len(JOBS)
    overlay = result.overlay
    assert overlay["sources"] == {"observed": overlay["sources"]["observed"]}
    models = overlay["video"]["models"]
    assert models["kling-v1-5"]["std"]["factor"] == "2.4"
    assert models["kling-v1-5"]["pro"]["factor"] == "4.2"
    assert models["kling-v1-5"]["std"]["source"] == "observed"
    assert "kling-v1" not in models and "durations" not in overlay["video"]
    # std O1 is charged as pro (0.8 units/s) with the drift of 5/4: 1 unit/s, and no pro factor.
    assert overlay["omni"]["kling-video-o1"] == {
        "per_second": {
            "units": "1",
            "source": "observed",
            "note": "fitted from 2 charged tasks (the sheet said 0.6)",
        },
        "pro": {
            "factor": "1",
            "source": "observed",
            "note": "fitted from 2 charged tasks (the sheet said 4/3)",
        },
    }
    assert overlay["images"]["kling-v1-5"]["text"]["units"] == "4.8"
    path = tmp_path / "observed.yaml"
    write_overlay(overlay, path)
    text = path.read_text()
    assert "'2.4'" in text or '"2.4"' in text  # quoted: never a YAML float
    sheet = load_sheet(path)
    for endpoint, body, _ in JOBS:
        priced = estimate(endpoint, {"prompt": "x", **body}, sheet=sheet)
        assert priced.units == charged_by_fake(endpoint, body), (endpoint, body)
    # Models nobody observed keep their prices.
    untouched = {"model_name": "kling-v2-1", "mode": "std", "duration": "5", "prompt": "x"}
    assert estimate(T2V, untouched, sheet=sheet).units == 2


def test_the_guard_loads_the_overlay_and_then_agrees_with_kling(
    ledger: Ledger, fake: FakeKling, tmp_path: Path
) -> None:
    path = tmp_path / "observed.yaml"
    write_overlay(calibrate(ledger, min_samples=2).overlay, path)
    body = {"model_name": "kling-v1-5", "mode": "pro", "duration": "10", "prompt": "x"}
    with GuardedClient(
        "studio", ledger=ledger, api_key=KEY, base_url=fake.base_url, sheet=load_sheet(path)
    ) as guard:
        submission = guard.submit(T2V, body)
        assert submission.estimate.units == Fraction(42, 5)
        resolution = guard.wait(submission, interval=0.01, timeout=10)
    assert resolution.hold.units_milli == 8400 == resolution.hold.estimate.units_milli


def test_min_samples_and_an_empty_ledger(ledger: Ledger, tmp_path: Path) -> None:
    result = calibrate(ledger, min_samples=3)
    assert len(result.observed) == 2  # only the classes with three tasks
    assert len(result.skipped) == len(JOBS) - 2
    with Ledger.open(tmp_path / "empty.db") as empty:
        nothing = calibrate(empty)
        assert (nothing.observed, nothing.overlay) == ((), {})
    with pytest.raises(CalibrationError, match="at least 1"):
        calibrate(ledger, min_samples=0)


def test_untrusted_charges_are_not_observations(tmp_path: Path, fake: FakeKling) -> None:
    job = (T2V, {"model_name": "kling-v1", "mode": "std", "duration": "5"}, 2)
    with drifted_ledger(tmp_path / "l.db", fake, [job]) as ledger:
        hold = ledger.reserve(
            "studio",
            next(iter(ledger.holds())).estimate,
            meta=dict(next(iter(ledger.holds())).meta),
        )
        ledger.settle(hold.id, units_milli=1000, cost_minor=15000, raw_deduction="1e100")
        result = calibrate(ledger)
        [observed] = result.observed
        assert observed.tasks == 2


def test_a_sheet_error_in_the_overlay_is_loud(tmp_path: Path) -> None:
    bad = {"video": {"models": {"kling-v1": {"std": {"factor": "2", "source": "observed"}}}}}
    with pytest.raises(PricingSheetError, match="unknown source 'observed'"):
        write_overlay(bad, tmp_path / "bad.yaml")
    assert list(tmp_path.iterdir()) == []  # checked before it is written: nothing left behind
    kept = tmp_path / "kept.yaml"
    kept.write_text("# an overlay a person wrote\n")
    with pytest.raises(PricingSheetError):
        write_overlay(bad, kept)
    assert kept.read_text() == "# an overlay a person wrote\n"
    assert overlay_yaml({}).startswith("# A klingcost price-sheet overlay")


def test_an_overlay_is_written_whole_or_not_at_all(ledger: Ledger, tmp_path: Path) -> None:
    overlay = calibrate(ledger, min_samples=2).overlay
    folder = tmp_path / "overlays"
    folder.mkdir()
    target = folder / "observed.yaml"
    target.write_text("# the old overlay\n")
    write_overlay(overlay, target)  # replaced in one rename
    body = {"model_name": "kling-v1-5", "mode": "std", "duration": "5", "prompt": "x"}
    assert estimate(T2V, body, sheet=load_sheet(target)).units == Fraction(12, 5)
    assert [p.name for p in folder.iterdir()] == ["observed.yaml"]  # no temporary file left
    with pytest.raises(CalibrationError, match="does not exist"):
        write_overlay(overlay, folder / "missing" / "observed.yaml")
    assert [p.name for p in folder.iterdir()] == ["observed.yaml"]


# --- the usage log ------------------------------------------------------------------------


def usage_rows(ledger: Ledger, per_unit: int) -> list[dict[str, Any]]:
    rows = []
    for hold in ledger.holds(state="settled"):
        assert hold.units_milli is not None and hold.task_id is not None
        fen = Fraction(hold.units_milli, 1000) * per_unit
        rows.append(
            {"reqid": hold.task_id, "model": hold.meta["model"], "fen": str(fen), "yufen": 10**9}
        )
    return rows


def test_import_usage_learns_credits_per_unit(ledger: Ledger, tmp_path: Path) -> None:
    rows = [r for r in usage_rows(ledger, 18_000) if r["model"] != "kling-v1-5"]
    log = tmp_path / "log.json"
    log.write_text(json.dumps({"data": rows}))
    result = import_usage(ledger, log)
    assert (result.read, result.new, result.matched_by_id, result.matched_by_order) == (
        len(rows),
        len(rows),
        len(rows),
        0,
    )
    [video] = result.rates
    assert (video.pack, video.per_unit, video.sheet, video.distinct) == (
        "video",
        Fraction(18_000),
        Fraction(15_000),
        (Fraction(18_000),),
    )
    out = tmp_path / "credits.yaml"
    write_overlay(result.overlay, out)
    sheet = load_sheet(out)
    assert sheet.providers["openai-hk"].per_unit["video"].amount == 18_000
    assert sheet.providers["openai-hk"].per_unit["video"].source == "observed"
    again = import_usage(ledger, log)
    assert (again.new, again.matched_by_id) == (0, len(rows))


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [("utf-8", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-le", b"")],
)
def test_import_usage_reads_the_log_as_saved_by_windows_tools(
    ledger: Ledger, tmp_path: Path, encoding: str, bom: bytes
) -> None:
    rows = [r for r in usage_rows(ledger, 18_000) if r["model"] != "kling-v1-5"]
    log = tmp_path / "log.json"
    log.write_bytes(bom + json.dumps({"data": rows}, ensure_ascii=False).encode(encoding))
    result = import_usage(ledger, log)
    assert (result.new, result.matched_by_id) == (len(rows), len(rows))
    assert [rate.per_unit for rate in result.rates] == [18_000]


def test_a_usage_log_that_is_not_text_is_refused_in_one_line(
    ledger: Ledger, tmp_path: Path
) -> None:
    log = tmp_path / "log.json"
    log.write_bytes('{"data": [{"reqid": "caf\u00e9"}]}'.encode("latin-1"))
    with pytest.raises(CalibrationError) as info:
        import_usage(ledger, log)
    assert str(info.value) == (
        f"the usage log {log} is not UTF-8 text (byte 0xe9 at position 24): export it as UTF-8 JSON"
    )


def test_import_usage_reads_json_lines_and_matches_by_model_and_order(
    ledger: Ledger, tmp_path: Path
) -> None:
    rows = [dict(r, reqid=f"log-{i}") for i, r in enumerate(usage_rows(ledger, 15_000))]
    rows = [r for r in rows if r["model"] == "kling-v1"]
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = import_usage(ledger, log)
    assert (result.matched_by_id, result.matched_by_order) == (0, len(rows))
    [video] = result.rates
    assert video.per_unit == 15_000
    assert result.overlay == {}  # the sheet already says 15,000


def test_usage_rows_are_checked() -> None:
    with pytest.raises(CalibrationError, match="no 'fen'"):
        parse_usage('[{"reqid": "a", "model": "kling-v1"}]')
    with pytest.raises(CalibrationError, match="no 'reqid'"):
        parse_usage('[{"fen": 1}]')
    with pytest.raises(CalibrationError, match="not JSON"):
        parse_usage("fen,reqid\n1,a")
    with pytest.raises(CalibrationError, match="'data' list"):
        parse_usage('{"rows": []}')
    [row] = parse_usage('{"reqid": 7, "fen": 15000.5, "model": "kling-v1", "time": "2026-11-25"}')
    assert (row.reqid, row.fen, row.at) == ("7", Fraction(30001, 2), "2026-11-25")


@pytest.mark.parametrize("fen", ['"0"', "0", "-1", '"-15000"', "0.0", '"lots"', '"NaN"', "true"])
def test_a_usage_row_needs_a_positive_fen(fen: str) -> None:
    text = f'[{{"reqid": "a", "fen": 1}}, {{"reqid": "b", "model": "kling-v1", "fen": {fen}}}]'
    with pytest.raises(CalibrationError, match=r"usage log row 2: fen .* credits") as info:
        parse_usage(text)
    assert fen.strip('"').lower() in str(info.value).lower()  # what was given


def test_import_usage_keeps_nothing_when_the_overlay_cannot_be_written(
    ledger: Ledger, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    log = out / "log.json"
    log.write_text(json.dumps(usage_rows(ledger, 18_000)))
    kept = "SELECT COUNT(*) FROM usage_rows"
    with pytest.raises(CalibrationError, match="does not exist"):
        import_usage(ledger, log, write=out / "missing" / "credits.yaml")
    assert ledger.execute(kept).fetchone()[0] == 0
    # An overlay the sheet refuses (a provider it does not know) is neither kept nor written.
    with pytest.raises(PricingSheetError, match=r"providers\.nobody\.currency: missing"):
        import_usage(ledger, log, provider="nobody", write=out / "credits.yaml")
    assert ledger.execute(kept).fetchone()[0] == 0 and list(out.iterdir()) == [log]
    result = import_usage(ledger, log, write=out / "credits.yaml", header="from a test")
    assert result.new == ledger.execute(kept).fetchone()[0] == len(usage_rows(ledger, 1))
    assert (out / "credits.yaml").read_text().startswith("# from a test\n")
    rule = load_sheet(out / "credits.yaml").providers["openai-hk"].per_unit["video"]
    assert rule.amount == Fraction(18_000)


def test_trusted_charges_are_counted_below_min_samples(ledger: Ledger) -> None:
    result = calibrate(ledger, min_samples=50)
    assert result.observed == () and len(result.skipped) == len(JOBS)
    assert result.trusted == sum(n for *_, n in JOBS) == result.to_dict()["trusted"]
