"""Keys of ``klingcost proxy``: one team each, made, listed, revoked, and checked per request.

A key is given to its owner once, in two forms, so that any Kling client can use it:

* a **bearer key** (``kck_...``, 256 random bits), sent as ``Authorization: Bearer KEY``;
* an **access key / secret key** pair, for clients that sign a JWT as Kling's own API asks
  (HS256, ``iss`` = access key, ``exp``/``nbf``), sent as ``Authorization: Bearer JWT``.

The ledger holds nothing a reader of its file could authenticate with:

* the bearer key only as its sha256. A fast hash is enough: the key is 256 random bits, so
  nobody can guess one from its hash, while a slow password hash (bcrypt, argon2) would only
  cost every request time. The hash does not depend on the server secret, so bearer keys
  survive a lost secret;
* no secret key at all: each is ``HMAC-SHA256(server secret, access key)``, derived again
  when a JWT is checked. The server secret lives outside the ledger (:func:`server_secret`):
  ``KLINGCOST_PROXY_SECRET`` (several hosts on one PostgreSQL ledger share it), else a 0600
  file ``$KLINGCOST_HOME/proxy-secret`` made on first need. Whoever reads the ledger and not
  the secret cannot sign a token.

Every comparison of a secret is :func:`hmac.compare_digest`. A refused request raises
:class:`~klingcost.errors.KeyRefused` with Kling's code (1000-1004) and HTTP 401; its message
never holds what was sent.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from klingcost import _jwt
from klingcost.errors import KeyRefused, ProxySecretError

if TYPE_CHECKING:
    from klingcost.ledger import Ledger

SECRET_ENV: Final = "KLINGCOST_PROXY_SECRET"
SECRET_FILE: Final = "proxy-secret"
#: A server secret shorter than this (in characters) is refused: 32 hex characters are 128 bits.
MIN_SECRET: Final = 32
BEARER_PREFIX: Final = "kck_"
ACCESS_PREFIX: Final = "kca_"
ID_PREFIX: Final = "kc_"
#: Clock skew allowed between a client and the proxy, on ``exp`` and ``nbf``.
LEEWAY: Final = timedelta(seconds=10)
#: The longest a JWT may live (``exp`` minus ``nbf``, or ``iat``, or now when it has neither).
#: Kling's own example signs for 30 minutes; SDKs reuse a token until it expires, which is
#: legitimate and accepted: a leaked token is a bearer credential for at most this long (revoke
#: the key to end every token signed with it at once).
MAX_LIFETIME: Final = timedelta(hours=24)
#: How long :class:`KeyCache` trusts a key row it read: a revocation (or expiry change) made by
#: any process takes effect on every worker within this bound.
CACHE_SECONDS: Final = 1.0

# Kling's codes for a refused key (HTTP 401).
FAILED: Final = 1000
EMPTY: Final = 1001
INVALID: Final = 1002
NOT_YET_VALID: Final = 1003
EXPIRED: Final = 1004


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as the ledger keeps it: no secret (``key_hash`` is the bearer key's sha256, kept
    out of the repr all the same)."""

    id: str
    team: str
    name: str | None
    access_key: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    max_concurrent: int | None = None
    key_hash: str = field(default="", repr=False)

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def as_dict(self) -> dict[str, Any]:
        """What ``klingcost keys list --json`` prints: never the hash."""
        return {
            "id": self.id,
            "team": self.team,
            "name": self.name,
            "access_key": self.access_key,
            "created_at": _iso(self.created_at),
            "expires_at": None if self.expires_at is None else _iso(self.expires_at),
            "revoked_at": None if self.revoked_at is None else _iso(self.revoked_at),
            "max_concurrent": self.max_concurrent,
        }


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: the only time its bearer key and secret key exist in full. Its repr
    hides both."""

    api_key: ApiKey
    key: str = field(repr=False)
    secret_key: str = field(repr=False)

    @property
    def id(self) -> str:
        return self.api_key.id

    def as_dict(self) -> dict[str, str]:
        """Exactly what ``klingcost keys create --json`` prints."""
        return {
            "id": self.api_key.id,
            "team": self.api_key.team,
            "key": self.key,
            "access_key": self.api_key.access_key,
            "secret_key": self.secret_key,
        }


# --- the server secret ----------------------------------------------------------------------


def server_secret(environ: Mapping[str, str] | None = None) -> bytes:
    """The secret that secret keys derive from: ``KLINGCOST_PROXY_SECRET``, else the file
    ``$KLINGCOST_HOME/proxy-secret`` (``~/.klingcost``), made with 256 random bits and mode
    0600 when missing. ProxySecretError for a file others may read or write, or a short one."""
    env = os.environ if environ is None else environ
    given = env.get(SECRET_ENV)
    if given is not None:
        if len(given.strip()) < MIN_SECRET:
            raise ProxySecretError(
                f"{SECRET_ENV} is {len(given.strip())} characters; it must have at least "
                f"{MIN_SECRET} (make one with: python -c 'import secrets; "
                "print(secrets.token_hex(32))')"
            )
        return given.strip().encode("utf-8")
    home = env.get("KLINGCOST_HOME")
    path = (Path(home).expanduser() if home else Path.home() / ".klingcost") / SECRET_FILE
    return _secret_file(path)


def _secret_file(path: Path) -> bytes:
    try:
        if not path.exists():
            _create_secret(path)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            status = os.fstat(handle.fileno())
            if status.st_mode & 0o077:
                raise ProxySecretError(
                    f"{path} may be read or written by others (mode "
                    f"{status.st_mode & 0o777:o}); refused: run `chmod 600 {path}`"
                )
            if hasattr(os, "getuid") and status.st_uid != os.getuid():
                raise ProxySecretError(f"{path} belongs to another user; refused")
            text = handle.read().decode("utf-8").strip()
    except OSError as exc:
        raise ProxySecretError(
            f"cannot read the proxy's server secret {path}: {exc.strerror or exc}; "
            f"check KLINGCOST_HOME, or set {SECRET_ENV}"
        ) from None
    except UnicodeDecodeError:
        raise ProxySecretError(f"{path} is not UTF-8 text; remove it to make a new one") from None
    if len(text) < MIN_SECRET:
        raise ProxySecretError(
            f"{path} holds {len(text)} characters; a server secret needs at least {MIN_SECRET}"
        )
    return text.encode("utf-8")


def _create_secret(path: Path) -> None:
    """Write a new secret atomically: a private temporary file, linked into place, so that a
    concurrent first use never reads a half-written file and the first to link wins."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)


# --- making keys ----------------------------------------------------------------------------


def hash_key(bearer: str) -> str:
    """The sha256 (hex) the ledger keeps of a bearer key."""
    return hashlib.sha256(bearer.encode("utf-8")).hexdigest()


def secret_key_for(secret: bytes, access_key: str) -> str:
    """The secret key of ``access_key``: HMAC-SHA256 under the server secret, base64url."""
    digest = hmac.new(secret, access_key.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


_DURATION = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` as a timedelta; ValueError otherwise."""
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(
            f"{text!r} is not a duration: give a positive whole number and one of s, m, h, d, w "
            "(for example 30d)"
        )
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def create_key(
    ledger: Ledger,
    team: str,
    *,
    secret: bytes,
    name: str | None = None,
    expires_in: timedelta | None = None,
    max_concurrent: int | None = None,
) -> NewKey:
    """Make a key for ``team`` (which must have a budget: BudgetNotFound otherwise)."""
    if max_concurrent is not None and (
        isinstance(max_concurrent, bool)
        or not isinstance(max_concurrent, int)
        or max_concurrent < 1
    ):
        raise ValueError(f"max_concurrent must be a whole number >= 1 (given {max_concurrent!r})")
    now = ledger.clock.now()
    bearer = BEARER_PREFIX + secrets.token_urlsafe(32)
    access_key = ACCESS_PREFIX + secrets.token_hex(16)
    row = ApiKey(
        id=ID_PREFIX + secrets.token_hex(8),
        team=team,
        name=name,
        access_key=access_key,
        created_at=now,
        expires_at=None if expires_in is None else now + expires_in,
        max_concurrent=max_concurrent,
        key_hash=hash_key(bearer),
    )
    return NewKey(ledger.add_key(row), bearer, secret_key_for(secret, access_key))


# --- checking a request ---------------------------------------------------------------------


class KeyCache:
    """Key rows read in the last :data:`CACHE_SECONDS`, so that a busy proxy reads each key's
    row about once a second rather than on every request. Unknown keys are never cached.

    The bound is the promise: a key revoked (by any process, on any host) is refused by every
    worker at most ``ttl`` seconds later."""

    def __init__(self, ttl: float = CACHE_SECONDS, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._rows: dict[str, tuple[float, ApiKey]] = {}
        #: Tokens whose signature was checked, with their claims: a client reuses one token
        #: until it expires, so each is parsed and checked once. Only the signature is
        #: remembered; the key's row (revocation), ``exp`` and ``nbf`` are checked every time.
        self._signed: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def signed(self, token: str) -> dict[str, Any] | None:
        return self._signed.get(token)

    def remember_signed(self, token: str, claims: dict[str, Any]) -> None:
        with self._lock:
            if len(self._signed) >= self.size:
                self._signed.clear()
            self._signed[token] = claims

    def get(self, lookup: str) -> ApiKey | None:
        found = self._rows.get(lookup)
        if found is None or time.monotonic() - found[0] > self.ttl:
            return None
        return found[1]

    def put(self, lookup: str, key: ApiKey) -> None:
        with self._lock:
            if len(self._rows) >= self.size:
                self._rows.clear()
            self._rows[lookup] = (time.monotonic(), key)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._signed.clear()


def _find(
    ledger: Ledger, cache: KeyCache | None, *, key_hash: str = "", access_key: str = ""
) -> ApiKey | None:
    lookup = f"h:{key_hash}" if key_hash else f"a:{access_key}"
    if cache is not None and (hit := cache.get(lookup)) is not None:
        return hit
    if key_hash:
        found = ledger.find_key(key_hash=key_hash)
    else:
        found = ledger.find_key(access_key=access_key)
    if found is not None and cache is not None:
        cache.put(lookup, found)
    return found


def authenticate(
    ledger: Ledger,
    authorization: str | None,
    *,
    secret: bytes,
    now: datetime,
    cache: KeyCache | None = None,
) -> ApiKey:
    """The key an ``Authorization`` header carries, checked at ``now``; KeyRefused if none.

    ``Bearer kck_...`` is looked up by its sha256; ``Bearer <JWT>`` by its ``iss`` (the access
    key), then its HS256 signature is checked against the derived secret key, then ``exp``
    and ``nbf`` (with :data:`LEEWAY`) and its lifetime (at most :data:`MAX_LIFETIME`). A token
    is accepted again and again until it expires, as Kling clients reuse them. Codes: 1001 no
    key; 1002 malformed, unknown, badly signed or too long-lived; 1003 ``nbf`` in the future;
    1004 the token or the key expired; 1000 the key was revoked.
    """
    if authorization is None or not authorization.strip():
        raise KeyRefused(
            "no Authorization header: send Authorization: Bearer <key or JWT>", code=EMPTY
        )
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":
        raise KeyRefused("the Authorization header must be: Bearer <key or JWT>", code=INVALID)
    if not token:
        raise KeyRefused("the Authorization header carries no key after Bearer", code=EMPTY)
    if token.count(".") == 2:
        key = _from_jwt(ledger, token, secret, now, cache)
    else:
        key = _from_bearer(ledger, token, cache)
    if key.revoked_at is not None and key.revoked_at <= now:
        raise KeyRefused(f"key {key.id} was revoked", code=FAILED)
    if key.expires_at is not None and now >= key.expires_at:
        raise KeyRefused(
            f"key {key.id} expired at {key.expires_at.isoformat()}; ask for a new one",
            code=EXPIRED,
        )
    return key


def _from_bearer(ledger: Ledger, token: str, cache: KeyCache | None) -> ApiKey:
    unknown = KeyRefused("the key is not valid: no such key", code=INVALID)
    if not token.startswith(BEARER_PREFIX) or len(token) > 256:
        raise unknown
    digest = hash_key(token)
    key = _find(ledger, cache, key_hash=digest)
    # The row was found by its hash; the comparison is constant-time all the same, so that
    # no code path compares a secret byte by byte.
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        raise unknown
    return key


def _from_jwt(
    ledger: Ledger, token: str, secret: bytes, now: datetime, cache: KeyCache | None
) -> ApiKey:
    claims = cache.signed(token) if cache is not None else None
    if claims is not None:  # this very token was checked before: only its key is read again
        key = _find(ledger, cache, access_key=claims["iss"])
        if key is None:
            raise KeyRefused("the token is not valid: no such access key", code=INVALID)
    else:
        key, claims = _checked(ledger, token, secret, cache)
    at = now.timestamp()
    leeway = LEEWAY.total_seconds()
    exp, nbf, iat = (_numeric(claims, name) for name in ("exp", "nbf", "iat"))
    if exp is None:
        raise KeyRefused("the token is not valid: it has no exp (NumericDate)", code=INVALID)
    if nbf is not None and nbf - leeway > at:
        raise KeyRefused("the token is not valid yet (nbf is in the future)", code=NOT_YET_VALID)
    if exp + leeway <= at:
        raise KeyRefused("the token expired (exp has passed); sign a new one", code=EXPIRED)
    start = nbf if nbf is not None else iat if iat is not None else at
    if exp - start > MAX_LIFETIME.total_seconds() + leeway:
        raise KeyRefused(
            f"the token lives longer than {MAX_LIFETIME} (exp - nbf); sign shorter-lived tokens",
            code=INVALID,
        )
    return key


def _checked(
    ledger: Ledger, token: str, secret: bytes, cache: KeyCache | None
) -> tuple[ApiKey, dict[str, Any]]:
    """Parse ``token``, find its key by ``iss`` and check its signature."""
    try:
        parsed = _jwt.parse(token)
    except _jwt.TokenError as exc:
        raise KeyRefused(f"the token is not valid: {exc}", code=INVALID) from None
    issuer = parsed.claims.get("iss")
    if not isinstance(issuer, str) or not issuer or len(issuer) > 256:
        raise KeyRefused("the token is not valid: iss must name an access key", code=INVALID)
    key = _find(ledger, cache, access_key=issuer)
    if key is None:
        raise KeyRefused("the token is not valid: no such access key", code=INVALID)
    try:
        claims = _jwt.check_signature(parsed, secret_key_for(secret, issuer).encode("ascii"))
    except _jwt.TokenError as exc:
        raise KeyRefused(f"the token is not valid: {exc}", code=INVALID) from None
    if cache is not None:
        cache.remember_signed(token, claims)
    return key, claims


def _numeric(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise KeyRefused(f"the token is not valid: {name} must be a number", code=INVALID)
    try:
        return float(value)
    except OverflowError:  # an int past any date
        raise KeyRefused(f"the token is not valid: {name} is out of range", code=INVALID) from None


__all__ = [
    "ACCESS_PREFIX",
    "BEARER_PREFIX",
    "CACHE_SECONDS",
    "LEEWAY",
    "MAX_LIFETIME",
    "SECRET_ENV",
    "ApiKey",
    "KeyCache",
    "NewKey",
    "authenticate",
    "create_key",
    "hash_key",
    "parse_duration",
    "secret_key_for",
    "server_secret",
]
