"""Events that are not HTTP events, or are broken, give a typed error that names what was wrong."""

from __future__ import annotations

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
