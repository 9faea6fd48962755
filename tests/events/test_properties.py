"""Property tests (hypothesis), derandomized so CI sees the same examples every run.

* Any JSON-shaped damage to any corpus event (a key deleted, set to null, given another type, odd strings,
  huge numbers, new keys) gives a valid ASGI scope or the typed ``EventError``: never another exception,
  which would cost the invocation an unclear crash instead of a named field.
* The encoder round-trips: ``build_prelude`` -> ``PreludeDecoder`` fed in arbitrary pieces, and
  ``buffered_response`` -> the decoder written here from the AWS docs' description of each shape, for any
  status, header set, cookie list, excluded names and body.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_asgi_stream import EventError
from lambda_asgi_stream._types import INTEGRATIONS
from lambda_asgi_stream.encoder import HOP_BY_HOP, PreludeDecoder, buffered_response, build_prelude
from lambda_asgi_stream.events import parse_event

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.json"))
SETTINGS = settings(
    max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# Per corpus file: 26 files, so about 500 damaged events in all.
EVENT_SETTINGS = settings(SETTINGS, max_examples=20)

# --- events ------------------------------------------------------------------------------------------

ODD_TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["", "/", "?", "%", "%zz", "\ud800", "\x00", "a\r\nb", "//x", "../..", "\u2603", "é" * 40]
    ),
)
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    ODD_TEXT,
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(ODD_TEXT, inner, max_size=3)),
    max_leaves=6,
)


def _places(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key or index path inside ``node``."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        found.append((*at, key))
        found.extend(_places(child, (*at, key)))
    return found


def _mutate(event: dict[str, Any], data: st.DataObject) -> None:
    places = _places(event)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        if not places:
            return
        place = data.draw(st.sampled_from(places), label="place")
        parent: Any = event
        for key in place[:-1]:
            parent = parent[key]
        key = place[-1]
        action = data.draw(st.sampled_from(["delete", "null", "replace", "insert"]), label="action")
        if action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif action == "insert" and isinstance(parent, dict):
            parent[data.draw(ODD_TEXT, label="new key")] = data.draw(JSON_VALUE, label="new value")
        elif action == "null":
            parent[key] = None
        else:
            parent[key] = data.draw(JSON_VALUE, label="value")
        places = _places(event)


def _check_scope(scope: dict[str, Any], body: bytes) -> None:
    """What an ASGI server promises an app (ASGI 3 HTTP scope, spec 2.3)."""
    assert scope["type"] == "http"
    assert isinstance(scope["method"], str) and scope["method"] and scope["method"] == scope["method"].upper()
    assert isinstance(scope["path"], str) and scope["path"].startswith("/")
    assert isinstance(scope["raw_path"], bytes) and scope["raw_path"].isascii()
    assert isinstance(scope["query_string"], bytes) and scope["query_string"].isascii()
    assert isinstance(scope["root_path"], str) and scope["path"].startswith(scope["root_path"])
    assert scope["scheme"] in ("http", "https")
    for name, value in scope["headers"]:
        assert type(name) is bytes and type(value) is bytes and name == name.lower()
        assert b"\r" not in value and b"\n" not in value and b"\x00" not in value
    client, server = scope["client"], scope["server"]
    assert client is None or (isinstance(client[0], str) and isinstance(client[1], int))
    assert server is None or (isinstance(server[0], str) and (server[1] is None or 0 < server[1] < 65536))
    json.dumps(scope["aws.event"], default=repr)  # still the event as given
    assert isinstance(body, bytes)


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
@EVENT_SETTINGS
@given(data=st.data())
def test_damaged_corpus_event_gives_a_scope_or_a_typed_error(path: Path, data: st.DataObject) -> None:
    case = json.loads(path.read_text("utf-8"))
    event = copy.deepcopy(case["event"])
    _mutate(event, data)
    try:
        request = parse_event(event, None, base_path=case["base_path"])
    except EventError:
        return
    _check_scope(request.scope, request.body)


# --- encoder -----------------------------------------------------------------------------------------

# A small pool, so that names repeat (and meet the ones some shapes drop) in most examples.
NAMES = st.one_of(
    st.sampled_from(
        ["vary", "x-a", "X-A", "x-amzn-trace-id", "connection", "transfer-encoding", "via", "te"]
    ),
    st.from_regex(r"[a-z][a-z0-9-]{0,6}", fullmatch=True),
)
VALUES = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
COOKIES = st.lists(st.from_regex(r"[a-z]{1,5}=[a-zA-Z0-9 ,;=/:-]{0,20}", fullmatch=True), max_size=5)
STATUS = st.integers(100, 599)


def _app_headers(pairs: list[tuple[str, str]], cookies: list[str]) -> list[tuple[bytes, bytes]]:
    headers = [(name.encode(), value.encode()) for name, value in pairs]
    return headers + [(b"set-cookie", cookie.encode()) for cookie in cookies]


def _expected(pairs: list[tuple[str, str]], dropped: set[str]) -> dict[str, list[str]]:
    """The app's headers by lower-case name, in order, without the ``dropped`` names."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        if name.lower() not in dropped:
            grouped.setdefault(name.lower(), []).append(value)
    return grouped


@SETTINGS
@given(
    status=STATUS,
    pairs=st.lists(st.tuples(NAMES, VALUES), max_size=8),
    cookies=COOKIES,
    body=st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 400), max_size=5),
    integration=st.sampled_from(["function-url", "rest"]),
    exclude=st.frozensets(NAMES.map(str.lower), max_size=2),
)
def test_prelude_round_trip(
    status: int,
    pairs: list[tuple[str, str]],
    cookies: list[str],
    body: bytes,
    cuts: list[int],
    integration: Any,
    exclude: frozenset[str],
) -> None:
    pairs = [(name, value) for name, value in pairs if name != "set-cookie"]
    stream = build_prelude(status, _app_headers(pairs, cookies), integration, exclude) + body
    decoder, out = PreludeDecoder(), b""
    points = sorted(cuts)
    for start, end in zip([0, *points], [*points, len(stream)], strict=True):  # fed in arbitrary pieces
        out += decoder.feed(stream[start:end])
    assert out == body
    prelude = decoder.prelude
    assert prelude is not None and prelude.status == status
    connection = {t.strip().lower() for n, v in pairs if n == "connection" for t in v.split(",")}
    expected = _expected(pairs, set(HOP_BY_HOP) | connection | exclude)
    got: dict[str, list[str]] = {}
    for name, value in prelude.headers:
        got.setdefault(name, []).append(value)
    if integration == "function-url":  # one string per name, repeats joined
        expected = {name: [", ".join(values)] for name, values in expected.items()}
    assert got == expected
    assert prelude.cookies == ([] if "set-cookie" in exclude else cookies)


def _decode(out: dict[str, Any], integration: str) -> tuple[int, dict[str, list[str]], list[str], bytes]:
    """A client's view of a buffered response dict, per the AWS docs of each integration."""
    if integration == "lambda-at-edge":  # CloudFront: string status, lists of {key, value}, bodyEncoding
        status = int(out["status"])
        grouped = {name: [entry["value"] for entry in entries] for name, entries in out["headers"].items()}
        text = out.get("body", "")
        body = base64.b64decode(text) if out.get("bodyEncoding") == "base64" else text.encode()
    else:
        status = out["statusCode"]
        grouped = {}
        for name, value in (out.get("headers") or {}).items():
            grouped.setdefault(name.lower(), []).append(
                value
            )  # ALB: Set-Cookie, set-Cookie, ... are one name
        for name, values in (out.get("multiValueHeaders") or {}).items():
            grouped.setdefault(name.lower(), []).extend(values)
        grouped.setdefault("set-cookie", []).extend(out.get("cookies") or [])
        body = base64.b64decode(out["body"]) if out["isBase64Encoded"] else out["body"].encode()
    cookies = grouped.pop("set-cookie", [])
    return status, grouped, cookies, body


@SETTINGS
@given(
    status=STATUS,
    pairs=st.lists(st.tuples(NAMES, VALUES), max_size=8),
    cookies=COOKIES,
    body=st.binary(max_size=300) | st.text(max_size=100).map(str.encode),
    content_type=st.sampled_from(["text/plain", "application/json", "image/png", "text/html; charset=utf-8"]),
    integration=st.sampled_from(INTEGRATIONS),
    multi=st.booleans(),
    exclude=st.frozensets(NAMES.map(str.lower), max_size=2),
)
def test_buffered_round_trip(
    status: int,
    pairs: list[tuple[str, str]],
    cookies: list[str],
    body: bytes,
    content_type: str,
    integration: Any,
    multi: bool,
    exclude: frozenset[str],
) -> None:
    pairs = [(name, value) for name, value in pairs if name not in ("set-cookie", "content-type")]
    pairs.append(("content-type", content_type))
    headers = _app_headers(pairs, cookies)
    out = buffered_response(
        status, headers, body, integration, multi_value_headers=multi, exclude_headers=exclude
    )
    json.dumps(out)  # what Lambda serialises
    got_status, got, got_cookies, got_body = _decode(out, integration)
    assert (got_status, got_body) == (status, body)
    dropped = {"connection", "transfer-encoding"} | exclude
    if integration == "lambda-at-edge":
        dropped |= {"via"} | {name for name, _ in pairs if name.startswith("x-amzn-")}
    expected = _expected(pairs, dropped)
    # Payload 2.0, ALB single-value mode and VPC Lattice take one value per name (the flag only says how ALB's
    # target group is set up); REST, ALB multi-value mode and CloudFront keep every value.
    if integration in ("function-url", "http-api", "vpc-lattice") or (integration == "alb" and not multi):
        expected = {name: [",".join(values)] for name, values in expected.items()}
    assert got == expected
    assert got_cookies == ([] if "set-cookie" in exclude else cookies)
