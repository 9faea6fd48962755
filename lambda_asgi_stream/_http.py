"""HTTP field grammar shared by the request side (``events``) and the response side (``cycle``), and the
escaping of request-derived text for log lines. No I/O."""

from __future__ import annotations

import re
from urllib.parse import quote

# RFC 9110 5.1: a field name is a token (and so is a method, 9.1).
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# What must never reach a log line from a request: C0 controls (LF and CR start a forged line, ESC drives
# the terminal), DEL, C1 controls (NEL is a line break too), and the Unicode line and paragraph separators.
_UNLOGGABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
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


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def loggable(text: str) -> str:
    """``text`` (a method, header value, error message... taken from a request) made safe for one log line.

    Control characters become ``\\xNN`` (line and paragraph separators ``\\uNNNN``), so a client cannot
    start a forged log line or send escape sequences to the terminal; everything else is left as it is.
    """
    if text.isascii() and text.isprintable():  # the usual case: no C0 control or DEL, nothing to escape
        return text
    return _UNLOGGABLE.sub(_escape, text)


def loggable_target(path: str, query: str | bytes = "") -> str:
    """A request's path and query for a log line, percent-encoded as uvicorn's access log writes them.

    ``path`` is the decoded ASGI ``scope["path"]``: it is encoded again (``quote``, so a newline is ``%0A``
    and a space ``%20``); ``query`` is the raw ``scope["query_string"]``, of which only what is not
    visible ASCII is encoded.
    """
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    target = path if _PLAIN_PATH.fullmatch(path) else quote(path)
    if query:
        target += "?" + (query if _PLAIN_QUERY.fullmatch(query) else quote(query, safe=_QUERY_SAFE))
    return target
