"""build_event (used by the emulator and the test transport) and parse_event are inverses: what a client
sends locally reaches the app as it would on AWS, for every integration."""

from __future__ import annotations

import pytest

from lambda_asgi_stream._types import INTEGRATIONS, Integration
from lambda_asgi_stream.events import parse_event
from lambda_asgi_stream.events.build import build_event

HEADERS = [("accept", "text/html"), ("x-tag", "a"), ("x-tag", "b"), ("cookie", "a=1; b=2")]


@pytest.mark.parametrize("integration", INTEGRATIONS)
@pytest.mark.parametrize(
    ("path", "decoded"),
    [("/", "/"), ("/items/7", "/items/7"), ("/caf%C3%A9/a%20b", "/caf\u00e9/a b")],
)
def test_round_trip(integration: Integration, path: str, decoded: str) -> None:
    event = build_event(
        integration,
        method="POST",
        path=path,
        query_string="q=a%20b&q=c&n=1",
        headers=[*HEADERS, ("content-type", "application/octet-stream")],
        body=b"\x00\xffbinary",
        host="example.test:8443",
    )
    request = parse_event(event)
    scope = request.scope
    assert request.integration == integration
    assert scope["method"] == "POST"
    assert scope["path"] == decoded
    assert scope["raw_path"] == path.encode()
    assert scope["root_path"] == ""
    assert scope["query_string"] == b"q=a%20b&q=c&n=1"
    assert request.body == b"\x00\xffbinary"
    headers = scope["headers"]
    assert (b"cookie", b"a=1; b=2") in headers
    assert (b"content-length", b"8") in headers
    if integration in ("function-url", "http-api"):  # payload 2.0 comma-joins repeated headers
        assert (b"x-tag", b"a,b") in headers
    elif integration == "alb" and not request.multi_value_headers:
        assert (b"x-tag", b"b") in headers
    else:
        assert [v for k, v in headers if k == b"x-tag"] == [b"a", b"b"]
    assert scope["server"] == ("example.test", 8443)
    assert scope["client"] == ("127.0.0.1", 0)


def test_alb_single_value_mode_round_trip() -> None:
    event = build_event("alb", method="GET", path="/x", headers=HEADERS, multi_value_headers=False)
    request = parse_event(event)
    assert not request.multi_value_headers
    assert (b"x-tag", b"b") in request.scope["headers"]


@pytest.mark.parametrize("integration", ["rest", "http-api"])
def test_stage_on_execute_api_becomes_root_path(integration: Integration) -> None:
    event = build_event(integration, method="GET", path="/prod/items", stage="prod")
    scope = parse_event(event).scope
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == ("/prod", "/prod/items", b"/prod/items")


def test_http_api_cannot_keep_an_encoded_slash() -> None:
    # HTTP APIs decode rawPath before we see it (docs/wire-format.md): %2F and / are the same there.
    event = build_event("http-api", method="GET", path="/a%2Fb")
    assert event["rawPath"] == "/a/b"
    assert parse_event(event).scope["raw_path"] == b"/a/b"


def test_vpc_lattice_v1_round_trip() -> None:
    event = build_event(
        "vpc-lattice",
        method="PUT",
        path="/caf%C3%A9",
        query_string="q=a%20b&n=1",
        headers=[("content-type", "text/plain")],
        body=b"text body",
        lattice_version=1,
    )
    assert "raw_path" in event and "version" not in event
    request = parse_event(event)
    scope = request.scope
    assert (request.integration, request.streamable) == ("vpc-lattice", False)
    assert (scope["method"], scope["path"], scope["raw_path"]) == ("PUT", "/caf\u00e9", b"/caf%C3%A9")
    assert scope["query_string"] == b"q=a%20b&n=1"
    assert request.body == b"text body"


@pytest.mark.parametrize("integration", ["lambda-at-edge", "vpc-lattice", "alb", "http-api"])
def test_buffered_only_sources_are_not_streamable(integration: Integration) -> None:
    assert not parse_event(build_event(integration, method="GET", path="/")).streamable
