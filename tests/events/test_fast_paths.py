"""The parsers' fast paths give exactly what the general code gives (urllib's quote/unquote, the header
rules), for every character class they could meet."""

from __future__ import annotations

import random
import string
from urllib.parse import quote, unquote

import pytest

from lambda_asgi_stream.events import _common as c

ALPHABET = string.printable + "é€☃\x00\x7f%" + "".join(chr(i) for i in range(0x80, 0x100, 7))
rng = random.Random(1234)
SAMPLES = ["/", "/hello", "/a b", "/a%2Fb", "/%zz", "/~u/!$&'()*+,;=:@-._", "/é", "/a?b#c", "/[x]"]
SAMPLES += ["/" + "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12))) for _ in range(3000)]


@pytest.mark.parametrize("chunk", range(10))
def test_path_quoting_matches_urllib(chunk: int) -> None:
    for text in SAMPLES[chunk::10]:
        assert c.raw_path(text) == quote(text, safe="/:@!$&'()*+,;=-._~%", encoding="utf-8").encode("ascii")
        assert c.quote_path(text) == quote(text, safe="/:@!$&'()*+,;=-._~", encoding="utf-8").encode("ascii")
        assert c.quote_component(text) == quote(text, safe="")
        assert c.decode_path(text, "path") == unquote(text, encoding="utf-8", errors="replace")


def test_header_names_are_validated_the_same_on_every_sight() -> None:
    pairs = [("X-Ok", "1"), ("bad name", "2"), ("Content-Length", "3"), ("x-crlf", "a\r\nb"), ("é", "4")]
    first = c.headers(pairs, b"")
    assert first == [(b"x-ok", b"1")]
    assert c.headers(pairs, b"") == first  # now from the cache
    assert c.headers([("x-wide", "€"), ("x-latin", "é")], b"") == [
        (b"x-wide", "€".encode()),
        (b"x-latin", "é".encode("latin-1")),
    ]


def test_header_name_cache_stays_bounded() -> None:
    for i in range(c._HEADER_NAMES_MAX + 100):
        c.headers([(f"x-client-{i}", "v")], b"")
    assert len(c._header_names) <= c._HEADER_NAMES_MAX
    assert c.headers([("x-client-99999", "v")], b"") == [(b"x-client-99999", b"v")]


def test_header_object_values_follow_single_values_rules() -> None:
    assert c.headers({"a": "1", "b": None}.items(), b"x") == [(b"a", b"1"), (b"content-length", b"1")]
    with pytest.raises(c.MalformedEventError, match=r"headers\.b"):
        c.headers({"a": "1", "b": 2}.items(), b"")
