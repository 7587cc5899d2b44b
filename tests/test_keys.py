"""Proxy keys (:mod:`klingcost.keys`): what the ledger keeps, the server secret, and every way
``authenticate`` accepts or refuses a bearer key or a JWT, on real ledgers of both backends."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from klingcost import _jwt, keys
from klingcost.errors import BudgetNotFound, KeyNotFound, KeyRefused, ProxySecretError
from klingcost.keys import KeyCache, NewKey, authenticate, create_key
from klingcost.ledger import Ledger

SECRET = b"s" * 48


@pytest.fixture
def ledger(make_ledger: Callable[..., Ledger]) -> Ledger:
    made = make_ledger()
    made.set_budget("acme", limit=1_000_000)
    return made


def _jwt_for(made: NewKey, **claims: Any) -> str:
    at = int(time.time())
    payload = {"iss": made.api_key.access_key, "exp": at + 1800, "nbf": at - 5, **claims}
    return _jwt.encode(
        {k: v for k, v in payload.items() if v is not None}, made.secret_key.encode()
    )


def _refused(ledger: Ledger, header: str | None, **options: Any) -> KeyRefused:
    with pytest.raises(KeyRefused) as caught:
        authenticate(ledger, header, secret=SECRET, now=datetime.now(UTC), **options)
    assert caught.value.status == 401
    return caught.value


def _b64(data: dict[str, Any]) -> str:
    text = json.dumps(data).encode()
    return base64.urlsafe_b64encode(text).rstrip(b"=").decode()


# --- what the ledger keeps ------------------------------------------------------------------


def test_the_ledger_file_holds_the_bearer_key_only_as_its_hash_and_no_secret_key(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.set_budget("acme", limit=1000)
        made = create_key(ledger, "acme", secret=SECRET, name="ci")
    stored = b"".join(f.read_bytes() for f in tmp_path.iterdir())  # the file and its WAL
    assert keys.hash_key(made.key).encode() in stored  # the row was written ...
    assert made.api_key.access_key.encode() in stored
    assert made.key.encode() not in stored  # ... with nothing to authenticate with
    assert made.key.removeprefix(keys.BEARER_PREFIX).encode() not in stored
    assert made.secret_key.encode() not in stored
    assert SECRET not in stored


def test_reprs_and_listings_show_no_secret(ledger: Ledger) -> None:
    made = create_key(ledger, "acme", secret=SECRET)
    for text in (repr(made), str(made), repr(made.api_key), repr(ledger.api_keys())):
        assert made.key not in text and made.secret_key not in text
        assert made.api_key.key_hash not in text
    assert set(made.as_dict()) == {"id", "team", "key", "access_key", "secret_key"}
    assert "key_hash" not in made.api_key.as_dict()


def test_a_key_needs_a_team_with_a_budget(ledger: Ledger) -> None:
    with pytest.raises(BudgetNotFound):
        create_key(ledger, "nosuch", secret=SECRET)
    assert ledger.api_keys() == []


def test_secret_keys_derive_from_the_server_secret(ledger: Ledger) -> None:
    made = create_key(ledger, "acme", secret=SECRET)
    assert made.secret_key == keys.secret_key_for(SECRET, made.api_key.access_key)
    assert made.secret_key != keys.secret_key_for(b"t" * 48, made.api_key.access_key)


# --- bearer keys and JWTs -------------------------------------------------------------------


def test_a_bearer_key_and_a_jwt_name_their_key(ledger: Ledger) -> None:
    made = create_key(ledger, "acme", secret=SECRET)
    now = datetime.now(UTC)
    by_bearer = authenticate(ledger, f"Bearer {made.key}", secret=SECRET, now=now)
    token = _jwt_for(made)
    by_jwt = authenticate(ledger, f"Bearer {token}", secret=SECRET, now=now)
    assert by_bearer.id == by_jwt.id == made.id and by_jwt.team == "acme"
    # Kling clients reuse a token until it expires: the same token is accepted again.
    assert authenticate(ledger, f"bearer  {token} ", secret=SECRET, now=now).id == made.id


@pytest.mark.parametrize(
    ("header", "code"),
    [(None, 1001), ("", 1001), ("Bearer ", 1001), ("Basic abc", 1002), ("Bearer kck_nope", 1002)],
)
def test_missing_or_unknown_keys_are_refused(ledger: Ledger, header: str | None, code: int) -> None:
    create_key(ledger, "acme", secret=SECRET)
    assert _refused(ledger, header).code == code


def test_jwt_refusals_carry_klings_codes(ledger: Ledger) -> None:
    made = create_key(ledger, "acme", secret=SECRET)
    at = int(time.time())
    assert _refused(ledger, f"Bearer {_jwt_for(made, exp=at - 60)}").code == 1004
    assert _refused(ledger, f"Bearer {_jwt_for(made, nbf=at + 600)}").code == 1003
    assert _refused(ledger, f"Bearer {_jwt_for(made, exp=None)}").code == 1002
    too_long = _jwt_for(made, nbf=at - 5, exp=at + 2 * 86400)
    assert "longer than" in str(_refused(ledger, f"Bearer {too_long}"))
    # Within the leeway both ways: a client clock a few seconds off is accepted.
    authenticate(
        ledger, f"Bearer {_jwt_for(made, nbf=at + 5)}", secret=SECRET, now=datetime.now(UTC)
    )


def test_forged_jwts_are_refused(ledger: Ledger) -> None:
    made = create_key(ledger, "acme", secret=SECRET)
    good = _jwt_for(made)
    header, payload, _ = good.split(".")
    wrong_key = _jwt.encode(
        {"iss": made.api_key.access_key, "exp": int(time.time()) + 60}, b"not the secret"
    )
    alg_none = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."
    alg_none_signed = f"{_b64({'alg': 'none'})}.{payload}.{good.split('.')[2]}"
    unsigned = f"{header}.{payload}."
    other_payload = _b64({"iss": made.api_key.access_key, "exp": int(time.time()) + 86000})
    swapped = f"{header}.{other_payload}.{good.split('.')[2]}"
    unknown_iss = _jwt.encode({"iss": "kca_nobody", "exp": int(time.time()) + 60}, b"x")
    for token in (wrong_key, alg_none, alg_none_signed, unsigned, swapped, unknown_iss, "a.b.c"):
        refused = _refused(ledger, f"Bearer {token}")
        assert refused.code == 1002
        assert token not in str(refused)


def test_a_revoked_or_expired_key_is_refused_in_both_forms(ledger: Ledger) -> None:
    revoked = create_key(ledger, "acme", secret=SECRET)
    token = _jwt_for(revoked)
    ledger.revoke_key(revoked.id)
    assert _refused(ledger, f"Bearer {revoked.key}").code == 1000
    assert _refused(ledger, f"Bearer {token}").code == 1000
    assert ledger.revoke_key(revoked.id).revoked_at == ledger.get_key(revoked.id).revoked_at
    expiring = create_key(ledger, "acme", secret=SECRET, expires_in=timedelta(seconds=30))
    later = datetime.now(UTC) + timedelta(seconds=31)
    with pytest.raises(KeyRefused) as caught:
        authenticate(ledger, f"Bearer {expiring.key}", secret=SECRET, now=later)
    assert caught.value.code == 1004
    with pytest.raises(KeyNotFound):
        ledger.revoke_key("kc_nope")


def test_a_cached_key_is_refused_once_the_cache_bound_passes(ledger: Ledger) -> None:
    made = create_key(ledger, "acme", secret=SECRET)
    cache = KeyCache(ttl=0.3)
    now = datetime.now(UTC)
    token = f"Bearer {_jwt_for(made, exp=int(now.timestamp()) + 60)}"
    for header in (f"Bearer {made.key}", token, token):  # the token twice: checked, then known
        assert authenticate(ledger, header, secret=SECRET, now=now, cache=cache).id == made.id
    ledger.revoke_key(made.id)
    # Within the bound the cached row may still answer (this is the documented promise) ...
    authenticate(ledger, f"Bearer {made.key}", secret=SECRET, now=now, cache=cache)
    time.sleep(0.35)
    # ... and past it the revocation holds, for the bearer key and the known token alike.
    assert _refused(ledger, f"Bearer {made.key}", cache=cache).code == 1000
    assert _refused(ledger, token, cache=cache).code == 1000


def test_a_known_token_is_still_refused_once_it_expires(ledger: Ledger) -> None:
    made = create_key(ledger, "acme", secret=SECRET)
    cache = KeyCache()
    now = datetime.now(UTC)
    token = f"Bearer {_jwt_for(made, exp=int(now.timestamp()) + 60)}"
    authenticate(ledger, token, secret=SECRET, now=now, cache=cache)
    later = now + timedelta(seconds=75)
    with pytest.raises(KeyRefused) as caught:
        authenticate(ledger, token, secret=SECRET, now=later, cache=cache)
    assert caught.value.code == 1004
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert _refused(ledger, forged, cache=cache).code == 1002  # a known token's cousin is not


def test_every_secret_comparison_is_constant_time(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmac

    made = create_key(ledger, "acme", secret=SECRET)
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    now = datetime.now(UTC)
    authenticate(ledger, f"Bearer {made.key}", secret=SECRET, now=now)
    assert calls == [(made.api_key.key_hash, keys.hash_key(made.key))]
    calls.clear()
    authenticate(ledger, f"Bearer {_jwt_for(made)}", secret=SECRET, now=now)
    assert len(calls) == 1 and all(isinstance(side, bytes) for side in calls[0])


def test_absurd_tokens_are_refused_not_crashed(ledger: Ledger) -> None:
    made = create_key(ledger, "acme", secret=SECRET)
    header = _b64({"alg": "HS256"})
    nested = base64.urlsafe_b64encode(b"[" * 2000).rstrip(b"=").decode()
    for token in (
        f"{header}.{nested}.x",
        f"{header}.{_b64({'iss': made.api_key.access_key, 'exp': 10**400})}.x",
        "x" * 5000 + ".a.b",
        f"{header}.@@@.x",
    ):
        assert _refused(ledger, f"Bearer {token}").code == 1002


# --- the server secret ----------------------------------------------------------------------


def test_the_secret_file_is_made_private_once_and_reused(tmp_path: Path) -> None:
    env = {"KLINGCOST_HOME": str(tmp_path / "home")}
    first = keys.server_secret(env)
    path = tmp_path / "home" / keys.SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.server_secret(env) == first and len(first) >= 64
    assert [p.name for p in path.parent.iterdir()] == [keys.SECRET_FILE]  # no temporary left


def test_workers_starting_together_share_one_secret(tmp_path: Path) -> None:
    env = {"KLINGCOST_HOME": str(tmp_path / "home")}
    start = threading.Barrier(8)
    seen: list[bytes] = []

    def first_use() -> None:
        start.wait()
        seen.append(keys.server_secret(env))

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(seen) == 8 and len(set(seen)) == 1


def test_an_unusable_home_is_a_secret_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(ProxySecretError, match="cannot read the proxy's server secret"):
        keys.server_secret({"KLINGCOST_HOME": str(tmp_path / "file" / "home")})


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    env = {"KLINGCOST_HOME": str(tmp_path)}
    keys.server_secret(env)
    os.chmod(tmp_path / keys.SECRET_FILE, 0o644)
    with pytest.raises(ProxySecretError, match="chmod 600"):
        keys.server_secret(env)


def test_the_environment_secret_wins_and_must_be_long(tmp_path: Path) -> None:
    env = {"KLINGCOST_HOME": str(tmp_path), keys.SECRET_ENV: "k" * 40}
    assert keys.server_secret(env) == b"k" * 40
    assert not (tmp_path / keys.SECRET_FILE).exists()
    with pytest.raises(ProxySecretError, match="at least 32"):
        keys.server_secret({keys.SECRET_ENV: "short"})


def test_durations() -> None:
    assert keys.parse_duration("30d") == timedelta(days=30)
    assert keys.parse_duration("12h") == timedelta(hours=12)
    for bad in ("0d", "3x", "-1d", "1.5d", ""):
        with pytest.raises(ValueError, match="not a duration"):
            keys.parse_duration(bad)
