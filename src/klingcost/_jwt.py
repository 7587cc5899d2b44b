"""JSON Web Tokens signed with HS256, the only kind Kling's API takes (RFC 7519, RFC 7515).

Written with hmac, base64 and json rather than a dependency: the proxy needs one algorithm,
and a library that accepts several is how ``alg: none`` and algorithm confusion slip in. Only
``HS256`` is accepted; the signature is compared in constant time (:func:`hmac.compare_digest`).
Claims are checked by the caller (:mod:`klingcost.keys`), which knows what each refusal means.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: A token longer than this is refused before any decoding (a header is not a payload).
MAX_TOKEN = 4096


class TokenError(ValueError):
    """The token is not a well-formed HS256 JWT, or its signature is wrong. The message never
    holds the token."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def _b64decode(text: str) -> bytes:
    if _BASE64URL.fullmatch(text) is None:
        raise TokenError("a token part is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:  # a length no encoding gives (4n + 1 characters)
        raise TokenError("a token part is not base64url") from None


def encode(claims: Mapping[str, Any], key: bytes) -> str:
    """``claims`` as an HS256 JWT signed with ``key`` (what a Kling client builds)."""
    header = _b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64encode(json.dumps(dict(claims), separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64encode(signature)}"


@dataclass(frozen=True, slots=True)
class Unverified:
    """A token parsed, its algorithm checked, its signature NOT yet checked: the caller needs
    ``claims["iss"]`` to find the key to check it with (:func:`check_signature`)."""

    claims: dict[str, Any]
    signing_input: bytes = field(repr=False)
    signature: bytes = field(repr=False)


def parse(token: str) -> Unverified:
    """Split and decode ``token``; TokenError when it is not an HS256 JWT."""
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
    claims = _json_object(parts[1], "payload")
    signature = _b64decode(parts[2])  # an empty one (an unsigned token) is refused here
    return Unverified(claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


def check_signature(token: Unverified, key: bytes) -> dict[str, Any]:
    """The token's claims once its HS256 signature by ``key`` is checked; TokenError if not."""
    expected = hmac.new(key, token.signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, token.signature):
        raise TokenError("the signature does not match the key's secret")
    return token.claims


def verify(token: str, key: bytes) -> dict[str, Any]:
    """:func:`parse`, then :func:`check_signature`."""
    return check_signature(parse(token), key)


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(part))
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        raise TokenError(f"the token's {what} is not base64url JSON") from exc
    if not isinstance(value, dict):
        raise TokenError(f"the token's {what} is not a JSON object")
    return value


__all__ = ["TokenError", "Unverified", "check_signature", "encode", "parse", "verify"]
