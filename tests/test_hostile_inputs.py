"""Input that hung or escaped (issue 13, items 14 to 16), each attack replayed end to end.

* 14: numbers with huge exponents (``1e999999999``) hung every entry point for minutes, as
  ``Fraction`` computed ``10**999999999``: a budget's limit and soft share, reconcile's
  tolerance, an overlay's amount, an imported usage log's fen, the fake API's drift, and an API
  answer's ``index``, which hung ``sync``. Each now returns promptly with exit 2 (1 for the API
  answer, a protocol error) and changes nothing. A hang is caught by running the command in a
  subprocess with a timeout (no assertion on speed beyond "returns within a few seconds").
* 15: a lone surrogate (JSON's ``"\\ud800"``) in any string of a body passed validation, got a
  hold, then failed to encode and left the hold unknown. It is refused at validation.
* 16: deeply nested JSON, integers over 4,300 digits, non-UTF-8 files and deeply nested YAML
  exited 1 ("unexpected RecursionError"); the hook server answered them 500 with a traceback.
  They are invalid input: exit 2, and 400 from the hook server (tested over real HTTP).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from fake_fixtures import BODIES, KEY, _fake_session, fake_server  # noqa: F401
from klingcost import errors
from klingcost._json import MAX_DEPTH, JSONInputError, loads
from klingcost.api.envelope import read_envelope
from klingcost.cli import main
from klingcost.deduction import parse_deduction
from klingcost.fake_server import FakeKling
from klingcost.guard import GuardedClient
from klingcost.ledger import Ledger
from klingcost.money import MAX_DIGITS, exact, json_decimal, json_int
from klingcost.pricing import estimate

ENDPOINT = "videos/text2video"
BODY = BODIES[ENDPOINT]
CLI = "from klingcost.cli import main; main(prog_name='klingcost')"
#: Every command here returns in about a second; a hang would take minutes. The subprocess is
#: killed at this many seconds, so a regression fails the test instead of stalling the suite.
PROMPTLY = 30

HUGE = "1e999999999"
DEEP_JSON = "[" * 100_000 + "]" * 100_000
#: Below Python's recursion limit, so json.loads alone reads it; still refused.
DEEPISH_JSON = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
LONG_INT = "7" * 5000  # over Python's 4,300-digit limit for int(str)


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("acme", limit=10_000_000, period="month")
        ledger.set_budget("studio", limit=1_000_000, period="month", parent="acme")
    return path


@pytest.fixture
def env(fake: FakeKling, tmp_path: Path, ledger_path: Path) -> dict[str, str]:
    return {
        "KLINGCOST_API_KEY": KEY,
        "KLINGCOST_BASE_URL": fake.base_url,
        "KLINGCOST_LEDGER": str(ledger_path),
        "KLINGCOST_HOME": str(tmp_path / "home"),
        "KLINGCOST_PRICING": "",
        "KLINGCOST_HOOK_URL": "",
        "KLINGCOST_DEBUG": "",
    }


def contents(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read through a read-only connection."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: sorted(map(tuple, conn.execute(f'SELECT * FROM "{n}"'))) for n in names}
    finally:
        conn.close()


def promptly(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``klingcost ARGS`` in a subprocess that must finish within PROMPTLY seconds."""
    command = [sys.executable, "-c", CLI, *args]
    try:
        return subprocess.run(
            command,
            env={**os.environ, **env},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=PROMPTLY,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"klingcost {' '.join(args)} hung (killed after {PROMPTLY} s)")


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), env=env, input=stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit), result
    return result


def assert_invalid(output: str) -> None:
    """Exit 2's message: one ``Error:`` paragraph, no traceback, not "unexpected"."""
    assert "Error" in output, output
    assert "Traceback" not in output and "unexpected" not in output, output
    assert "set_int_max_str_digits" not in output, output  # Python's advice, not ours


# --- 14: huge exponents, at every door ----------------------------------------------------

OVERLAY = f"""
providers:
  openai-hk:
    per_unit:
      video: {{amount: "{HUGE}", source: seed}}
"""

#: name -> (arguments, files to write in the working directory, what the error must name)
HANGING: dict[str, tuple[list[str], dict[str, str], str]] = {
    "budget --limit": (["budget", "set", "studio", "--limit", HUGE], {}, "limit"),
    "budget --soft": (
        ["budget", "set", "studio", "--limit", "10", "--soft", "1e-99999999"],
        {},
        "soft",
    ),
    "reconcile --tolerance": (["reconcile", "--tolerance", "1e99999999"], {}, "--tolerance"),
    "overlay amount": (
        ["estimate", "-e", "text2video", "--pricing", "overlay.yaml", "job.json"],
        {"overlay.yaml": OVERLAY, "job.json": json.dumps(BODY)},
        "providers.openai-hk.per_unit.video.amount",
    ),
    "import-usage fen (a JSON number)": (
        ["import-usage", "usage.json"],
        {"usage.json": f'[{{"reqid": "r1", "fen": {HUGE}, "model": "kling-v1-5"}}]'},
        HUGE,
    ),
    "import-usage fen (a string)": (
        ["import-usage", "usage.json"],
        {"usage.json": f'[{{"reqid": "r1", "fen": "{HUGE}", "model": "kling-v1-5"}}]'},
        "fen",
    ),
    "fake-server --drift": (
        ["fake-server", "--port", "0", "--drift", f"kling-v1-5={HUGE}"],
        {},
        "--drift",
    ),
}


@pytest.mark.parametrize("name", HANGING)
def test_a_huge_exponent_is_refused_promptly_with_exit_2(
    name: str, env: dict[str, str], ledger_path: Path, tmp_path: Path
) -> None:
    args, files, named = HANGING[name]
    for file, text in files.items():
        (tmp_path / file).write_text(text, encoding="utf-8")
    before = contents(ledger_path)
    result = promptly(env, *args, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert_invalid(result.stderr)
    assert named in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()[-1]) < 400  # one line, not 10**9 digits
    assert "fake Kling API on" not in result.stdout  # --drift: no server was started
    assert contents(ledger_path) == before


def test_an_answer_index_of_1e99999999_does_not_hang_sync(
    env: dict[str, str], fake: FakeKling, ledger_path: Path, tmp_path: Path
) -> None:
    (tmp_path / "job.json").write_text(json.dumps(BODY), encoding="utf-8")
    submitted = run(env, "submit", "-t", "studio", "-e", ENDPOINT, str(tmp_path / "job.json"))
    assert submitted.exit_code == 0, submitted.output
    with Ledger.open(ledger_path) as ledger:
        [hold] = ledger.holds()
    answer = {
        "code": 0,
        "message": "ok",
        "request_id": "r-1",
        "data": {
            "task_id": hold.task_id,
            "task_status": "succeed",
            "final_unit_deduction": "7",
            "task_result": {"images": [{"index": "@INDEX@", "url": "https://x.invalid/i.png"}]},
        },
    }
    body = json.dumps(answer).replace('"@INDEX@"', "1e99999999")
    fake.set_faults({"kind": "malformed", "method": "GET", "body": body, "times": 5})
    before = contents(ledger_path)
    result = promptly(env, "sync", cwd=tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)  # an API error, not a crash
    assert "MalformedResponseError" in result.stdout and "out of bounds" in result.stdout
    assert "Traceback" not in result.stderr
    assert contents(ledger_path) == before  # the hold stays counted, as it was
    with Ledger.open(ledger_path) as ledger:
        assert ledger.get_hold(hold.id).state == "submitted"


@pytest.mark.parametrize(
    "number", ["1e99999999", "-1e99999999", "1e-99999999", "1e101", "1" * 101 + ".0"]
)
def test_an_api_answer_with_an_unbounded_number_is_a_protocol_error(number: str) -> None:
    content = b'{"code": 0, "data": {"task_id": "1", "task_status": "succeed", "x": %s}}' % (
        number.encode()
    )
    with pytest.raises(errors.MalformedResponseError, match="out of bounds"):
        read_envelope(200, content)


def test_an_api_answer_with_a_long_integer_is_a_protocol_error() -> None:
    content = b'{"code": 0, "data": {"task_id": %s, "task_status": "succeed"}}' % (
        b"9" * (MAX_DIGITS + 1)
    )
    with pytest.raises(errors.MalformedResponseError, match="integer of 101 digits"):
        read_envelope(200, content)


def test_numbers_within_bounds_are_still_read_exactly() -> None:
    payload = read_envelope(
        200, b'{"code": 0, "data": {"a": 1e100, "b": 0.1, "c": %s}}' % (b"9" * MAX_DIGITS)
    )
    assert payload["data"] == {"a": Decimal("1e100"), "b": Decimal("0.1"), "c": 10**100 - 1}
    assert parse_deduction("1e100").flag == "absurd"
    assert parse_deduction("1e101").flag == "absurd"
    # past the deduction's own exponent bound no number is built at all (no 10**999999999)
    assert parse_deduction("1e1001").flag == "absurd" and parse_deduction("1e1001").units is None
    assert parse_deduction("1e-1001").flag == "malformed"


@pytest.mark.parametrize(
    "value",
    [
        HUGE,
        "-" + HUGE,
        "1e-99999999",
        "1e101",
        "1e-101",
        "1" * (MAX_DIGITS + 1),
        pytest.param("1" * 10_000, id="10,000 ones"),
        f"{'1' * (MAX_DIGITS + 1)}/3",
        f"1/{'3' * (MAX_DIGITS + 1)}",
        Decimal(HUGE),
        Decimal("1e-99999999"),
        10 ** (MAX_DIGITS + 1),
        pytest.param(-(10**5000), id="minus 10**5000"),  # str() of it fails
    ],
)
def test_exact_refuses_amounts_out_of_bounds_in_one_line(value: object) -> None:
    with pytest.raises(ValueError, match=r"out of bounds|digits") as caught:
        exact(value)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("value", "amount"),
    [
        ("1e100", Fraction(10**100)),
        ("1e-100", Fraction(1, 10**100)),
        ("0.0000001", Fraction(1, 10**7)),
        ("9" * MAX_DIGITS, Fraction(10**MAX_DIGITS - 1)),
        (10**MAX_DIGITS - 1, Fraction(10**MAX_DIGITS - 1)),
        (f"1/{'3' * MAX_DIGITS}", Fraction(1, int("3" * MAX_DIGITS))),
    ],
)
def test_exact_takes_amounts_up_to_the_bounds(value: object, amount: Fraction) -> None:
    assert exact(value) == amount


def test_json_number_hooks_are_bounded() -> None:
    with pytest.raises(ValueError, match="out of bounds"):
        json_decimal("1e99999999")
    with pytest.raises(ValueError, match="integer of 5000 digits"):
        json_int(LONG_INT)
    assert json_int("-" + "9" * 4300) == -int("9" * 4300)


# --- 15: lone surrogates ------------------------------------------------------------------

#: JSON texts of bodies with a lone surrogate (escaped, as a JSON file holds it) -> the field.
SURROGATES = {
    '{"prompt": "a ship \\ud800 in space"}': "prompt",
    '{"prompt": "ok", "negative_prompt": "\\udfff"}': "negative_prompt",
    '{"prompt": "ok", "external_task_id": "job-\\udc80"}': "external_task_id",
    '{"prompt": "ok", "\\ud800": "x"}': "\\ud800",
}


@pytest.mark.parametrize("text", SURROGATES)
def test_estimate_refuses_a_lone_surrogate_naming_the_field(
    text: str, env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "job.json").write_text(text, encoding="utf-8")
    result = run(env, "estimate", "-e", "text2video", str(tmp_path / "job.json"))
    assert result.exit_code == 2, result.output
    assert_invalid(result.output)
    assert f"  - {SURROGATES[text]}: a " in result.output and "lone surrogate" in result.output


@pytest.mark.parametrize("text", SURROGATES)
def test_submit_refuses_a_lone_surrogate_before_any_hold(
    text: str, env: dict[str, str], fake: FakeKling, ledger_path: Path, tmp_path: Path
) -> None:
    (tmp_path / "job.json").write_text(text, encoding="utf-8")
    before = contents(ledger_path)
    result = run(env, "submit", "-t", "studio", "-e", ENDPOINT, str(tmp_path / "job.json"))
    assert result.exit_code == 2, result.output
    assert SURROGATES[text] in result.output and "lone surrogate" in result.output
    assert contents(ledger_path) == before  # no hold, no event
    assert fake.requests("POST") == []


def test_the_guard_refuses_a_lone_surrogate_at_any_depth(
    fake: FakeKling, ledger_path: Path
) -> None:
    body = {
        "model_name": "kling-video-o1",
        "prompt": "snow <<<image_1>>>",
        "image_list": [{"image_url": "https://x.invalid/\udc80.png"}],
    }
    with (
        Ledger.open(ledger_path) as ledger,
        GuardedClient("studio", ledger=ledger, api_key=KEY, base_url=fake.base_url) as guard,
    ):
        with pytest.raises(errors.RequestValidationError) as caught:
            guard.submit("videos/omni-video", body)
        assert [p.field for p in caught.value.problems] == ["image_list.0.image_url"]
        assert str(caught.value).encode("utf-8")  # the message itself can be printed
        assert list(ledger.holds()) == []
    assert fake.requests("POST") == []


def test_a_lone_surrogate_in_the_hook_url_is_refused_before_any_hold(
    fake: FakeKling, ledger_path: Path
) -> None:
    # A KLINGCOST_HOOK_URL holding a byte that is not UTF-8 reaches Python as "\udcff".
    with (
        Ledger.open(ledger_path) as ledger,
        GuardedClient(
            "studio",
            ledger=ledger,
            api_key=KEY,
            base_url=fake.base_url,
            hook_url="https://hooks.invalid/\udcff",
        ) as guard,
    ):
        with pytest.raises(errors.RequestValidationError, match="notify_hook") as caught:
            guard.submit(ENDPOINT, BODY)
        assert "surrogates not allowed" in str(caught.value)
        assert list(ledger.holds()) == []
    assert fake.requests("POST") == []


# --- 16: nesting, long integers, bytes that are not UTF-8 ---------------------------------

#: name -> the bytes of a file. Each one once raised RecursionError, ValueError or
#: UnicodeDecodeError out of the CLI (exit 1, "unexpected").
BAD_FILES: dict[str, bytes] = {
    "deeply nested": DEEP_JSON.encode(),
    "nested past the bound": DEEPISH_JSON.encode(),
    "a 5000-digit integer": b'{"prompt": "x", "duration": ' + LONG_INT.encode() + b"}",
    "not UTF-8": b'{"prompt": "caf\xe9"}',
    "nested body, pretty-printed": json.dumps(
        {"prompt": "x", "image_list": json.loads(DEEPISH_JSON)}, indent=1
    ).encode(),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_estimate_exits_2_on_a_hostile_file(name: str, env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "job.json").write_bytes(BAD_FILES[name])
    result = run(env, "estimate", "-e", "text2video", str(tmp_path / "job.json"))
    assert result.exit_code == 2, result.output
    assert_invalid(result.output)


@pytest.mark.parametrize("name", BAD_FILES)
def test_submit_exits_2_on_a_hostile_file_and_holds_nothing(
    name: str, env: dict[str, str], fake: FakeKling, ledger_path: Path, tmp_path: Path
) -> None:
    (tmp_path / "job.json").write_bytes(BAD_FILES[name])
    before = contents(ledger_path)
    result = run(env, "submit", "-t", "studio", "-e", ENDPOINT, str(tmp_path / "job.json"))
    assert result.exit_code == 2, result.output
    assert_invalid(result.output)
    assert contents(ledger_path) == before
    assert fake.requests("POST") == []


def test_a_hostile_line_of_a_batch_is_reported_and_the_rest_priced(
    env: dict[str, str], tmp_path: Path
) -> None:
    lines = [
        json.dumps(BODY),
        DEEP_JSON,
        '{"prompt": "x", "n": ' + LONG_INT + "}",
        json.dumps(BODY),
    ]
    (tmp_path / "batch.jsonl").write_text("\n".join(lines), encoding="utf-8")
    result = run(env, "estimate", "-e", "text2video", str(tmp_path / "batch.jsonl"))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "unexpected" not in result.output
    assert "     2  invalid: not JSON: nested more than 64 levels deep" in result.output
    assert "     3  invalid: not JSON: an integer of 5000 digits" in result.output
    assert "total: 2 priced, 2 invalid" in result.output


USAGE_FILES: dict[str, bytes] = {
    "deeply nested": DEEP_JSON.encode(),
    "a 5000-digit fen": b'[{"reqid": "r1", "fen": ' + LONG_INT.encode() + b"}]",
    "a 200-digit fen": b'[{"reqid": "r1", "fen": ' + b"7" * 200 + b"}]",
    "not UTF-8": b'[{"reqid": "r1", "fen": 15000, "model": "kling-v1-5", "note": "\xff"}]',
}


@pytest.mark.parametrize("name", USAGE_FILES)
def test_import_usage_exits_2_on_a_hostile_log(
    name: str, env: dict[str, str], ledger_path: Path, tmp_path: Path
) -> None:
    (tmp_path / "usage.json").write_bytes(USAGE_FILES[name])
    before = contents(ledger_path)
    result = run(env, "import-usage", str(tmp_path / "usage.json"))
    assert result.exit_code == 2, result.output
    assert_invalid(result.output)
    assert str(tmp_path / "usage.json") in result.output  # the file is named
    assert contents(ledger_path) == before


SHEETS: dict[str, bytes] = {
    "deeply nested": b"video: " + b"[" * 5000 + b"]" * 5000,
    "deeply nested mappings": b"video: " + b"{a: " * 5000 + b"1" + b"}" * 5000,
    "a 5000-digit integer": b"video: {base: {units: " + LONG_INT.encode() + b", source: seed}}",
    "a 200-digit integer": b"video: {base: {units: " + b"7" * 200 + b", source: seed}}",
    "not UTF-8": b"sources: {seed: caf\xe9}",
}


@pytest.mark.parametrize("name", SHEETS)
def test_a_hostile_price_sheet_exits_2_naming_it(
    name: str, env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "sheet.yaml").write_bytes(SHEETS[name])
    result = run(
        env,
        "estimate",
        "-e",
        "text2video",
        "--pricing",
        str(tmp_path / "sheet.yaml"),
        "-",
        stdin=json.dumps(BODY),
    )
    assert result.exit_code == 2, result.output
    assert_invalid(result.output)
    assert f"price sheet {tmp_path / 'sheet.yaml'}" in result.output


@pytest.mark.parametrize(
    "document",
    [DEEP_JSON, DEEPISH_JSON, "[" + LONG_INT + "]", b'"\xff"', '{"a": ' * 70 + "1" + "}" * 70],
)
def test_loads_refuses_what_klingcost_will_not_read(document: str | bytes) -> None:
    with pytest.raises(JSONInputError) as caught:
        loads(document)
    assert "\n" not in str(caught.value)


def test_loads_with_valid_text_names_a_lone_surrogate_and_keeps_pairs() -> None:
    with pytest.raises(JSONInputError, match=r"^a\.0\.b holds a lone surrogate"):
        loads('{"a": [{"b": "x\\udfff"}]}', valid_text=True)
    with pytest.raises(JSONInputError, match=r"^the key \\ud800 holds"):
        loads('{"\\ud800": 1}', valid_text=True)
    assert loads('{"a": "\\ud83d\\ude00"}', valid_text=True) == {"a": "\U0001f600"}
    assert loads('{"a": "\\ud800"}') == {"a": "\ud800"}  # bodies: validation names it


def test_loads_reads_a_document_at_the_bound() -> None:
    at_bound = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads(at_bound) == json.loads(at_bound)
    assert loads(b'{"a": [1, 2.5]}', decimals=True) == {"a": [1, Decimal("2.5")]}


# --- the hook server, over real HTTP -------------------------------------------------------

SECRET = "s3cret-hook-path-0123456789"
#: Callback bodies that once took the hook server to a 500 and a traceback.
HOOK_BODIES: dict[str, bytes] = {
    "deeply nested": DEEP_JSON.encode(),
    "nested past the bound": b'{"task_id": "1", "x": ' + DEEPISH_JSON.encode() + b"}",
    "a 5000-digit task id": b'{"task_id": ' + LONG_INT.encode() + b"}",
    "a 200-digit task id": b'{"task_id": ' + b"7" * 200 + b"}",
    "not UTF-8": b'{"task_id": "caf\xe9"}',
    "a lone surrogate in the task id": b'{"task_id": "\\ud800"}',
    "a lone surrogate in the external id": (
        b'{"task_id": "1", "task_info": {"external_task_id": "job-\\udc80"}}'
    ),
    "an encoded surrogate": b'{"task_id": "\xed\xa0\x80"}',  # no UTF-8 either
    "an index of 1e99999999": (
        b'{"task_id": "1", "task_status": "succeed", "task_result": '
        b'{"images": [{"index": 1e99999999, "url": "u"}]}}'
    ),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def hook_url(
    _fake_session: FakeKling,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """``klingcost hooks serve`` in its own process; after the tests, its stderr is checked."""
    home = tmp_path_factory.mktemp("hooks")
    with Ledger.open(home / "served.db") as ledger:
        ledger.set_budget("studio", limit=10_000_000, period="month")
    port = _free_port()
    command = [sys.executable, "-c", CLI, "hooks", "serve", "--port", str(port)]
    command += ["--secret", SECRET, "--ledger", str(home / "served.db")]
    env = {
        **os.environ,
        "KLINGCOST_API_KEY": KEY,
        "KLINGCOST_BASE_URL": _fake_session.base_url,
        "KLINGCOST_HOME": str(home),
    }
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hooks serve did not start: {server.communicate()}")
            time.sleep(0.05)
        yield f"{base}/hooks/{SECRET}"
        assert httpx.get(f"{base}/health", timeout=5).json() == {"ok": True}  # still up
    finally:
        server.send_signal(signal.SIGINT)
        _out, err = server.communicate(timeout=15)
    assert "Traceback" not in err, err[-3000:]


@pytest.mark.parametrize("name", HOOK_BODIES)
def test_the_hook_server_answers_a_hostile_body_400(hook_url: str, name: str) -> None:
    answer = httpx.post(hook_url, content=HOOK_BODIES[name], timeout=PROMPTLY)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith("the body is not JSON klingcost reads: ")


@pytest.mark.parametrize("field", ["cfg_scale", "duration"])
def test_a_number_too_long_to_print_is_a_clear_error_from_the_python_api(field: str) -> None:
    # JSON input is cut at its digit limit before this; a Python caller can pass any int, and
    # the message must still print (Python refuses to turn a 4300-digit int into text).
    with pytest.raises(errors.RequestValidationError) as refused:
        estimate("text2video", {"prompt": "a ship", field: 10**5000})
    text = str(refused.value)
    assert f"{field}:" in text and "a whole number of about 5001 digits" in text
