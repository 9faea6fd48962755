"""HTTP field grammar shared by the request side (``events``) and the response side (``cycle``), and the
escaping of request-derived text for log lines. No I/O."""

from __future__ import annotations

import re

# RFC 9110 5.1: a field name is a token (and so is a method, 9.1).
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# What must never reach a log line from a request: C0 controls (LF and CR start a forged line, ESC drives
# the terminal), DEL, C1 controls (NEL is a line break too), and the Unicode line and paragraph separators.
# Each becomes \xNN (\uNNNN beyond latin-1). A str.translate table, not a regex: the character class,
# with its non-ASCII members, took 0.25 ms to compile at import, on the Lambda cold path.
_UNLOGGABLE = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
_ESCAPES = {code: f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" for code in _UNLOGGABLE}
# A query string as it came on the wire is already percent-encoded: keep visible ASCII (RFC 9112 3.2
# request-target is VCHARs only) and encode anything else.
_QUERY_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
# What quote() leaves as it is (RFC 3986 unreserved, and "/"), and what a query keeps: a target made only of
# these is its own log form, without the cost of quote() on every invocation.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.\-~/]*")
_PLAIN_QUERY = re.compile(r"[\x21-\x7e]*")


def is_token(name: bytes) -> bool:
    """Whether ``name`` is an RFC 9110 token: a valid field name or method."""
    return _TOKEN.fullmatch(name) is not None


def loggable(text: str) -> str:
    """``text`` (a method, header value, error message... taken from a request) made safe for one log line.

    Control characters become ``\\xNN`` (line and paragraph separators ``\\uNNNN``), so a client cannot
    start a forged log line or send escape sequences to the terminal; everything else is left as it is.
    """
    # Every character escaped is one isprintable() refuses (Unicode Cc, Zl, Zp): the common case is one scan.
    return text if text.isprintable() else text.translate(_ESCAPES)


def loggable_target(path: str, query: str | bytes = "") -> str:
    """A request's path and query for a log line, percent-encoded as uvicorn's access log writes them.

    ``path`` is the decoded ASGI ``scope["path"]``: it is encoded again (``quote``, so a newline is ``%0A``
    and a space ``%20``); ``query`` is the raw ``scope["query_string"]``, of which only what is not
    visible ASCII is encoded.
    """
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    target = path if _PLAIN_PATH.fullmatch(path) else _quote(path)
    if query:
        target += "?" + (query if _PLAIN_QUERY.fullmatch(query) else _quote(query, safe=_QUERY_SAFE))
    return target


def _quote(text: str, safe: str = "/") -> str:
    # Imported here: urllib.parse (with ipaddress) costs ~2 ms to import, and only a target with characters
    # outside the plain sets above needs it.
    from urllib.parse import quote

    return quote(text, safe=safe)
