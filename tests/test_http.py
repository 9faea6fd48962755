"""The leaf ``_http``: the token grammar, and the escaping that keeps request text from forging log lines."""

from __future__ import annotations

import pytest

from lambda_asgi_stream._http import is_token, loggable, loggable_target


def test_token() -> None:
    assert is_token(b"X-Custom_Header.1")
    assert not is_token(b"bad header") and not is_token(b"") and not is_token(b"a:b")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text, caf\u00e9 \u20ac", "plain text, caf\u00e9 \u20ac"),
        ("a\nERROR forged", "a\\x0aERROR forged"),
        ("a\r\nb", "a\\x0d\\x0ab"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("nul\x00 del\x7f", "nul\\x00 del\\x7f"),
        ("nel\x85", "nel\\x85"),
        ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),
        ("tab\there", "tab\\x09here"),
    ],
)
def test_loggable_escapes_control_characters(text: str, expected: str) -> None:
    assert loggable(text) == expected
    assert "\n" not in loggable(text) and "\x1b" not in loggable(text)


def test_loggable_escapes_exactly_the_unloggable_characters() -> None:
    # The escaping is a str.translate table; this is the character class it stands for, checked code point
    # by code point up to U+2FFF (none beyond is in the class), then a non-BMP character and a surrogate.
    import re

    unloggable = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
    for code in range(0x3000):
        char = chr(code)
        if unloggable.fullmatch(char):
            expected = f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
        else:
            expected = char
        assert loggable(f"a{char}b") == f"a{expected}b", hex(code)
    assert loggable("\U0001f600\ud800") == "\U0001f600\ud800"


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("/items/1", b"", "/items/1"),
        ("/y\nERROR forged line 2", b"", "/y%0AERROR%20forged%20line%202"),
        ("/\x1b[2J", b"", "/%1B%5B2J"),
        ("/caf\u00e9", b"a=1&b=%0A", "/caf%C3%A9?a=1&b=%0A"),  # the wire's own escapes are kept
        ("/q", b"a=\n\x1b b", "/q?a=%0A%1B%20b"),
        ("/q", "x=\u00e9", "/q?x=%C3%A9"),
    ],
)
def test_loggable_target_percent_encodes_as_uvicorn(path: str, query: bytes | str, expected: str) -> None:
    assert loggable_target(path, query) == expected


def test_loggable_target_matches_uvicorn_access_log() -> None:
    from uvicorn.protocols.utils import get_path_with_query_string

    scope = {"path": "/a b\n/\u00e9:@", "query_string": b"k=v%20w", "root_path": ""}
    assert loggable_target(scope["path"], scope["query_string"]) == get_path_with_query_string(scope)  # type: ignore[arg-type]


def test_the_plain_target_fast_path_agrees_with_quote() -> None:
    # loggable_target skips quote() for a path or query it would leave as it is; both ways must agree.
    import random
    import string
    from urllib.parse import quote

    from lambda_asgi_stream._http import _QUERY_SAFE

    rng = random.Random(20261129)
    alphabet = string.printable + "éü\u2028\x00\x7f%?#"
    for _ in range(5000):
        path = "/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        query = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        expected = quote(path) + ("?" + quote(query, safe=_QUERY_SAFE) if query else "")
        assert loggable_target(path, query) == expected, (path, query)
