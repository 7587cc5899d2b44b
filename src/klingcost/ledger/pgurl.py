"""PostgreSQL ledger URLs: telling one from a file path, and showing one without its passwords.

A ``postgresql://`` URL may carry a password in its userinfo and ``password=`` or
``sslpassword=`` in its query string, and a driver's error may quote any piece of a malformed
one. Every message, repr and ``Ledger.path`` shows the URL through :func:`redact`, and every
driver message about it through :func:`scrub_error`.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

POSTGRES_SCHEMES: Final[tuple[str, ...]] = ("postgresql://", "postgres://")


def is_postgres_url(location: object) -> bool:
    """Whether ``location`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


#: ``password=`` and ``sslpassword=`` in a URL's query string, up to the next ``&name=``
#: (an ``&`` not followed by a parameter is taken as part of an unencoded password).
_QUERY_SECRET = re.compile(r"(?i)([?&](?:ssl)?password=)(.*?)(?=&[^&=#]*=|#|$)")
#: Where the query string starts: a ``?`` followed by a parameter name and ``=``.
_QUERY_START = re.compile(r"\?[A-Za-z_]+=")
#: What libpq and psycopg may cut a malformed URL at: a piece of a password can appear alone.
_CUTS = re.compile(r"[@/?#&:=%\[\]]")
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")


def _userinfo(url: str) -> tuple[int, int] | None:
    """Where the password of ``scheme://user:password@host`` lies in ``url`` (start, end).

    Read without a URL parser, which a badly written URL breaks: the password runs from the
    first ``:`` after the scheme to the *last* ``@`` before the query string (a password may
    hold an unencoded ``@``, ``/`` or ``?``).
    """
    start = url.find("://")
    query = _QUERY_START.search(url)
    at = url.rfind("@", 0, query.start() if query else len(url))
    if start < 0 or at < start:
        return None
    colon = url.find(":", start + 3, at)
    return None if colon < 0 else (colon + 1, at)


def passwords(url: str) -> list[str]:
    """Every password ``url`` carries, as written (userinfo, ``password=``, ``sslpassword=``)."""
    found = []
    span = _userinfo(url)
    if span is not None:
        found.append(url[span[0] : span[1]])
    found += [m.group(2) for m in _QUERY_SECRET.finditer(url)]
    return [p for p in found if p]


def redact(url: str) -> str:
    """``url`` without its passwords, for messages, reprs and ``Ledger.path``: the one in the
    userinfo, and ``password=`` or ``sslpassword=`` in the query, however badly encoded."""
    span = _userinfo(url)
    if span is not None and span[1] > span[0]:
        url = f"{url[: span[0]]}***{url[span[1] :]}"
    return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}***" if m.group(2) else m.group(0), url)


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's message about ``url``) without any password of ``url``, whole,
    decoded, or in the pieces a parser may have cut it into (three characters and up)."""
    pieces: set[str] = set()
    for password in passwords(url):
        for form in (password, unquote(password)):
            pieces.add(form)
            pieces.update(_CUTS.split(form))
    for piece in sorted((p for p in pieces if len(p) >= 3), key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


def scrub_error(exc: BaseException, url: str) -> str:
    """A connection error's message, safe to show. When ``url`` holds a password, a message
    that quotes a piece of the URL (libpq's "invalid percent-encoded token: ..." and the like)
    has every quoted piece hidden: in a malformed URL any piece may be part of a password."""
    text = str(exc).strip()
    if not passwords(url):
        return text
    text = redact(scrub(text, url))
    return _QUOTED.sub(lambda m: m.group(0)[0] + "***" + m.group(0)[0], text)


__all__ = ["POSTGRES_SCHEMES", "is_postgres_url", "passwords", "redact", "scrub", "scrub_error"]
