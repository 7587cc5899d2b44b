"""Every input fuzzed: each bad one gets a clear error, and nothing in the ledger changes.

* request bodies (through the guard, ``klingcost estimate`` and ``klingcost submit``);
* price sheets (broken YAML, floats, unknown keys, zero or negative prices, wrong types);
* command-line arguments (random argv over every command);
* API answers (malformed JSON, missing fields, wrong types, huge numbers; to the client, and
  through the guard's submit and settle);
* ledger files (random bytes, a damaged ledger, a foreign SQLite database, a newer schema).

"Nothing changes" is checked on the ledger's contents (every table, read through a read-only
connection) and, for a file that is refused, on its bytes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fake_fixtures import BODIES, KEY, _fake_session, fake_server  # noqa: F401
from klingcost import errors
from klingcost.api.client import KlingClient
from klingcost.budgets import HoldAmounts
from klingcost.cli import main
from klingcost.fake_server import FakeKling
from klingcost.guard import GuardedClient
from klingcost.guard_core import DEFINITE_FAILURES
from klingcost.ledger import Ledger
from klingcost.sheet import load_sheet
from workers import BODY, COST, ENDPOINT

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
EXIT_CODES = {0, 1, 2, 3}
_names = itertools.count()


# --- helpers ------------------------------------------------------------------------------


def snapshot(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read without writing (a read-only connection)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {t: sorted(map(tuple, conn.execute(f'SELECT * FROM "{t}"'))) for t in tables}


def invoke(args: list[str], env: dict[str, str], stdin: str | None = None) -> Result:
    result = CliRunner().invoke(main, args, env=env, input=stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"klingcost {args} raised {result.exception!r}"
    )
    assert result.exit_code in EXIT_CODES, (args, result.exit_code, result.output)
    assert "Traceback" not in result.output, (args, result.output)
    return result


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("company", limit=10**12, period="month")
        ledger.set_budget("studio", limit=10**11, period="month", parent="company")
        ledger.set_budget("broke", limit=0, period="month", parent="company")
        hold = ledger.reserve("studio", HoldAmounts(7000, "video", COST, "credits"), key="seed")
        ledger.attach(hold.id, "task-seed")
        ledger.settle(hold.id, units_milli=7000, cost_minor=COST)
    return path


@pytest.fixture
def env(tmp_path: Path, ledger_path: Path) -> dict[str, str]:
    return {
        "KLINGCOST_API_KEY": KEY,
        "KLINGCOST_BASE_URL": closed_port_url(),  # nothing may be sent: a send would fail
        "KLINGCOST_LEDGER": str(ledger_path),
        "KLINGCOST_HOME": str(tmp_path / "home"),
        "KLINGCOST_PRICING": "",
        "KLINGCOST_HOOK_URL": "",
        "KLINGCOST_DEBUG": "",
    }


@contextlib.contextmanager
def klingcost_logger_restored() -> Iterator[None]:
    """The CLI attaches a handler to the ``klingcost`` logger; drop it after each test."""
    import logging

    logger = logging.getLogger("klingcost")
    handlers, level = list(logger.handlers), logger.level
    try:
        yield
    finally:
        for handler in logger.handlers[:]:
            if handler not in handlers:
                logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture(autouse=True)
def _logger() -> Iterator[None]:
    with klingcost_logger_restored():
        yield


# --- request bodies -----------------------------------------------------------------------

FIELDS = [
    "model_name",
    "prompt",
    "negative_prompt",
    "image",
    "image_tail",
    "n",
    "mode",
    "duration",
    "sound",
    "aspect_ratio",
    "cfg_scale",
    "camera_control",
    "video_list",
    "image_list",
    "element_list",
    "image_fidelity",
    "external_task_id",
    "notify_hook",
    "callback_url",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["5", "10", "std", "pro", "on", "off", "kling-v1-5", "kling-video-o1", "1:1"])
)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_like, max_size=8),
    st.builds(
        lambda extra: {**BODY, **extra},
        st.dictionaries(st.sampled_from(FIELDS), json_like, max_size=3),
    ),
    json_like,
)
endpoints = st.sampled_from([*BODIES, "text2video", "omni-video", "bogus", "", "/v1/x"])


def test_fuzzed_bodies_through_the_guard_hold_and_send_nothing_when_refused(
    ledger_path: Path,
) -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        data = {"task_id": f"t{len(sent)}", "task_status": "submitted"}
        return httpx.Response(200, json={"code": 0, "message": "ok", "data": data})

    transport = httpx.MockTransport(answer)
    tried = Counter_()
    with (
        Ledger.open(ledger_path) as ledger,
        GuardedClient("studio", ledger=ledger, api_key=KEY, transport=transport) as guard,
    ):

        @FUZZ
        @given(endpoint=endpoints, body=bodies)
        @example(endpoint=ENDPOINT, body={**BODY, "duration": 5.5})
        @example(endpoint=ENDPOINT, body={**BODY, "n": 10**40})
        @example(endpoint=ENDPOINT, body={**BODY, "cfg_scale": float("nan")})
        def check(endpoint: str, body: Any) -> None:
            before, count = snapshot(ledger_path), len(sent)
            try:
                submission = guard.submit(endpoint, body)
            except errors.RequestValidationError as exc:
                assert exc.problems and str(exc)
                assert snapshot(ledger_path) == before, "a refused body changed the ledger"
                assert len(sent) == count, "a refused body was sent"
                tried["refused"] += 1
            else:
                assert len(sent) == count + 1
                assert submission.hold.state == "submitted"
                tried["accepted"] += 1

        check()
        assert ledger.check() == []
    assert tried["refused"] > 50


class Counter_(dict[str, int]):
    def __missing__(self, key: str) -> int:
        return 0


@FUZZ
@given(
    body=bodies,
    endpoint=st.sampled_from(["text2video", "image2video", "omni-video", "images/generations"]),
)
def test_fuzzed_bodies_through_klingcost_estimate_exit_0_or_2(
    env: dict[str, str], body: Any, endpoint: str
) -> None:
    text = json.dumps(body, allow_nan=True)
    result = invoke(["estimate", "-e", endpoint, "-"], env, stdin=text)
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:  # one error paragraph, or the batch's line saying "invalid"
        assert "Error:" in result.output or "invalid:" in result.output, result.output
        assert "Error: unexpected " not in result.output


@FUZZ
@given(text=st.text(max_size=80) | st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
def test_fuzzed_text_through_klingcost_estimate_is_refused_clearly(
    env: dict[str, str], text: str
) -> None:
    result = invoke(["estimate", "-e", "text2video", "-"], env, stdin=text)
    assert result.exit_code in (0, 2), result.output
    assert "Error: unexpected " not in result.output


@settings(FUZZ, max_examples=60)
@given(body=bodies, team=st.sampled_from(["studio", "broke", "nobody"]))
def test_fuzzed_bodies_through_klingcost_submit_change_nothing(
    env: dict[str, str], ledger_path: Path, tmp_path: Path, body: Any, team: str
) -> None:
    before = snapshot(ledger_path)
    job = tmp_path / f"job-{next(_names)}.json"
    job.write_text(json.dumps(body, allow_nan=True), encoding="utf-8")
    if team == "studio":
        team = "broke"  # a valid body would be sent; against a zero budget it is refused
    result = invoke(["submit", "-t", team, "-e", "text2video", str(job)], env)
    assert result.exit_code in (2, 3), result.output
    assert "Error:" in result.output and "Error: unexpected " not in result.output
    after = snapshot(ledger_path)
    # A budget's refusal (exit 3) is recorded, as one event of kind "refused"; nothing else.
    added = [row for row in after["events"] if row not in before["events"]]
    assert [row[2] for row in added] == (["refused"] if result.exit_code == 3 else [])
    assert {**after, "events": before["events"]} == before


# --- price sheets -------------------------------------------------------------------------


def _bundled() -> dict[str, Any]:
    from importlib import resources

    text = resources.files("klingcost").joinpath("data/pricing.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


BUNDLED = _bundled()


def _paths(node: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, str(key))
            yield from _paths(value, (*prefix, str(key)))


PATHS = sorted(set(_paths(BUNDLED)))
AMOUNT_KEYS = {"units", "factor", "amount"}
bad_amounts: st.SearchStrategy[Any] = st.sampled_from(
    [0, -1, "-3.5", "0", "0/1", "1/0", 3.5, 1e100, True, None, [], {}]
) | st.sampled_from(["nan", "inf", "-inf", "abc", "", "1e", "--1"])


def _put(data: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(data))
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"sheet-{next(_names)}.yaml"  # load_sheet caches by path: a new name
    path.write_text(text, encoding="utf-8")
    return path


def _amount_paths() -> list[tuple[str, ...]]:
    return [p for p in PATHS if p[-1] in AMOUNT_KEYS]


@FUZZ
@given(path=st.sampled_from(_amount_paths()), value=bad_amounts, replace=st.booleans())
def test_a_bad_amount_anywhere_in_a_sheet_is_named(
    tmp_path: Path, path: tuple[str, ...], value: Any, replace: bool
) -> None:
    data = _put(BUNDLED, path, value)
    if replace:
        data["replace"] = True
    file = _write(tmp_path, yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(errors.PricingSheetError) as caught:
        load_sheet(file)
    assert caught.value.source == str(file)
    assert str(file) in str(caught.value)
    assert ".".join(path) in str(caught.value), str(caught.value)


@FUZZ
@given(
    path=st.sampled_from(PATHS),
    value=st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=6)
    | st.lists(st.integers(), max_size=2),
    unknown=st.sampled_from(["", "colour", "units_per_second", "Units"]),
)
def test_any_mutation_of_a_sheet_loads_or_is_refused_with_its_file_named(
    tmp_path: Path, path: tuple[str, ...], value: Any, unknown: str
) -> None:
    data = _put(BUNDLED, path, value)
    if unknown:
        parent = _get(data, path[:-1])
        if isinstance(parent, dict):
            parent[unknown] = 1
    file = _write(tmp_path, yaml.safe_dump({**data, "replace": True}, allow_unicode=True))
    try:
        load_sheet(file)  # a harmless change (a note, a new source) may load
    except errors.PricingSheetError as exc:
        assert exc.source == str(file) and exc.problems


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


@FUZZ
@given(text=st.text(max_size=120))
@example(text="video: {base: {units: 3.5, source: seed}}")
@example(text="video:\n\tbase: 1\n")
@example(text="{")
@example(text="- 1\n- 2\n")
@example(text="replace: yes-please\n")
@example(text="!!python/object:os.system 'true'\n")
def test_broken_yaml_is_a_sheet_error_naming_the_file(tmp_path: Path, text: str) -> None:
    file = _write(tmp_path, text)
    try:
        load_sheet(file)
    except errors.PricingSheetError as exc:
        assert exc.source == str(file) and str(file) in str(exc)


SHEETS = {
    "float": "video:\n  base: {units: 1.5, source: seed}\n",
    "zero": "video:\n  base: {units: 0, source: seed}\n",
    "negative": "images:\n  kling-v1: {text: {units: -1, source: seed}}\n",
    "unknown key": "video:\n  base: {units: 1, source: seed, colour: red}\n",
    "wrong type": "video:\n  durations: [5, 10]\n",
    "broken yaml": "video: {base: [\n",
    "not a mapping": "- 1\n",
    "unknown source": "video:\n  base: {units: 1, source: a-friend}\n",
}


@pytest.mark.parametrize("name", list(SHEETS))
def test_a_bad_sheet_stops_estimate_and_submit_before_the_ledger(
    env: dict[str, str], ledger_path: Path, tmp_path: Path, name: str
) -> None:
    sheet = _write(tmp_path, SHEETS[name])
    job = tmp_path / "job.json"
    job.write_text(json.dumps(BODY), encoding="utf-8")
    before = snapshot(ledger_path)
    for args in (
        ["estimate", "--pricing", str(sheet), "-e", ENDPOINT, str(job)],
        ["submit", "--pricing", str(sheet), "-t", "studio", "-e", ENDPOINT, str(job)],
        ["prices", "--pricing", str(sheet)],
    ):
        result = invoke(args, env)
        assert result.exit_code == 2, (args, result.output)
        assert f"Error: price sheet {sheet} is invalid" in result.output
    assert snapshot(ledger_path) == before


# --- command-line arguments ---------------------------------------------------------------

WORDS = [
    "estimate", "prices", "submit", "sync", "budget", "set", "show", "list", "holds", "void",
    "ledger", "check", "hooks", "--json", "--team", "-t", "--endpoint", "-e", "--limit",
    "--period", "--parent", "--unit", "--pack", "--soft", "--tz", "--state", "--reason",
    "--key", "--wait", "--interval", "--timeout", "--concurrency", "--provider", "--pricing",
    "--ledger", "--external-ids", "--help", "--version", "studio", "company", "nobody",
    "text2video", "images/generations", "month", "day", "week", "none", "units", "usd",
    "credits", "video", "image", "unknown", "open", "1", "0", "-1", "0.5", "1e9", "NaN", "12.5",
    "999999999999999999999999", "Europe/Paris", "Mars/Olympus", "-", "job.json", "nowhere.json",
    "1/3", "0.0001", "--",
]  # fmt: skip
FORBIDDEN = {"serve", "fake-server", "demo"}  # these run servers or a whole demo
tokens = st.sampled_from(WORDS) | st.text(
    st.characters(codec="utf-8", exclude_characters="/~\x00"), max_size=10
)


@settings(FUZZ, max_examples=250)
@given(argv=st.lists(tokens, max_size=7))
@example(argv=["budget", "set", "studio", "--limit", "NaN"])
@example(argv=["budget", "set", "x", "--limit", "1", "--parent", "x"])
@example(argv=["budget", "set", "studio", "--limit", "1e9", "--tz", "Mars/Olympus"])
@example(argv=["budget", "set", "studio", "--limit", "-1"])
@example(argv=["budget", "set", "studio", "--limit", "1", "--soft", "NaN"])
@example(argv=["sync", "--concurrency", "0"])
@example(argv=["submit", "-t", "studio", "-e", "text2video", "--key", "", "job.json"])
@example(argv=["estimate", "-e", "images/generations", "nowhere.json"])
def test_random_arguments_never_crash_the_cli(
    fake: FakeKling, tmp_path: Path, argv: list[str]
) -> None:
    if FORBIDDEN & set(argv):
        return
    result = _run_argv(fake, tmp_path, argv)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        argv,
        result.exception,
    )
    assert result.exit_code in EXIT_CODES, (argv, result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert "Error: unexpected " not in result.output, (argv, result.output)


@pytest.mark.parametrize(
    "argv",
    [
        ["holds", "void", "999999999999999999999999", "--reason", "x"],
        ["budget", "set", "studio", "--limit", "1e30"],
    ],
)
def test_integers_past_64_bits_are_invalid_input(
    fake: FakeKling, tmp_path: Path, argv: list[str]
) -> None:
    # Once found by the fuzzer: such a number reached SQLite and came back "unexpected".
    result = _run_argv(fake, tmp_path, argv)
    assert result.exit_code == 2 and "Error: unexpected" not in result.output, result.output
    assert "2**63" in result.output or "9223372036854775807" in result.output, result.output


def _run_argv(fake: FakeKling, tmp_path: Path, argv: list[str]) -> Result:
    home = tmp_path / "cli"
    home.mkdir(exist_ok=True)
    env = {
        "KLINGCOST_API_KEY": KEY,
        "KLINGCOST_BASE_URL": fake.base_url,
        "KLINGCOST_LEDGER": str(home / "ledger.db"),
        "KLINGCOST_HOME": str(home),
        "KLINGCOST_PRICING": "",
        "KLINGCOST_HOOK_URL": "",
        "KLINGCOST_DEBUG": "",
    }
    cwd = tmp_path / f"cwd-{next(_names)}"  # a relative --ledger or file lands here
    cwd.mkdir()
    (cwd / "job.json").write_text(json.dumps(BODY), encoding="utf-8")
    with Ledger.open(env["KLINGCOST_LEDGER"]) as ledger:
        ledger.set_budget("company", limit=10**9, period="month")
        ledger.set_budget("studio", limit=10**8, period="month", parent="company")
    with contextlib.chdir(cwd):
        return CliRunner().invoke(main, argv, env=env, input=json.dumps(BODY))


# --- API answers --------------------------------------------------------------------------

huge = st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, 1e308])
weird = scalars | huge | st.sampled_from(["Infinity", "NaN", "1e100", "-5", "1e400", "", "٣"])
task_data = st.fixed_dictionaries(
    {},
    optional={
        "task_id": st.text(max_size=6) | st.integers() | weird,
        "task_status": st.sampled_from(["submitted", "processing", "succeed", "failed"]) | weird,
        "task_status_msg": weird,
        "created_at": weird,
        "updated_at": weird,
        "final_unit_deduction": weird | st.sampled_from(["7", "7.000", "0", "-7", "1e100"]),
        "final_balance_deduction": json_like,
        "task_info": json_like | st.fixed_dictionaries({"external_task_id": weird}),
        "task_result": json_like
        | st.fixed_dictionaries(
            {},
            optional={
                "videos": st.lists(
                    st.dictionaries(st.sampled_from(["id", "url", "duration"]), weird, max_size=3)
                    | weird,
                    max_size=2,
                ),
                "images": st.lists(
                    st.dictionaries(st.sampled_from(["index", "url"]), weird, max_size=2) | weird,
                    max_size=2,
                ),
            },
        ),
    },
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "code": st.sampled_from([0, 0, 0, "0", 1302, 1303, 1203, 5000, 1101]) | weird,
        "message": weird,
        "request_id": weird,
        "data": task_data | json_like,
        "error": st.fixed_dictionaries({"code": weird, "message": weird}) | json_like,
    },
)


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True, default=str).encode()


answers = st.tuples(
    st.sampled_from([200, 200, 200, 201, 204, 302, 400, 401, 403, 404, 429, 500, 502, 503, 504])
    | st.integers(100, 599),
    envelopes.map(_dump)
    | json_like.map(_dump)
    | st.binary(max_size=64)
    | envelopes.map(lambda e: _dump(e)[: max(1, len(_dump(e)) // 2)]),
)


def _transport(answer: tuple[int, bytes]) -> httpx.MockTransport:
    status, content = answer
    return httpx.MockTransport(lambda request: httpx.Response(status, content=content))


@settings(FUZZ, max_examples=300)
@given(answer=answers)
@example(
    answer=(
        200,
        b'{"code": 0, "data": {"task_id": "1", "task_status": "succeed", '
        b'"final_unit_deduction": "1e400"}}',
    )
)
@example(answer=(200, b'{"code": "\xd9\xa3", "data": {}}'))  # an Arabic-Indic 3: a digit
@example(
    answer=(
        200,
        b'{"code": 0, "data": {"task_id": "1", "task_status": "succeed", '
        b'"task_result": {"images": [{"index": NaN, "url": "u"}]}}}',
    )
)
def test_fuzzed_api_answers_are_tasks_or_api_errors(answer: tuple[int, bytes]) -> None:
    _client_calls(answer)


#: Answers that break the rule today (the client raises OverflowError / ValueError instead of
#: MalformedResponseError), found by reading api/envelope.py for what the fuzzer should try.
#: strict: once api/envelope.py is fixed these pass, and the marker must go.
KNOWN_BAD_ANSWERS = {
    "an image index of Infinity": (
        200,
        b'{"code": 0, "data": {"task_id": "1", "task_status": "succeed", '
        b'"task_result": {"images": [{"index": Infinity, "url": "u"}]}}}',
    ),
    "a code of superscript two": (200, '{"code": "²", "data": {}}'.encode()),
}


@pytest.mark.parametrize("name", list(KNOWN_BAD_ANSWERS))
def test_known_bad_answers_are_api_errors(name: str) -> None:
    # Once found by the fuzzer: int() of an Infinity index, and a "²" code that isdigit().
    with (
        KlingClient(KEY, transport=_transport(KNOWN_BAD_ANSWERS[name]), max_retries=0) as client,
        pytest.raises(errors.KlingAPIError),
    ):
        client.get_task(ENDPOINT, "847")
    _client_calls(KNOWN_BAD_ANSWERS[name])


def _client_calls(answer: tuple[int, bytes]) -> None:
    with KlingClient(KEY, transport=_transport(answer), max_retries=0) as client:
        for call in (
            lambda: client.submit(ENDPOINT, BODY),
            lambda: client.get_task(ENDPOINT, "847"),
            lambda: client.list_tasks(ENDPOINT),
        ):
            try:
                call()
            except errors.KlingAPIError as exc:
                assert str(exc) and KEY not in str(exc)


@settings(FUZZ, max_examples=150)
@given(answer=answers)
def test_fuzzed_create_answers_leave_the_hold_attached_voided_or_unknown(
    ledger_path: Path, answer: tuple[int, bytes]
) -> None:
    with (
        Ledger.open(ledger_path) as ledger,
        KlingClient(KEY, transport=_transport(answer), max_retries=0) as client,
        GuardedClient("studio", ledger=ledger, client=client) as guard,
    ):
        count = sum(1 for _ in ledger.holds())
        try:
            submission = guard.submit(ENDPOINT, BODY)
        except errors.KlingAPIError as exc:
            [hold] = list(ledger.holds())[count:]
            expected = "voided" if isinstance(exc, DEFINITE_FAILURES) else "unknown"
            assert hold.state == expected, (exc, hold.state)
        else:
            assert submission.hold.state == "submitted" and submission.task_id
            assert len(list(ledger.holds())) == count + 1
        assert ledger.check() == []


@settings(FUZZ, max_examples=150)
@given(answer=answers)
@example(
    answer=(
        200,
        b'{"code": 0, "data": {"task_id": "x", "task_status": "succeed", '
        b'"final_unit_deduction": "1e100"}}',
    )
)
@example(
    answer=(
        200,
        b'{"code": 0, "data": {"task_id": "x", "task_status": "succeed", '
        b'"final_unit_deduction": 99999999999999999999999}}',
    )
)
def test_fuzzed_query_answers_settle_sanely_or_change_nothing(
    ledger_path: Path, answer: tuple[int, bytes]
) -> None:
    with Ledger.open(ledger_path) as ledger:
        hold = ledger.reserve(
            "studio", HoldAmounts(7000, "video", COST, "credits"), meta={"endpoint": ENDPOINT}
        )
        hold = ledger.attach(hold.id, f"task-{hold.id}")
        before = snapshot(ledger_path)
        with (
            KlingClient(KEY, transport=_transport(answer), max_retries=0) as client,
            GuardedClient("studio", ledger=ledger, client=client) as guard,
        ):
            try:
                resolution = guard.settle(hold)
            except errors.KlingAPIError:
                assert snapshot(ledger_path) == before, "a bad answer changed the ledger"
            else:
                after = resolution.hold
                if resolution.action in ("pending", "unchanged"):
                    assert snapshot(ledger_path) == before
                elif after.state == "settled":
                    # Never more than the cap allows, and an untrusted figure never used.
                    assert after.units_milli is not None
                    if after.deduction_flag != "ok":
                        assert after.units_milli == hold.estimate.units_milli
                    assert after.units_milli <= 10**9
        assert ledger.check() == []


# --- ledger files -------------------------------------------------------------------------

SQLITE_HEADER = b"SQLite format 3\x00"


def _refused_untouched(path: Path, env: dict[str, str], fake: FakeKling | None = None) -> None:
    """Every way in refuses the file with a LedgerError, and leaves its bytes as they were."""
    before = path.read_bytes()
    with pytest.raises(errors.LedgerError):
        Ledger.open(path).close()
    with pytest.raises(errors.LedgerError):
        GuardedClient("studio", ledger=str(path), api_key=KEY).close()
    job = path.with_name("job.json")
    job.write_text(json.dumps(BODY), encoding="utf-8")
    cli_env = {**env, "KLINGCOST_LEDGER": str(path)}
    if fake is not None:
        cli_env["KLINGCOST_BASE_URL"] = fake.base_url
    for args in (
        ["ledger", "check"],
        ["budget", "show"],
        ["holds"],
        ["budget", "set", "studio", "--limit", "5"],
        ["submit", "-t", "studio", "-e", ENDPOINT, str(job)],
        ["sync"],
    ):
        result = invoke(args, cli_env)
        assert result.exit_code == 1, (args, result.output)
        assert "Error:" in result.output and "Error: unexpected " not in result.output, (
            result.output
        )
    assert path.read_bytes() == before
    if fake is not None:
        assert fake.requests("POST") == []


@settings(FUZZ, max_examples=80)
@given(
    content=st.binary(min_size=1, max_size=600)
    | st.binary(max_size=600).map(lambda b: SQLITE_HEADER + b)
)
def test_random_bytes_are_not_a_ledger(tmp_path: Path, env: dict[str, str], content: bytes) -> None:
    path = tmp_path / f"random-{next(_names)}.db"
    path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(errors.LedgerError):
        Ledger.open(path).close()
    assert path.read_bytes() == before


def _foreign(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO photos (name) VALUES ('cat.jpg')")
        conn.commit()


def _newer(path: Path) -> None:
    with Ledger.open(path) as ledger:
        ledger.set_budget("studio", limit=10, period="month")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("INSERT INTO _klingcost_migrations VALUES ('0099_from_the_future', 'x')")
        conn.execute("PRAGMA user_version = 99")
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _other_app(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA application_id = 1234")
        conn.execute("CREATE TABLE t (x)")
        conn.commit()


def _truncated(path: Path) -> None:
    with Ledger.open(path) as ledger:
        ledger.set_budget("studio", limit=10**9, period="month")
        for n in range(50):
            ledger.reserve("studio", HoldAmounts(7000, "video", COST, "credits"), key=f"k{n}")
        ledger.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _garbled_header(path: Path) -> None:
    path.write_bytes(SQLITE_HEADER + b"\xff" * 84 + b"garbage" * 500)


def _text(path: Path) -> None:
    path.write_text("budget,limit\nstudio,500000\n", encoding="utf-8")


BAD_FILES: dict[str, Callable[[Path], None]] = {
    "a foreign SQLite database": _foreign,
    "a newer schema version": _newer,
    "another application's database": _other_app,
    "a truncated ledger": _truncated,
    "a SQLite header over garbage": _garbled_header,
    "a CSV file": _text,
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_bad_ledger_file_is_refused_everywhere_and_left_untouched(
    tmp_path: Path, env: dict[str, str], fake: FakeKling, name: str
) -> None:
    path = tmp_path / "bad.db"
    BAD_FILES[name](path)
    _refused_untouched(path, env, fake)


def _busy_ledger(path: Path) -> None:
    with Ledger.open(path) as ledger:
        ledger.set_budget("company", limit=10**9, period="month")
        ledger.set_budget("studio", limit=10**8, period="month", parent="company")
        for n in range(40):
            hold = ledger.reserve(
                "studio", HoldAmounts(7000, "video", COST, "credits"), key=f"k{n}"
            )
            if n % 2:
                ledger.attach(hold.id, f"t{n}")
        ledger.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


@settings(FUZZ, max_examples=60)
@given(position=st.integers(0, 999_999), garbage=st.binary(min_size=1, max_size=64))
def test_a_damaged_ledger_never_crashes_the_cli_or_gets_written(
    tmp_path: Path, env: dict[str, str], position: int, garbage: bytes
) -> None:
    path = tmp_path / f"damaged-{next(_names)}.db"
    _busy_ledger(path)
    data = bytearray(path.read_bytes())
    offset = 100 + position * (len(data) - 100) // 1_000_000
    data[offset : offset + len(garbage)] = garbage
    path.write_bytes(bytes(data))
    for args in (["ledger", "check"], ["holds"], ["budget", "show"]):
        result = invoke(args, {**env, "KLINGCOST_LEDGER": str(path)})
        assert result.exit_code in (0, 1), result.output
    assert path.read_bytes() == bytes(data), "reading a damaged ledger wrote to it"


def test_a_damaged_holds_table_is_a_ledger_error(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    _busy_ledger(path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        [root] = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'holds'").fetchone()
    data = bytearray(path.read_bytes())
    start = (root - 1) * page_size
    data[start : start + 64] = b"\xff" * 64  # the b-tree page header of the holds table
    path.write_bytes(bytes(data))
    with pytest.raises(errors.LedgerError, match=r"damaged|malformed"), Ledger.open(path) as ledger:
        list(ledger.holds())
