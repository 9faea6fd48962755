"""Events that are not HTTP events, or are broken, give a typed error that names what was wrong."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from lambda_asgi_stream import MalformedEventError, UnsupportedEventError
from lambda_asgi_stream.events import parse_event
from lambda_asgi_stream.events.build import build_event


def _url_event(**changes: Any) -> dict[str, Any]:
    event = build_event("function-url", method="GET", path="/")
    event.update(changes)
    return event


@pytest.mark.parametrize(
    ("event", "says"),
    [
        ({"Records": [{"eventSource": "aws:sqs", "body": "x"}]}, "aws:sqs"),
        ({"detail-type": "Scheduled Event", "source": "aws.events"}, "EventBridge"),
        ({"requestContext": {"connectionId": "abc", "routeKey": "$connect"}}, "WebSocket"),
        ({"hello": "world"}, "hello"),
        ({}, "no keys"),
    ],
)
def test_non_http_events_are_unsupported_and_say_what_they_look_like(event: Any, says: str) -> None:
    with pytest.raises(UnsupportedEventError) as info:
        parse_event(event)
    assert says in str(info.value)
    assert info.value.keys == sorted(event)


@pytest.mark.parametrize("event", [None, [], "GET /", 42])
def test_non_object_events_are_unsupported(event: Any) -> None:
    with pytest.raises(UnsupportedEventError, match="JSON object"):
        parse_event(event)


def test_missing_method_names_the_field() -> None:
    event = _url_event()
    event["requestContext"]["http"]["method"] = None
    with pytest.raises(MalformedEventError) as info:
        parse_event(event)
    assert info.value.field == "requestContext.http.method"
    assert "missing" in str(info.value)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"headers": ["host", "x"]}, "headers"),
        ({"headers": {"x-a": 1}}, "headers.x-a"),
        ({"cookies": "a=1"}, "cookies"),
        ({"rawPath": 7}, "rawPath"),
        ({"rawPath": "no-slash"}, "rawPath"),
        ({"body": "!!!not base64!!!", "isBase64Encoded": True}, "body"),
        ({"body": {"json": "object"}}, "body"),
    ],
)
def test_malformed_fields_are_named(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(MalformedEventError) as info:
        parse_event(_url_event(**changes))
    assert info.value.field == field


def test_rest_bad_method_and_bad_multi_value_headers() -> None:
    event = build_event("rest", method="GET", path="/")
    event["httpMethod"] = "GE T"
    with pytest.raises(MalformedEventError, match="not an HTTP method"):
        parse_event(event)
    event = build_event("rest", method="GET", path="/")
    event["multiValueHeaders"] = {"accept": "text/html"}
    with pytest.raises(MalformedEventError) as info:
        parse_event(event)
    assert info.value.field == "multiValueHeaders.accept"


def test_unsafe_header_fields_are_dropped_not_passed_on() -> None:
    event = _url_event(headers={"host": "h", "bad name": "x", "x-ok": "1", "x-inject": "a\r\nset-cookie: y"})
    names = [k for k, _ in parse_event(event).scope["headers"]]
    assert names == [b"host", b"x-ok"]


def test_event_errors_carry_lambda_error_types() -> None:
    assert UnsupportedEventError("x").error_type.startswith(("Function.", "Runtime."))
    assert MalformedEventError("f", "p").error_type.startswith(("Function.", "Runtime."))


@pytest.mark.parametrize(
    "changes",
    [
        {"body": "\ud800 lone surrogate"},
        {"headers": {"host": "x:\u00b2", "x-a": "\ud800"}},  # "²".isdigit() is True, int("²") fails
        {"rawPath": "/a\ud800b"},
        {"rawQueryString": "q=\ud800"},
    ],
)
def test_odd_but_valid_json_never_crashes_the_parser(changes: dict[str, Any]) -> None:
    request = parse_event(_url_event(**changes))
    assert request.scope["raw_path"].isascii() and request.scope["query_string"].isascii()


def test_non_ascii_query_is_percent_encoded_not_replaced() -> None:
    request = parse_event(_url_event(rawQueryString="q=\u65e5&x=%41"))
    assert request.scope["query_string"] == b"q=%E6%97%A5&x=%41"
    alb = build_event("alb", method="GET", path="/", query_string="\u2603=1")
    assert parse_event(alb).scope["query_string"] == b"%E2%98%83=1"


def test_rest_query_values_with_lone_surrogates() -> None:
    event = build_event("rest", method="GET", path="/")
    event["multiValueQueryStringParameters"] = {"q": ["\ud800"]}
    assert parse_event(event).scope["query_string"].startswith(b"q=%ED%A0%80")


def _without(event: dict[str, Any], *where: str, null: bool) -> dict[str, Any]:
    """``event`` with the field at each dotted place deleted (or set to null)."""
    for dotted in where:
        *parents, last = dotted.split(".")
        node: Any = event
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if null:
            node[last] = None
        else:
            del node[last]
    return event


# Every place each format keeps the path; the field the error names.
PATH_PLACES = [
    ("function-url", ("rawPath", "requestContext.http.path"), "rawPath"),
    ("http-api", ("rawPath", "requestContext.http.path"), "rawPath"),
    ("rest", ("path", "requestContext.path"), "path"),
    ("alb", ("path",), "path"),
    ("lambda-at-edge", ("Records.0.cf.request.uri",), "Records[0].cf.request.uri"),
    ("vpc-lattice", ("path",), "path"),
]


@pytest.mark.parametrize("null", [False, True], ids=["deleted", "null"])
@pytest.mark.parametrize(("integration", "places", "field"), PATH_PLACES, ids=[p[0] for p in PATH_PLACES])
def test_an_event_without_a_path_is_malformed_not_served_as_root(
    integration: Any, places: tuple[str, ...], field: str, null: bool
) -> None:
    event = _without(build_event(integration, method="GET", path="/admin/delete"), *places, null=null)
    with pytest.raises(MalformedEventError) as info:
        parse_event(event)
    assert info.value.field == field
    assert "missing" in str(info.value)


@pytest.mark.parametrize("version", [1, 2])
def test_lattice_without_method_is_malformed(version: int) -> None:
    event = build_event("vpc-lattice", method="GET", path="/x", lattice_version=version)
    del event["method"]
    with pytest.raises(MalformedEventError) as info:
        parse_event(event)
    assert info.value.field == "method"


def test_lattice_v1_without_raw_path_is_malformed() -> None:
    event = build_event("vpc-lattice", method="GET", path="/x", lattice_version=1)
    del event["raw_path"]
    event["method"] = "GET"
    # Without raw_path it is no longer recognisable as a Lattice v1 event at all.
    with pytest.raises(UnsupportedEventError):
        parse_event(event)
    event["raw_path"] = None
    with pytest.raises(MalformedEventError, match="raw_path"):
        parse_event(event)


@pytest.mark.parametrize("integration", ["rest", "function-url"])
def test_the_second_place_a_format_keeps_the_path_is_used(integration: Any) -> None:
    event = build_event(integration, method="GET", path="/items/7")
    del event["path" if integration == "rest" else "rawPath"]
    assert parse_event(event).scope["path"] == "/items/7"


@pytest.mark.parametrize(
    ("body", "flag", "expected"),
    [
        (b"\x00\xffraw", False, b"\x00\xffraw"),
        (bytearray(b"abc"), None, b"abc"),
        (base64.b64encode(b"\x00\x01"), True, b"\x00\x01"),  # as Mangum's maybe_encode_body reads it
    ],
)
def test_hand_written_bytes_body_is_the_raw_body(body: Any, flag: Any, expected: bytes) -> None:
    for integration in ("function-url", "rest", "alb"):
        event = build_event(integration, method="POST", path="/")
        event.update(body=body, isBase64Encoded=flag)
        request = parse_event(event)
        assert request.body == expected
        assert (b"content-length", str(len(expected)).encode()) in request.scope["headers"]


def test_bytes_body_that_claims_base64_but_is_not() -> None:
    with pytest.raises(MalformedEventError) as info:
        parse_event(_url_event(body=b"!!not base64!!", isBase64Encoded=True))
    assert info.value.field == "body"


def test_edge_truncated_body_is_refused_not_served_partly() -> None:
    event = build_event("lambda-at-edge", method="POST", path="/upload", body=b"x" * 100)
    event["Records"][0]["cf"]["request"]["body"]["inputTruncated"] = True
    with pytest.raises(MalformedEventError) as info:
        parse_event(event)
    assert info.value.field == "Records[0].cf.request.body.inputTruncated"
    assert "truncated" in str(info.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"encoding": "gzip"}, "Records[0].cf.request.body.encoding"),
        ({"data": "%%%"}, "Records[0].cf.request.body.data"),
        ({"data": 5}, "Records[0].cf.request.body.data"),
    ],
)
def test_edge_bad_body_fields_are_named(change: dict[str, Any], field: str) -> None:
    event = build_event("lambda-at-edge", method="POST", path="/", body=b"hello")
    event["Records"][0]["cf"]["request"]["body"].update(change)
    with pytest.raises(MalformedEventError) as info:
        parse_event(event)
    assert info.value.field == field


def test_edge_text_body_and_bad_headers() -> None:
    event = build_event("lambda-at-edge", method="POST", path="/", body=b"")
    request = event["Records"][0]["cf"]["request"]
    request["body"] = {
        "action": "read-only",
        "data": "caf\u00e9",
        "encoding": "text",
        "inputTruncated": False,
    }
    assert parse_event(event).body == "caf\u00e9".encode()
    request["headers"]["x-bad"] = {"key": "X-Bad", "value": "1"}
    with pytest.raises(MalformedEventError) as info:
        parse_event(event)
    assert info.value.field == "Records[0].cf.request.headers.x-bad"
    request["headers"]["x-bad"] = [{"key": "X-Bad", "value": 1}]
    with pytest.raises(MalformedEventError) as info:
        parse_event(event)
    assert info.value.field == "Records[0].cf.request.headers.x-bad"


def test_edge_response_event_is_still_described() -> None:
    # An S3 batch in Records is not Lambda@Edge: the description names its source.
    with pytest.raises(UnsupportedEventError, match="aws:s3"):
        parse_event({"Records": [{"eventSource": "aws:s3", "s3": {}}]})


def test_lattice_values_of_the_wrong_type_are_named() -> None:
    event = build_event("vpc-lattice", method="GET", path="/")
    event["headers"]["x-n"] = [1]
    with pytest.raises(MalformedEventError) as info:
        parse_event(event)
    assert info.value.field == "headers.x-n"
    event = build_event("vpc-lattice", method="GET", path="/", query_string="a=1")
    event["queryStringParameters"] = {"a": {"b": 1}}
    with pytest.raises(MalformedEventError) as info:
        parse_event(event)
    assert info.value.field == "queryStringParameters.a"
