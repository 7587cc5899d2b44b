"""A PostgreSQL password never reaches output (issue 13, item 11).

The review found a password given as ``?password=`` printed by ``ledger check``, the
``Ledger`` repr and ``.path``, and connection errors, and a badly percent-encoded one quoted in
libpq's error. Every form is tried here: in the userinfo, in the query (``password=``,
``sslpassword=``), badly encoded, and with the characters that break a URL left unencoded. The
ledgers are real, on the test server (which trusts the test role, so a password is accepted and
ignored: the URL still carries it everywhere the ledger goes).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from conftest import fresh_postgres_url
from klingcost.cli import main
from klingcost.errors import LedgerError
from klingcost.ledger import Ledger
from klingcost.ledger.pgurl import passwords, redact, scrub_error

SECRET = "Hunter2Secret"


def _pieces(secret: str) -> list[str]:
    """The secret, and every piece of three characters or more a parser might cut it into."""
    return [p for p in [secret, *re.split(r"[@/?#&:=%]", secret)] if len(p) >= 3]


def _assert_hidden(text: str, secret: str = SECRET) -> None:
    for piece in _pieces(secret):
        assert piece not in text, f"{piece!r} of the password is in: {text}"


def _with_userinfo(url: str, password: str) -> str:
    parts = urlsplit(url)
    user, host = parts.netloc.rsplit("@", 1) if "@" in parts.netloc else ("", parts.netloc)
    return url.replace(parts.netloc, f"{user}:{password}@{host}", 1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        (f"postgresql://u:{SECRET}@db.example:5432/ledger", SECRET),
        (f"postgresql://u@db.example/ledger?password={SECRET}", SECRET),
        (f"postgres://db.example/ledger?sslmode=require&password={SECRET}&x=1", SECRET),
        (f"postgresql://u@db.example/ledger?sslpassword={SECRET}", SECRET),
        ("postgresql://u:Hun%zzter2Secret@db.example/ledger", "Hun%zzter2Secret"),
        ("postgresql://u@db.example/ledger?password=Hun%zzter2Secret", "Hun%zzter2Secret"),
        ("postgresql://u:Hunt@er2/Sec?ret#x@db.example/ledger", "Hunt@er2/Sec?ret#x"),
        ("postgresql://u:Hunter2Secret@db.example:notaport/ledger", SECRET),
    ],
)
def test_redact_hides_every_form(url: str, secret: str) -> None:
    shown = redact(url)
    _assert_hidden(shown, secret)
    assert "***" in shown and shown.startswith(url.split("://")[0] + "://")
    assert secret in passwords(url)


def test_redact_leaves_a_url_without_password_alone() -> None:
    for url in (
        "postgresql://u@db.example:5432/ledger?options=-csearch_path%3Dk",
        "postgresql://db.example/ledger",
        "postgresql://[::1]:5432/ledger",
    ):
        assert redact(url) == url and passwords(url) == []


@pytest.fixture
def schema_url() -> Iterator[str]:
    with fresh_postgres_url() as url:
        yield url


@pytest.mark.parametrize("form", ["userinfo", "query", "both"])
def test_a_real_ledger_never_shows_its_password(schema_url: str, form: str) -> None:
    url = schema_url
    if form in ("userinfo", "both"):
        url = _with_userinfo(url, SECRET)
    if form in ("query", "both"):
        url = f"{url}&password={SECRET}"
    with Ledger.open(url) as ledger:
        ledger.set_budget("team", limit=100)
        for text in (repr(ledger), str(ledger), str(ledger.path), repr(ledger.backend.location)):
            _assert_hidden(text)
        assert "***" in str(ledger.path)
    runner = CliRunner()
    for args in (
        ["ledger", "check"],
        ["ledger", "check", "--json"],
        ["budget", "list"],
        ["holds", "--json"],
        ["budget", "set", "team", "--limit", "200"],
    ):
        result = runner.invoke(main, [*args, "--ledger", url])
        assert result.exit_code == 0, result.output
        _assert_hidden(result.output)
    data = json.loads(runner.invoke(main, ["ledger", "check", "--json", "--ledger", url]).output)
    assert "***" in data["ledger"]


@pytest.mark.parametrize(
    "password",
    [SECRET, "Hun%zzter2Secret", "Hunt@er2Secret", "Hun/ter2Secret", "Hunter2&Secret"],
)
@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_connection_errors_never_show_the_password(password: str, form: str) -> None:
    """A server that is not there, and URLs libpq cannot parse: the error says why, without
    the password or a piece of it, and does not chain the driver's error (which quotes it)."""
    base = f"postgresql://klingcost@127.0.0.1:{_free_port()}/postgres"
    url = _with_userinfo(base, password) if form == "userinfo" else f"{base}?password={password}"
    with pytest.raises(LedgerError) as caught:
        Ledger.open(url, timeout=2)
    error = caught.value
    _assert_hidden(str(error), password)
    assert error.__cause__ is None and error.__context__ is None
    assert "cannot open the ledger postgresql://" in str(error)
    result = CliRunner().invoke(main, ["budget", "list", "--ledger", url])
    assert result.exit_code == 1
    _assert_hidden(result.output, password)


def test_a_percent_encoding_error_keeps_its_reason_and_hides_the_token() -> None:
    url = "postgresql://klingcost@127.0.0.1:1/postgres?password=Hun%zzter2Secret"
    with pytest.raises(LedgerError) as caught:
        Ledger.open(url, timeout=2)
    assert 'invalid percent-encoded token: "***"' in str(caught.value)

    class Quoting(Exception):
        pass

    message = scrub_error(
        Quoting('failed to resolve host "er2Secret@h"'), "postgresql://u:Hunt@er2Secret@h/d"
    )
    _assert_hidden(message, "Hunt@er2Secret")
