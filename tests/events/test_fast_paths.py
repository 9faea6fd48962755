"""The parsers' fast paths give exactly what the general code gives (urllib's quote/unquote, the header
rules), for every character class they could meet."""

from __future__ import annotations

import copy
import json
import random
import string
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_asgi_stream import EventError, MalformedEventError
from lambda_asgi_stream._types import Integration
from lambda_asgi_stream.events import Request, parse_event
from lambda_asgi_stream.events import _common as c
from lambda_asgi_stream.events.build import build_event
from lambda_asgi_stream.events.request import HandledRequest

from .test_properties import _mutate

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


# --- the parsers' field reads --------------------------------------------------------------------------
# The parsers take a field as it is when it has its usual JSON type (``type(x) is str``, ``is dict``) and
# hand anything else to the checking readers. Subclasses of str/dict/list pass the readers' isinstance
# checks but never the fast paths' type checks: the same event with its values disguised so takes the
# checking readers everywhere, and must give the same request, or the same typed error for the same field.

# The formats whose parsers have these fast paths (Lambda@Edge and VPC Lattice read through the readers).
CORPUS = [
    p
    for p in sorted((Path(__file__).parent / "corpus").glob("*.json"))
    if p.stem.startswith(("url_", "http_api_", "rest_", "alb_"))
]
HEADERS = [("accept", "*/*"), ("Host", "h.example:8443"), ("x-forwarded-port", "80"), ("cookie", "a=1")]
INTEGRATIONS: list[Integration] = ["function-url", "http-api", "rest", "alb"]
BUILT = [
    build_event(
        i, method="POST", path="/prod/a b/é", query_string="x=1&y=%20z", headers=HEADERS, body=b"hi", stage=s
    )
    for i in INTEGRATIONS
    for s in (None, "prod")
]


class _Str(str):
    pass


class _Dict(dict):  # type: ignore[type-arg]
    pass


class _List(list):  # type: ignore[type-arg]
    pass


def _disguised(value: Any, key: Any = None) -> Any:
    if isinstance(value, dict):
        return _Dict({k: _disguised(v, k) for k, v in value.items()})
    if isinstance(value, list):
        return _List(_disguised(v) for v in value)
    if type(value) is str and key != "body":  # a body must be a plain str or bytes, by either path
        return _Str(value)
    return value


def _outcome(event: Any, base_path: str) -> Any:
    try:
        request = parse_event(event, None, base_path=base_path)
    except EventError as exc:
        return type(exc), getattr(exc, "field", None)  # the message may name the subclass: not compared
    scope = {k: v for k, v in request.scope.items() if k != "aws.event"}
    return scope, request.body, request.integration, request.multi_value_headers, request.streamable


def _same_either_way(event: dict[str, Any], base_path: str) -> None:
    disguised = _disguised(copy.deepcopy(event))
    assert _outcome(disguised, base_path) == _outcome(event, base_path)


@pytest.mark.parametrize("base_path", ["", "/prod", "v1"])
def test_checking_readers_give_what_the_fast_paths_give(base_path: str) -> None:
    events = [json.loads(p.read_text("utf-8"))["event"] for p in CORPUS] + BUILT
    for event in events:
        _same_either_way(event, base_path)


@pytest.mark.parametrize("event", BUILT[::2], ids=["function-url", "http-api", "rest", "alb"])
@settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_checking_readers_agree_on_damaged_events(event: dict[str, Any], data: st.DataObject) -> None:
    damaged = copy.deepcopy(event)
    _mutate(damaged, data)
    _same_either_way(damaged, "")


# Every field a parser reads inline, with a value of another type: the error names the field. (A "map" is
# an object whose every member is read: {"a": 2} there names its member.)
ODD_FIELDS = [
    ("function-url", ("requestContext", "http"), "requestContext.http", "object"),
    ("function-url", ("requestContext", "domainName"), "requestContext.domainName", "string"),
    ("function-url", ("requestContext", "stage"), "requestContext.stage", "string"),
    ("function-url", ("requestContext", "http", "sourceIp"), "requestContext.http.sourceIp", "string"),
    ("function-url", ("requestContext", "http", "protocol"), "requestContext.http.protocol", "string"),
    ("function-url", ("rawQueryString",), "rawQueryString", "string"),
    ("function-url", ("headers",), "headers", "map"),
    ("http-api", ("requestContext", "stage"), "requestContext.stage", "string"),
    ("rest", ("requestContext", "identity"), "requestContext.identity", "object"),
    ("rest", ("requestContext", "domainName"), "requestContext.domainName", "string"),
    ("rest", ("requestContext", "stage"), "requestContext.stage", "string"),
    ("rest", ("requestContext", "protocol"), "requestContext.protocol", "string"),
    ("rest", ("requestContext", "identity", "sourceIp"), "requestContext.identity.sourceIp", "string"),
    ("rest", ("multiValueQueryStringParameters",), "multiValueQueryStringParameters", "map"),
    ("rest", ("queryStringParameters",), "queryStringParameters", "map"),
    ("rest", ("multiValueHeaders",), "multiValueHeaders", "map"),
]
ODD_VALUES = [7, 0, 1.5, True, False, [], ["x"], "text", {"a": 2}]


def _set(event: dict[str, Any], place: tuple[str, ...], value: Any) -> None:
    parent = event
    for key in place[:-1]:
        parent = parent[key]
    if value is _DELETE:
        del parent[place[-1]]
    else:
        parent[place[-1]] = value


_DELETE = object()


@pytest.mark.parametrize(("integration", "place", "field", "kind"), ODD_FIELDS)
@pytest.mark.parametrize("odd", ODD_VALUES, ids=repr)
def test_a_field_of_another_type_is_named(
    integration: Integration, place: tuple[str, ...], field: str, kind: str, odd: Any
) -> None:
    if (kind == "string" and type(odd) is str) or (kind == "object" and type(odd) is dict):
        return  # the type that belongs there
    event = build_event(integration, method="GET", path="/a", headers=HEADERS)
    _set(event, place, odd)
    with pytest.raises(MalformedEventError) as info:
        parse_event(event)
    # An object of the right type with a bad member names the member: "multiValueHeaders.a".
    assert info.value.field == (f"{field}.a" if type(odd) is dict and kind == "map" else field)


# requestContext.http is required, and without it the event is not read as payload 2.0 at all.
@pytest.mark.parametrize(("integration", "place", "field", "kind"), ODD_FIELDS[1:])
def test_a_null_field_reads_as_a_missing_one(
    integration: Integration, place: tuple[str, ...], field: str, kind: str
) -> None:
    nulled = build_event(integration, method="GET", path="/a", headers=HEADERS)
    missing = copy.deepcopy(nulled)
    _set(nulled, place, None)
    _set(missing, place, _DELETE)
    assert _outcome(nulled, "") == _outcome(missing, "")


# --- caches of values already worked out -----------------------------------------------------------------


def test_header_values_come_from_the_cache_as_they_were_first_made() -> None:
    values = ["*/*", "é", "€", "\ud800", "a\r\nb", "nul\x00", "x" * (c._HEADER_VALUE_CACHED_LEN + 1), ""]
    pairs = [(f"x-{i}", value) for i, value in enumerate(values)]
    expected = [
        (b"x-0", b"*/*"),
        (b"x-1", "é".encode("latin-1")),
        (b"x-2", "€".encode()),
        (b"x-3", "\ud800".encode("utf-8", "surrogatepass")),
        (b"x-6", b"x" * (c._HEADER_VALUE_CACHED_LEN + 1)),
        (b"x-7", b""),
    ]
    assert c.headers(pairs, b"") == expected
    assert c.headers(pairs, b"") == expected  # now from the cache
    assert "a\r\nb" not in c._header_values and "x" * (c._HEADER_VALUE_CACHED_LEN + 1) not in c._header_values
    # A name that is dropped is dropped whether or not its value is known.
    assert c.headers([("bad name", "*/*"), ("content-length", "*/*")], b"") == []


def test_header_value_cache_is_emptied_when_full() -> None:
    for i in range(c._HEADER_VALUES_MAX + 10):
        assert c.headers([("x-id", f"id-{i}")], b"") == [(b"x-id", f"id-{i}".encode())]
        assert len(c._header_values) <= c._HEADER_VALUES_MAX
    assert c.headers([("x-id", "id-3")], b"") == [(b"x-id", b"id-3")]


@pytest.mark.parametrize("round_", ["first", "cached"])
def test_server_is_worked_out_alike_from_the_cache(round_: str) -> None:
    hosts = [None, b"", b"h", b"h:8080", b"h:0", b"h:x", b"[::1]", b"[::1]:9000", b"h:\xb2"]
    for host in hosts:
        for port in (None, b"", b"443", b"8443, 80", b"x"):
            for domain in (None, "", "d.example"):
                for scheme in ("http", "https"):
                    first = {k: v for k, v in ((b"host", host), (b"x-forwarded-port", port)) if v is not None}
                    expected = c._server(host, port, domain, scheme)
                    assert c.server(first, domain, scheme) == expected


def test_server_cache_stays_bounded() -> None:
    for i in range(c._SERVERS_MAX + 10):
        assert c.server({b"host": f"h{i}".encode()}, None, "https") == (f"h{i}", 443)
    assert len(c._servers) <= c._SERVERS_MAX
    assert c.server({b"host": b"h99999:81"}, None, "https") == ("h99999", 81)


def test_request_is_an_immutable_value() -> None:
    request = Request({"type": "http"}, b"", "rest", True)
    assert request == Request(scope={"type": "http"}, body=b"", integration="rest", multi_value_headers=True)
    assert request.streamable is True
    assert request._fields == ("scope", "body", "integration", "multi_value_headers", "streamable")
    assert request.replace(body=b"x").body == b"x"
    with pytest.raises(AttributeError):
        request.body = b"y"  # type: ignore[misc]
    assert not hasattr(request, "__dict__")
    assert hash(request.replace(scope=())) == hash(request.replace(scope=()))  # hashable when its parts are
    handled = HandledRequest({"type": "http"}, b"", "custom", False, False, extra=1)
    assert handled.extra == 1 and handled.replace(extra=2).extra == 2 and handled.streamable is False
    assert "extra=1" in repr(handled) and handled != request
