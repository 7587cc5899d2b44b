"""JSON Web Tokens signed with HS256, the only kind Kling's API takes (RFC 7519, RFC 7515).

Written with hmac, base64 and json rather than a dependency: the proxy needs one algorithm,
and a library that accepts several is how ``alg: none`` and algorithm confusion slip in. Only
``HS256`` is accepted; the signature is compared in constant time (:func:`hmac.compare_digest`).
Claims are checked by the caller (:mod:`klingcost.keys`), which knows what each refusal means.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

#: A token longer than this is refused before any decoding (a header is not a payload).
MAX_TOKEN = 4096


class TokenError(ValueError):
    """The token is not a well-formed HS256 JWT, or its signature is wrong. The message never
    holds the token."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or any(c not in _ALPHABET for c in text):
        raise TokenError("a token part is not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def encode(claims: Mapping[str, Any], key: bytes) -> str:
    """``claims`` as an HS256 JWT signed with ``key`` (what a Kling client builds)."""
    header = _b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64encode(json.dumps(dict(claims), separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64encode(signature)}"


def unverified_claims(token: str) -> dict[str, Any]:
    """The header's algorithm checked and the payload decoded, the signature NOT yet checked:
    the caller needs ``iss`` to find the key to check it with (:func:`verify`)."""
    if len(token) > MAX_TOKEN:
        raise TokenError(f"the token is longer than {MAX_TOKEN} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("a JWT has three parts separated by dots")
    header = _json_object(parts[0], "header")
    if header.get("alg") != "HS256":
        # ``none`` (no signature), RS256 with the secret as a public key: all refused.
        raise TokenError(f"only alg HS256 is accepted (given {str(header.get('alg'))[:16]!r})")
    if "crit" in header:
        raise TokenError("critical header extensions are not supported")
    return _json_object(parts[1], "payload")


def verify(token: str, key: bytes) -> dict[str, Any]:
    """The token's claims once its HS256 signature by ``key`` is checked; TokenError if not."""
    claims = unverified_claims(token)
    header, payload, signature = token.split(".")
    expected = hmac.new(key, f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _b64decode(signature)):
        raise TokenError("the signature does not match the key's secret")
    return claims


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(part))
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        raise TokenError(f"the token's {what} is not base64url JSON") from exc
    if not isinstance(value, dict):
        raise TokenError(f"the token's {what} is not a JSON object")
    return value


__all__ = ["TokenError", "encode", "unverified_claims", "verify"]
