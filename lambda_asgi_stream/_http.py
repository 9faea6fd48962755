"""HTTP field grammar shared by the request side (``events``) and the response side (``cycle``). No I/O."""

from __future__ import annotations

import re

# RFC 9110 5.1: a field name is a token (and so is a method, 9.1).
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def is_token(name: bytes) -> bool:
    """Whether ``name`` is an RFC 9110 token: a valid field name or method."""
    return _TOKEN.fullmatch(name) is not None
