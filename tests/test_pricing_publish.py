"""Issue 13 items 5 and 6 through the CLI and the guard, on the fake API and both backends:
a shared ledger publishes the sheet its holds are priced by, and a budget that cannot count
a job refuses it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fake_fixtures import BODIES, KEY, _fake_session, fake_server  # noqa: F401
from klingcost.budgets import HoldAmounts
from klingcost.cli import main
from klingcost.errors import SheetMismatchError
from klingcost.fake_server import FakeKling
from klingcost.guard import GuardedClient
from klingcost.ledger import Ledger
from klingcost.sheet import bundled_sheet, load_sheet, sheet_hash

VIDEO = "videos/text2video"
BODY = BODIES[VIDEO]  # kling-v1-5, pro, 10 s: 7 units = 105,000 credits on the bundled sheet
#: The attack's overlay: a video unit at 0.0000001 credits, so a 7-unit job holds 1 credit.
CHEAP = """
providers:
  openai-hk:
    per_unit:
      video: { amount: "0.0000001", source: inferred }
"""
#: An operator's sheet: 20,000 credits a video unit.
OURS = """
providers:
  openai-hk:
    per_unit:
      video: { amount: 20000, source: inferred }
"""


@pytest.fixture
def env(fake: FakeKling, ledger_url: str, tmp_path: Path) -> dict[str, str]:
    with Ledger.open(ledger_url) as ledger:
        ledger.set_budget("acme", limit=10**7)
        ledger.set_budget("studio", limit=10**6, parent="acme")
    return {
        "KLINGCOST_API_KEY": KEY,
        "KLINGCOST_BASE_URL": fake.base_url,
        "KLINGCOST_LEDGER": ledger_url,
        "KLINGCOST_HOME": str(tmp_path / "home"),
        "KLINGCOST_PRICING": "",
        "KLINGCOST_HOOK_URL": "",
    }


def run(env: dict[str, str], *args: str, **extra: str) -> Result:
    return CliRunner().invoke(main, list(args), env={**env, **extra}, catch_exceptions=False)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def submit(
    env: dict[str, str], tmp_path: Path, body: dict[str, Any] = BODY, **extra: str
) -> Result:
    job = write(tmp_path, "job.json", json.dumps(body))
    endpoint = VIDEO if body is BODY else "images/generations"
    return run(env, "submit", "--team", "studio", "--endpoint", endpoint, "--json", job, **extra)


def holds(env: dict[str, str]) -> list[tuple[int, str | None]]:
    with Ledger.open(env["KLINGCOST_LEDGER"]) as ledger:
        return [(h.estimate.cost_minor, h.sheet_sha256) for h in ledger.holds()]


# --- item 6: each submitter priced with its own sheet -------------------------------------


def test_a_cheap_overlay_is_refused_once_the_ledger_publishes_its_sheet(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    cheap = write(tmp_path, "cheap.yaml", CHEAP)
    cheap_hash = sheet_hash(load_sheet(cheap))
    # The attack, as it was: with no published sheet, the overlay's 1-credit hold is taken.
    before = submit(env, tmp_path, KLINGCOST_PRICING=cheap)
    assert before.exit_code == 0, before.output
    assert holds(env) == [(1, cheap_hash)]
    # The operator publishes the bundled sheet: the same submitter is refused, nothing sent.
    published = run(env, "pricing", "publish", "--bundled", "--json")
    assert published.exit_code == 0, published.output
    data = json.loads(published.stdout)
    assert (data["version"], data["sha256"]) == (1, sheet_hash(bundled_sheet()))
    assert data["local_overlays"] == "refuse"
    sent = len(fake.requests("POST"))
    refused = submit(env, tmp_path, KLINGCOST_PRICING=cheap)
    assert refused.exit_code == 2
    error = refused.stderr
    assert f"published sheet v1 (sha256 {data['sha256']})" in error
    assert f"priced with sheet sha256 {cheap_hash}" in error
    assert "klingcost pricing publish FILE" in error
    assert "klingcost pricing local-overlays allow" in error
    assert "Traceback" not in refused.output
    assert len(fake.requests("POST")) == sent and len(holds(env)) == 1
    # Without an overlay the submitter prices with the ledger's sheet: 7 units, 105,000.
    fair = submit(env, tmp_path)
    assert fair.exit_code == 0, fair.output
    assert holds(env)[-1] == (105_000, data["sha256"])


def test_the_guard_prices_with_the_published_sheet(env: dict[str, str], tmp_path: Path) -> None:
    ours = write(tmp_path, "ours.yaml", OURS)
    assert run(env, "pricing", "publish", ours).exit_code == 0
    result = submit(env, tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["estimate"]["cost"] == "140000"  # 7 x 20,000
    assert holds(env) == [(140_000, sheet_hash(load_sheet(ours)))]
    # The same file given by a submitter is the same sheet: taken.
    assert submit(env, tmp_path, KLINGCOST_PRICING=ours).exit_code == 0


def test_local_overlays_can_be_allowed_and_the_hash_is_kept(
    env: dict[str, str], tmp_path: Path
) -> None:
    cheap = write(tmp_path, "cheap.yaml", CHEAP)
    assert run(env, "pricing", "publish", "--bundled").exit_code == 0
    allowed = run(env, "pricing", "local-overlays", "allow")
    assert allowed.exit_code == 0 and "allowed" in allowed.stdout
    assert submit(env, tmp_path, KLINGCOST_PRICING=cheap).exit_code == 0
    assert holds(env) == [(1, sheet_hash(load_sheet(cheap)))]  # the hold names its sheet
    listed = json.loads(run(env, "holds", "--json").stdout)
    assert [h["sheet_sha256"] for h in listed] == [sheet_hash(load_sheet(cheap))]
    assert run(env, "pricing", "local-overlays", "refuse").exit_code == 0
    assert submit(env, tmp_path, KLINGCOST_PRICING=cheap).exit_code == 2


def test_pricing_show_and_versions(env: dict[str, str], tmp_path: Path) -> None:
    empty = run(env, "pricing", "show")
    assert empty.exit_code == 0 and "no sheet published" in empty.stdout
    ours = write(tmp_path, "ours.yaml", OURS)
    first = json.loads(run(env, "pricing", "publish", "--bundled", "--json").stdout)
    again = run(env, "pricing", "publish", "--bundled")
    assert "already published as version 1" in again.stdout
    second = json.loads(run(env, "pricing", "publish", ours, "--json").stdout)
    assert second["version"] == 2 and second["sha256"] != first["sha256"]
    shown = run(env, "pricing", "show", "--versions")
    assert shown.exit_code == 0
    assert f"version 2: sha256 {second['sha256']}" in shown.stdout
    assert "v1  " in shown.stdout and first["sha256"] in shown.stdout
    assert "local overlays: refused" in shown.stdout
    data = json.loads(run(env, "pricing", "show", "--versions", "--json").stdout)
    assert [v["version"] for v in data["versions"]] == [1, 2]
    assert data["origin"] == ours
    with Ledger.open(env["KLINGCOST_LEDGER"]) as ledger:
        kinds = [e.data["version"] for e in ledger.events(kind="pricing_publish")]
        assert kinds == [1, 2]
        assert load_sheet(ours).model_dump(exclude={"origin"}) == bundled_like(
            ledger.published_sheet(2).canonical  # type: ignore[union-attr]
        )


def bundled_like(canonical: str) -> dict[str, Any]:
    from klingcost.sheet import sheet_from_canonical

    return sheet_from_canonical(canonical, origin="x").model_dump(exclude={"origin"})


def test_pricing_publish_refuses_bad_input(env: dict[str, str], tmp_path: Path) -> None:
    neither = run(env, "pricing", "publish")
    assert neither.exit_code == 2 and "FILE" in neither.stderr
    broken = write(tmp_path, "broken.yaml", "providers: {openai-hk: {per_unit: {video: 3.5}}}")
    bad = run(env, "pricing", "publish", broken)
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert "no sheet published" in run(env, "pricing", "show").stdout


def test_published_sheets_are_append_only(env: dict[str, str]) -> None:
    with Ledger.open(env["KLINGCOST_LEDGER"]) as ledger:
        ledger.publish_sheet(bundled_sheet())
        with pytest.raises(Exception, match="append-only"):
            ledger.execute("UPDATE pricing_sheets SET sha256 = ?", ("0" * 64,))
        with pytest.raises(Exception, match="append-only"):
            ledger.execute("DELETE FROM pricing_sheets")


def test_a_direct_reserve_must_name_the_published_sheet(env: dict[str, str]) -> None:
    amounts = HoldAmounts(7000, "video", 1, "credits")
    with Ledger.open(env["KLINGCOST_LEDGER"]) as ledger:
        published = ledger.publish_sheet(bundled_sheet())
        with pytest.raises(SheetMismatchError, match="no sheet named"):
            ledger.reserve("studio", amounts)
        with pytest.raises(SheetMismatchError, match="sha256 " + "f" * 64):
            ledger.reserve("studio", amounts, sheet_sha256="f" * 64)
        assert list(ledger.holds()) == []
        hold = ledger.reserve("studio", amounts, sheet_sha256=published.sha256)
        assert ledger.get_hold(hold.id).sheet_sha256 == published.sha256


def test_a_running_guard_picks_up_a_newly_published_sheet(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    with GuardedClient(
        "studio", ledger=env["KLINGCOST_LEDGER"], base_url=fake.base_url, api_key=KEY
    ) as guard:
        assert guard.submit(VIDEO, BODY).hold.estimate.cost_minor == 105_000
        with Ledger.open(env["KLINGCOST_LEDGER"]) as ledger:
            ledger.publish_sheet(load_sheet(write(tmp_path, "ours.yaml", OURS)))
        assert guard.submit(VIDEO, BODY).hold.estimate.cost_minor == 140_000


# --- item 5: a budget that cannot count a job does not guard it ---------------------------


def test_an_image_job_on_a_video_units_budget_is_refused(
    env: dict[str, str], fake: FakeKling, tmp_path: Path
) -> None:
    # The attack: a team with only a video-units budget had image jobs of n=9 admitted with
    # nothing held. Now: exit 3, nothing held or sent, and the message says what to add.
    with Ledger.open(env["KLINGCOST_LEDGER"]) as ledger:
        ledger.set_budget("pack", limit=50_000, unit="units", pack="video")
        ledger.set_budget("studio", limit=10**6, parent="pack")
    images = {"prompt": "a red fox", "n": 9, "model_name": "kling-image-o1"}
    for _ in range(5):
        result = submit(env, tmp_path, images)
        assert result.exit_code == 3
        assert "budget 'pack' (on the path of 'studio') counts Kling units of the video pack" in (
            result.stderr
        )
        assert "klingcost budget set pack --unit credits --limit N" in result.stderr
    assert holds(env) == [] and fake.requests("POST") == []
    # A video job still passes the same path.
    assert submit(env, tmp_path).exit_code == 0
