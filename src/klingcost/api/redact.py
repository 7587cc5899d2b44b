"""Keeping secrets out of text: the one redaction helper every module uses.

A secret (the API key, a hook secret) can reach a message in many shapes: as it is, upper- or
lower-cased by a proxy that echoes it, cut short (``hk-test-SECRET-4f9c`` of a longer key), or
escaped (``repr`` of a str or of its bytes). :func:`redact` replaces every run of
:data:`MIN_RUN` or more characters that appears, case-insensitively, inside any of those
shapes, so that no useful part of a secret survives in a log line, an error, a hold's reason
or an event. A secret shorter than :data:`MIN_RUN` is replaced where it appears whole.

For the API key of a client: :func:`redact_key` (how it shows in a repr), :func:`shows_key`
(whether an exception chain prints it) and :func:`scrub` (an error without it).

Nothing here imports the rest of klingcost but the error tree, nor any I/O: the ledger, the
clients, the fake API and the CLI all use it.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from typing import Final

from klingcost import errors

#: The shortest run of a secret's characters that is replaced. Shorter runs (``hk-test``,
#: ``Bearer``) are too common in ordinary text to tell apart from the secret.
MIN_RUN: Final = 8
REDACTED: Final = "<redacted>"


def secret_forms(secret: str) -> tuple[str, ...]:
    """Every way ``secret`` can show in an error's text, longest first.

    Besides the text itself: ``repr``-style escapes (``sk-x\\ny``, as an error message quoting
    the value shows it) and the escapes of its bytes (h11 prints a header as ``b'Bearer ...'``).
    """
    forms = {secret, repr(secret)[1:-1], ascii(secret)[1:-1]}
    for encoding in ("ascii", "latin-1", "utf-8"):
        try:
            forms.add(repr(secret.encode(encoding))[2:-1])
        except UnicodeEncodeError:
            continue
    # A text holding both quote marks is repr'd with '...' and its single quotes escaped.
    forms |= {form.replace("'", "\\'") for form in forms}
    return tuple(sorted((form for form in forms if form), key=len, reverse=True))


def _runs(secrets: Iterable[str]) -> tuple[set[str], list[str]]:
    """The casefolded ``MIN_RUN``-character pieces of every form, and the short forms whole."""
    pieces: set[str] = set()
    short: list[str] = []
    for secret in secrets:
        if not secret:
            continue
        for form in secret_forms(secret):
            folded = _fold(form)
            if len(folded) < MIN_RUN:
                short.append(form)
                continue
            pieces.update(folded[i : i + MIN_RUN] for i in range(len(folded) - MIN_RUN + 1))
    return pieces, short


def redact(text: str, *secrets: str) -> str:
    """``text`` with every run of ``MIN_RUN`` or more characters of any secret replaced.

    Runs are matched case-insensitively, in every form of :func:`secret_forms`; each stretch
    of ``text`` covered by such runs becomes one ``<redacted>``.

    >>> redact("bad key HK-TEST-SECRET-4F9C2A7D1E8B given", "hk-test-SECRET-4f9c2a7d1e8b")
    'bad key <redacted> given'
    >>> redact("key hk-test-SECRET-4f9c (cut)", "hk-test-SECRET-4f9c2a7d1e8b")
    'key <redacted> (cut)'
    """
    pieces, short = _runs(secrets)
    if pieces and len(text) >= MIN_RUN:
        # One folded character per character of ``text`` (casefold turns "ß" into "ss"), so
        # that a position in the folded text is the same position in ``text``.
        text = _cover(text, _fold(text), pieces)
    for form in short:
        text = _replace_insensitive(text, form)
    return text


def _fold(text: str) -> str:
    return "".join(c.casefold()[:1] or c for c in text)


def _cover(text: str, folded: str, pieces: set[str]) -> str:
    covered = bytearray(len(text))
    for i in range(len(folded) - MIN_RUN + 1):
        if folded[i : i + MIN_RUN] in pieces:
            covered[i : i + MIN_RUN] = b"\x01" * MIN_RUN
    if not any(covered):
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if covered[i]:
            while i < len(text) and covered[i]:
                i += 1
            out.append(REDACTED)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _replace_insensitive(text: str, form: str) -> str:
    folded, target = text.casefold(), form.casefold()
    if len(folded) != len(text) or target not in folded:
        return text.replace(form, REDACTED)
    out, i = [], 0
    while (j := folded.find(target, i)) >= 0:
        out += [text[i:j], REDACTED]
        i = j + len(target)
    out.append(text[i:])
    return "".join(out)


def shows(text: str, *secrets: str) -> bool:
    """Whether ``text`` holds a run of any secret that :func:`redact` would replace."""
    return redact(text, *secrets) != text


# --- the API key of a client -------------------------------------------------------------


def redact_key(key: str) -> str:
    """How a key shows in a repr: its prefix (``hk-``) and nothing more."""
    prefix = key.split("-", 1)[0] + "-" if "-" in key[:6] and len(key) >= 12 else ""
    return f"'{prefix}…'redacted"


def shows_key(exc: BaseException, key: str) -> bool:
    """Whether ``exc`` or an exception chained to it shows ``key`` when printed or repr'd.

    The whole ``__cause__``/``__context__`` chain counts: a traceback prints it, and even a
    suppressed context stays reachable as ``__context__``.
    """
    if not key:
        return False
    seen: set[int] = set()
    chain: list[BaseException | None] = [exc]
    while chain:
        current = chain.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        text = "".join(traceback.format_exception_only(current)) + repr(current)
        if shows(text, key):
            return True
        chain += [current.__cause__, current.__context__]
    return False


def scrub(error: errors.KlingAPIError, key: str) -> errors.KlingAPIError:
    """The same error with every form of ``key`` in its message replaced.

    When the key shows anywhere (its message or a chained exception) the answer is a fresh
    error with no chain: raise it outside any ``except`` block, or Python chains the original
    back as ``__context__``.
    """
    if not shows_key(error, key):
        return error
    return type(error)(
        redact(error.message, key),
        code=error.code,
        status=error.status,
        request_id=redact(error.request_id, key) if error.request_id else None,
    )


__all__ = [
    "MIN_RUN",
    "REDACTED",
    "redact",
    "redact_key",
    "scrub",
    "secret_forms",
    "shows",
    "shows_key",
]
