"""How the fake Kling API checks ``Authorization``: a Bearer key, a Kling JWT, or either.

openai-hk takes a fixed key (``Authorization: Bearer hk-...``). Kling's own API takes a JSON Web
Token that the client signs itself: HS256 over ``{"iss": access_key, "exp": ..., "nbf": ...}``
with the account's secret key, sent as ``Authorization: Bearer <token>``. The fake verifies it
as Kling does (signature, issuer, ``exp``, ``nbf``) and answers with Kling's codes (kling-facts.md,
"Error codes"), all HTTP 401: 1000 a token that is no JWT at all, 1001 empty, 1002 invalid
(signature, issuer, algorithm), 1003 not yet valid (``nbf``), 1004 expired (``exp``).

HS256 is HMAC-SHA256 over ``base64url(header) + "." + base64url(payload)``: a few lines of
``hmac``, ``hashlib`` and ``base64``, so the fake needs no JWT library. :func:`sign_jwt` makes a
token the same way (for tests and for a client written against this module).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = ["AUTH_MODES", "AuthError", "Authenticator", "sign_jwt"]

AuthMode = Literal["bearer", "jwt", "both"]
AUTH_MODES: Final[tuple[AuthMode, ...]] = ("bearer", "jwt", "both")


@dataclass(frozen=True, slots=True)
class AuthError:
    """A refusal: Kling's code and a message that names what is wrong (never the secret)."""

    code: int
    message: str


def _b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret_key: str, signing_input: str) -> bytes:
    return hmac.new(secret_key.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()


def sign_jwt(
    access_key: str,
    secret_key: str,
    *,
    now: float | None = None,
    lifetime: int = 1800,
    not_before: int = -5,
    claims: dict[str, Any] | None = None,
) -> str:
    """A Kling API token as Kling's sample code makes it: valid from ``now + not_before`` (5 s
    back, for clock skew) until ``now + lifetime``. ``claims`` are merged over those."""
    issued = int(time.time() if now is None else now)
    header = {"alg": "HS256", "typ": "JWT"}
    payload: dict[str, Any] = {
        "iss": access_key,
        "exp": issued + lifetime,
        "nbf": issued + not_before,
        **(claims or {}),
    }
    signing_input = ".".join(
        _b64url_encode(json.dumps(part, separators=(",", ":")).encode())
        for part in (header, payload)
    )
    return f"{signing_input}.{_b64url_encode(_signature(secret_key, signing_input))}"


def _looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts whose first decodes to a JSON object: a JWT, not a plain key."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(_b64url_decode(parts[0]))
    except (ValueError, binascii.Error):
        return False
    return isinstance(header, dict)


class Authenticator:
    """Checks the ``Authorization`` header of one request; see the module docstring.

    ``mode`` ``bearer``: a Bearer key, which must equal ``api_key`` unless that is None (then any
    key passes, as the fake always did). ``jwt``: a token signed with ``secret_key`` and issued
    by ``access_key``. ``both``: a token that looks like a JWT is checked as one, anything else
    as a Bearer key.
    """

    def __init__(
        self,
        mode: AuthMode = "bearer",
        *,
        api_key: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        if mode not in AUTH_MODES:
            raise ValueError(f"auth mode {mode!r} is not one of {', '.join(AUTH_MODES)}")
        if mode != "bearer" and not (access_key and secret_key):
            raise ValueError(f"auth mode {mode!r} needs an access key and a secret key")
        self.mode: AuthMode = mode
        self.api_key = api_key
        self.access_key = access_key
        self._keys = (access_key, secret_key) if access_key and secret_key else None

    def replace(self, **changes: Any) -> Authenticator:
        """A copy with some of ``mode``, ``api_key``, ``access_key``, ``secret_key`` changed."""
        settings: dict[str, Any] = {
            "mode": self.mode,
            "api_key": self.api_key,
            "access_key": self._keys[0] if self._keys else None,
            "secret_key": self._keys[1] if self._keys else None,
        }
        if unknown := set(changes) - set(settings):
            raise ValueError(f"unknown auth settings {sorted(unknown)}")
        settings.update(changes)
        mode = settings.pop("mode")
        return Authenticator(mode, **settings)

    def __repr__(self) -> str:  # the keys are secrets: never in a repr
        return f"Authenticator(mode={self.mode!r})"

    def secrets(self, header: str | None) -> tuple[str, ...]:
        """Every key this request could reveal: the fake's own and the credential it presents
        (a key a client should never have put in a body, but some log or echo it)."""
        credential = (header or "").partition(" ")[2].strip()
        return tuple(key for key in (self.api_key, *(self._keys or ()), credential) if key)

    def check(
        self, header: str | None, *, now: float | None = None
    ) -> tuple[str, AuthError | None]:
        """(the scheme used, ``"bearer"`` or ``"jwt"``; the refusal, or None when it passes)."""
        scheme, _, credential = (header or "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            return "none", AuthError(1001, "authorization is empty: send Authorization: Bearer ...")
        as_jwt = self.mode == "jwt" or (self.mode == "both" and _looks_like_jwt(credential))
        if as_jwt and self._keys is not None:  # (never None here: __init__ checks)
            return "jwt", _check_jwt(credential, *self._keys, time.time() if now is None else now)
        if self.api_key is not None and not hmac.compare_digest(
            credential.encode(), self.api_key.encode()
        ):
            return "bearer", AuthError(1002, "authorization is invalid: unknown API key")
        return "bearer", None


def _check_jwt(token: str, access_key: str, secret_key: str, now: float) -> AuthError | None:
    """Kling's checks, in its order: the token's shape, signature, issuer, then its times."""
    parts = token.split(".")
    if len(parts) != 3:
        return AuthError(1000, "authentication failed: not a JWT (header.payload.signature)")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        payload = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (ValueError, binascii.Error):
        return AuthError(1000, "authentication failed: the JWT is not base64url JSON")
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        alg = header.get("alg") if isinstance(header, dict) else None
        return AuthError(1002, f"authorization is invalid: JWT alg {alg!r}, expected HS256")
    expected = _signature(secret_key, f"{parts[0]}.{parts[1]}")
    if not hmac.compare_digest(signature, expected):
        return AuthError(1002, "authorization is invalid: the JWT signature does not match")
    if not isinstance(payload, dict) or payload.get("iss") != access_key:
        return AuthError(1002, "authorization is invalid: the JWT iss is not the access key")
    exp: Any = payload.get("exp")
    nbf: Any = payload.get("nbf")
    if not _is_time(exp):
        return AuthError(1002, "authorization is invalid: the JWT has no numeric exp")
    if nbf is not None and not _is_time(nbf):
        return AuthError(1002, "authorization is invalid: the JWT nbf is not numeric")
    if nbf is not None and now < float(nbf):
        return AuthError(1003, f"authorization is not yet valid: nbf {nbf} is in the future")
    if now >= float(exp):
        return AuthError(1004, f"authorization has expired: exp {exp} has passed")
    return None


def _is_time(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
