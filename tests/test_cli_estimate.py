"""``klingcost estimate`` and ``klingcost prices`` through click's CliRunner."""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from klingcost.cli import main
from klingcost.sheet import PRICING_ENV

SEED_EXAMPLE = {"model_name": "kling-v1-5", "prompt": "a ship", "mode": "pro", "duration": "10"}
O1_EXAMPLE = {
    "prompt": "snow",
    "mode": "pro",
    "duration": 5,
    "video_list": [{"video_url": "https://example.com/v.mp4"}],
}


@pytest.fixture(autouse=True)
def _no_env_sheet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRICING_ENV, raising=False)
    monkeypatch.delenv("KLINGCOST_DEBUG", raising=False)


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, env=env, catch_exceptions=False)


def write_json(tmp_path: Path, data: Any, name: str = "body.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def write_lines(tmp_path: Path, lines: list[str], name: str = "batch.jsonl") -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def overlay(tmp_path: Path, credits_per_video_unit: int, name: str = "mine.yaml") -> str:
    path = tmp_path / name
    path.write_text(
        "providers:\n  openai-hk:\n    per_unit:\n"
        f"      video: {{ amount: {credits_per_video_unit}, source: inferred }}\n",
        encoding="utf-8",
    )
    return str(path)


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


# --- one body -------------------------------------------------------------------------------


def test_estimate_one_body_table(tmp_path: Path) -> None:
    result = run("estimate", "-e", "text2video", write_json(tmp_path, SEED_EXAMPLE))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "videos/text2video" in out and "kling-v1-5" in out
    assert "= 7 video units" in out
    assert "= 105000 credits" in out
    assert "[seed]" in out
    assert "3.5" in out


def test_estimate_from_stdin() -> None:
    result = run("estimate", "--endpoint", "videos/omni-video", "-", input=json.dumps(O1_EXAMPLE))
    assert result.exit_code == 0, result.output
    assert "= 90000 credits" in result.stdout
    assert "= 6 video units" in result.stdout


def test_estimate_json_shape(tmp_path: Path) -> None:
    result = run("estimate", "-e", "text2video", "--json", write_json(tmp_path, SEED_EXAMPLE))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"endpoint", "model", "units", "pack", "credits", "breakdown"} <= set(data)
    assert data["endpoint"] == "videos/text2video"
    assert data["model"] == "kling-v1-5"
    assert data["units"] == "7"
    assert data["pack"] == "video"
    assert data["credits"] == "105000"
    total = Fraction(1)
    for step in data["breakdown"]:
        assert {"rule", "factor", "source"} <= set(step)
        total *= Fraction(step["factor"])
    assert total == 7


def test_estimate_json_image_body(tmp_path: Path) -> None:
    body = {
        "model": "kling-v1-5",
        "prompt": "a cat",
        "n": "3",
        "image": "https://example.com/a.png",
    }
    result = run("estimate", "-e", "images", "--json", write_json(tmp_path, body))
    data = json.loads(result.stdout)
    assert (data["units"], data["pack"], data["credits"], data["n"]) == ("24", "image", "9000", 3)


@pytest.mark.parametrize(
    "job",
    [
        {"endpoint": "videos/text2video", "body": SEED_EXAMPLE},
        {"endpoint": "text2video", **SEED_EXAMPLE},  # a field beside the body's own
    ],
)
def test_one_body_may_name_its_endpoint(tmp_path: Path, job: dict[str, object]) -> None:
    result = run("estimate", "--json", write_json(tmp_path, job))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["units"] == "7"
    # The job's own endpoint wins over --endpoint, so one batch can mix endpoints.
    result = run("estimate", "-e", "images", "--json", write_json(tmp_path, job))
    assert json.loads(result.stdout)["endpoint"] == "videos/text2video"


def test_pretty_printed_body_is_one_body(tmp_path: Path) -> None:
    path = tmp_path / "pretty.json"
    path.write_text(json.dumps(SEED_EXAMPLE, indent=2), encoding="utf-8")
    result = run("estimate", "-e", "text2video", "--json", str(path))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["credits"] == "105000"


def test_provider_option(tmp_path: Path) -> None:
    result = run(
        "estimate",
        "-e",
        "text2video",
        "--provider",
        "kling-global",
        "--json",
        write_json(tmp_path, SEED_EXAMPLE),
    )
    data = json.loads(result.stdout)
    assert (data["currency"], data["cost"], data["credits"]) == ("usd", "0.98", None)


def test_no_endpoint_is_exit_2(tmp_path: Path) -> None:
    result = run("estimate", write_json(tmp_path, SEED_EXAMPLE))
    assert result.exit_code == 2
    assert "endpoint" in result.stderr
    assert "--endpoint" in result.stderr
    assert_no_traceback(result)


def test_invalid_body_is_exit_2_naming_every_field(tmp_path: Path) -> None:
    body = {"prompt": "x" * 501, "duration": "7", "model_name": "kling-v1", "audio": "yes"}
    body["mode"] = "ultra"
    result = run("estimate", "-e", "text2video", write_json(tmp_path, body))
    assert result.exit_code == 2
    err = result.stderr
    assert err.startswith("Error: invalid videos/text2video request (4 problems)")
    assert "duration" in err and "7" in err
    assert "mode" in err and "ultra" in err
    assert "prompt" in err and "501 characters" in err
    assert "audio" in err and "unknown field that may change the price" in err
    assert result.stdout == ""
    assert_no_traceback(result)


def test_unknown_endpoint_is_exit_2(tmp_path: Path) -> None:
    result = run("estimate", "-e", "lipsync", write_json(tmp_path, SEED_EXAMPLE))
    assert result.exit_code == 2
    assert "unknown endpoint" in result.stderr
    assert_no_traceback(result)


def test_unknown_provider_is_exit_2(tmp_path: Path) -> None:
    result = run(
        "estimate", "-e", "text2video", "--provider", "acme", write_json(tmp_path, SEED_EXAMPLE)
    )
    assert result.exit_code == 2
    assert "acme" in result.stderr


@pytest.mark.parametrize("text", ["", "   \n", "{not json"])
def test_empty_or_broken_file_is_exit_2(tmp_path: Path, text: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text, encoding="utf-8")
    result = run("estimate", "-e", "text2video", str(path))
    assert result.exit_code == 2
    assert_no_traceback(result)


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    result = run("estimate", "-e", "text2video", str(tmp_path / "nope.json"))
    assert result.exit_code == 2
    assert "nope.json" in result.stderr


# --- a JSON Lines batch -------------------------------------------------------------------------


def batch_lines() -> list[str]:
    return [
        json.dumps(SEED_EXAMPLE),  # 1: 7 units
        json.dumps({"prompt": "p", "duration": 7}),  # 2: bad duration
        "this is not json",  # 3: not JSON
        "",  # 4: blank
        json.dumps({"endpoint": "images", "body": {"prompt": "p", "n": 3}}),  # 5: 3 image units
        json.dumps({"endpoint": "videos/omni-video", "body": O1_EXAMPLE}),  # 6: 6 units
        json.dumps({"endpoint": 5, "body": {"prompt": "p"}}),  # 7: bad endpoint
        json.dumps(["a", "list"]),  # 8: not an object
        json.dumps({"prompt": "p", "model": "kling-v2-master"}),  # 9: 10 units
    ]


def test_batch_table_reports_bad_lines_by_number(tmp_path: Path) -> None:
    result = run("estimate", "-e", "text2video", write_lines(tmp_path, batch_lines()))
    assert result.exit_code == 2
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:-1]}
    assert set(rows) == {"1", "2", "3", "5", "6", "7", "8", "9"}
    assert "invalid" in rows["2"] and "duration" in rows["2"]
    assert "invalid" in rows["3"] and "not JSON" in rows["3"]
    assert "invalid" in rows["7"] and "endpoint" in rows["7"]
    assert "invalid" in rows["8"] and "JSON object" in rows["8"]
    assert "105000" in rows["1"] and "kling-v1-5" in rows["1"]
    assert "1125" in rows["5"]  # 3 images x 375 credits
    assert "90000" in rows["6"]
    assert "150000" in rows["9"]
    total = result.stdout.splitlines()[-1]
    # 105000 + 1125 + 90000 + 150000 credits; 23 video units, 3 image units
    assert total == ("total: 4 priced, 4 invalid; 3 image units, 23 video units; 346125 credits")
    assert_no_traceback(result)


def test_batch_json(tmp_path: Path) -> None:
    result = run("estimate", "-e", "text2video", "--json", write_lines(tmp_path, batch_lines()))
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    by_line = {entry["line"]: entry for entry in data["results"]}
    assert set(by_line) == {1, 2, 3, 5, 6, 7, 8, 9}
    assert by_line[1]["estimate"]["units"] == "7"
    assert by_line[1]["estimate"]["credits"] == "105000"
    assert {"endpoint", "model", "units", "pack", "credits"} <= set(by_line[1]["estimate"])
    assert by_line[5]["estimate"]["pack"] == "image"
    assert by_line[6]["estimate"]["endpoint"] == "videos/omni-video"
    problems = by_line[2]["error"]["problems"]
    assert problems == [
        {
            "field": "duration",
            "given": 7,
            "allowed": '"5" or "10"',
            "message": "not an allowed duration",
        }
    ]
    assert "not JSON" in by_line[3]["error"]["message"]
    assert data["totals"] == {
        "lines": 8,
        "priced": 4,
        "errors": 4,
        "units": {"image": "3", "video": "23"},
        "cost": "346125",
        "currency": "credits",
    }


def test_batch_all_valid_is_exit_0(tmp_path: Path) -> None:
    lines = [json.dumps(SEED_EXAMPLE)] * 3 + [json.dumps({"prompt": "p"})]
    result = run("estimate", "-e", "text2video", "--json", write_lines(tmp_path, lines))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["totals"]["units"] == {"video": "22"}
    assert data["totals"]["cost"] == "330000"
    assert [entry["line"] for entry in data["results"]] == [1, 2, 3, 4]


def test_batch_without_endpoint_reports_each_line(tmp_path: Path) -> None:
    lines = [
        json.dumps({"prompt": "p"}),
        json.dumps({"endpoint": "text2video", "body": {"prompt": "p"}}),
    ]
    result = run("estimate", "--json", write_lines(tmp_path, lines))
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["results"][0]["error"]["problems"][0]["field"] == "endpoint"
    assert data["results"][1]["estimate"]["units"] == "1"


def test_batch_from_stdin() -> None:
    text = "\n".join([json.dumps(SEED_EXAMPLE), json.dumps({"prompt": "p", "duration": 10})])
    result = run("estimate", "-e", "text2video", "-", input=text)
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.splitlines()[-1]
        == "total: 2 priced, 0 invalid; 9 video units; 135000 credits"
    )


# --- price sheets ---------------------------------------------------------------------------


def test_pricing_overlay_option(tmp_path: Path) -> None:
    result = run(
        "estimate",
        "-e",
        "text2video",
        "--json",
        "--pricing",
        overlay(tmp_path, 10000),
        write_json(tmp_path, SEED_EXAMPLE),
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["units"], data["credits"]) == ("7", "70000")


def test_pricing_env_var(tmp_path: Path) -> None:
    env = {PRICING_ENV: overlay(tmp_path, 20000)}
    result = run(
        "estimate", "-e", "text2video", "--json", write_json(tmp_path, SEED_EXAMPLE), env=env
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["credits"] == "140000"
    prices = run("prices", "--json", env=env)
    assert json.loads(prices.stdout)["origin"].endswith("mine.yaml")


def test_pricing_option_beats_env_var(tmp_path: Path) -> None:
    env = {PRICING_ENV: overlay(tmp_path, 20000, "env.yaml")}
    result = run(
        "estimate",
        "-e",
        "text2video",
        "--json",
        "--pricing",
        overlay(tmp_path, 1000, "arg.yaml"),
        write_json(tmp_path, SEED_EXAMPLE),
        env=env,
    )
    assert json.loads(result.stdout)["credits"] == "7000"


@pytest.mark.parametrize("command", [["estimate", "-e", "text2video"], ["prices"]])
def test_broken_sheet_is_exit_2_with_file_and_key_path(tmp_path: Path, command: list[str]) -> None:
    sheet = tmp_path / "broken.yaml"
    sheet.write_text(
        'video:\n  durations:\n    "10": { factor: 2.5, source: seed }\n', encoding="utf-8"
    )
    args = [*command, "--pricing", str(sheet)]
    if command[0] == "estimate":
        args.append(write_json(tmp_path, SEED_EXAMPLE))
    result = run(*args)
    assert result.exit_code == 2
    assert str(sheet) in result.stderr
    assert "video.durations.10.factor" in result.stderr
    assert "float" in result.stderr
    assert result.stdout == ""
    assert_no_traceback(result)


def test_missing_sheet_is_exit_2(tmp_path: Path) -> None:
    result = run("prices", "--pricing", str(tmp_path / "gone.yaml"))
    assert result.exit_code == 2
    assert "gone.yaml" in result.stderr and "file not found" in result.stderr


# --- klingcost prices -------------------------------------------------------------------------


def test_prices_table() -> None:
    result = run("prices")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "price sheet: klingcost/data/pricing.yaml"
    assert lines[1].split() == [
        "endpoint",
        "model",
        "mode",
        "sec",
        "options",
        "units",
        "pack",
        "credits",
    ]
    rows = [line.split() for line in lines[2:]]
    assert ["videos/text2video", "kling-v1", "std", "5", "1", "video", "15000"] in rows
    assert ["videos/text2video", "kling-v1-5", "pro", "10", "7", "video", "105000"] in rows
    assert ["videos/text2video", "kling-v2-master", "-", "5", "10", "video", "150000"] in rows
    assert [
        "videos/text2video",
        "kling-v2-6",
        "pro",
        "10",
        "sound",
        "on",
        "10",
        "video",
        "150000",
    ] in rows
    assert [
        "videos/omni-video",
        "kling-video-o1",
        "pro",
        "5",
        "video",
        "reference",
        "6",
        "video",
        "90000",
    ] in rows
    assert [
        "images/generations",
        "kling-v1-5",
        "-",
        "-",
        "reference",
        "image",
        "8",
        "image",
        "3000",
    ] in rows


def test_prices_json() -> None:
    result = run("prices", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["origin"] == "klingcost/data/pricing.yaml"
    rows: list[dict[str, Any]] = data["rows"]
    assert {"endpoint", "model", "mode", "duration", "units", "pack", "cost", "currency"} <= set(
        rows[0]
    )

    def find(**match: Any) -> dict[str, Any]:
        found = [row for row in rows if all(row[k] == v for k, v in match.items())]
        assert len(found) == 1, (match, found)
        return found[0]

    assert find(model="kling-v1", mode="pro", duration=10)["units"] == "7"
    assert find(model="kling-v2-1-master", duration=10)["units"] == "20"
    assert find(model="kling-v2-5-turbo", mode="std", duration=5)["units"] == "1.5"
    # openai-hk bills O1 as pro whatever the mode (the seed's recorded answer): 0.8 units/s.
    assert find(model="kling-video-o1", mode="std", duration=10, options="")["units"] == "8"
    assert find(model="kling-video-o1", mode="std", duration=3, options="")["units"] == "2.4"
    assert find(model="kling-image-o1", options="per image")["cost"] == "3000"
    models = {row["model"] for row in rows}
    assert {
        "kling-v1",
        "kling-v1-5",
        "kling-v1-6",
        "kling-v2-master",
        "kling-v2-1",
        "kling-v2-1-master",
        "kling-v2-5-turbo",
        "kling-v2-6",
        "kling-video-o1",
        "kling-v2",
        "kling-image-o1",
    } <= models


def test_prices_other_provider() -> None:
    result = run("prices", "--provider", "kling-cn")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split()[-1] == "cny"
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert ["videos/text2video", "kling-v1", "pro", "5", "3.5", "video", "3.5"] in rows


def test_prices_with_overlay(tmp_path: Path) -> None:
    result = run("prices", "--json", "--pricing", overlay(tmp_path, 100))
    rows = json.loads(result.stdout)["rows"]
    base = [
        r for r in rows if r["model"] == "kling-v1" and r["mode"] == "std" and r["duration"] == 5
    ]
    assert base[0]["cost"] == "100"


# --- help and exit codes ----------------------------------------------------------------------


def test_every_command_has_help_text() -> None:
    def walk(group: click.Group, path: list[str]) -> list[list[str]]:
        found = []
        ctx = click.Context(group)  # list_commands/get_command: the top group loads lazily
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, name
            found.append([*path, name])
            assert command.help or command.short_help, f"{' '.join([*path, name])} has no help"
            if isinstance(command, click.Group):
                found += walk(command, [*path, name])
        return found

    paths = walk(main, [])
    assert ["estimate"] in paths and ["prices"] in paths
    for path in paths:
        result = run(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.stdout


@pytest.mark.parametrize("command", [[], ["estimate"], ["prices"]])
def test_help_documents_exit_codes(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "0 ok" in text
    assert "1 error" in text
    assert "2 invalid input" in text


def test_estimate_help_describes_the_options() -> None:
    text = run("estimate", "--help").stdout
    for option in (
        "--endpoint",
        "--provider",
        "--pricing",
        "--json",
        "KLINGCOST_PRICING",
        "JSON Lines",
    ):
        assert option in text


def test_several_overlays_stack_in_order(tmp_path: Path) -> None:
    tier = tmp_path / "observed.yaml"  # kling-v1-5 pro learned at 4.2 instead of 3.5
    tier.write_text(
        'video: {models: {kling-v1-5: {pro: {factor: "4.2", source: inferred}}}}\n',
        encoding="utf-8",
    )
    rate = tmp_path / "credits.yaml"  # 12,000 credits a unit
    rate.write_text(
        "providers: {openai-hk: {per_unit: {video: {amount: 12000, source: inferred}}}}\n",
        encoding="utf-8",
    )
    body = write_json(tmp_path, SEED_EXAMPLE)  # kling-v1-5 pro 10 s
    args = ["estimate", "-e", "text2video", "--json", body]
    both = json.loads(run(*args, "--pricing", str(tier), "--pricing", str(rate)).stdout)
    assert (both["units"], both["credits"]) == ("8.4", "100800")  # 1 x 4.2 x 2, x 12,000
    env = {PRICING_ENV: f"{tier}{os.pathsep}{rate}"}
    assert json.loads(run(*args, env=env).stdout)["credits"] == "100800"
    one = json.loads(run(*args, "--pricing", str(rate)).stdout)
    assert (one["units"], one["credits"]) == ("7", "84000")
