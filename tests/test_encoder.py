"""The encoder, both directions from one table (h11's test_io habit): prelude bytes and back."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from lambda_asgi_stream import PreludeTooLargeError, ResponseTooLargeError
from lambda_asgi_stream.encoder import (
    DELIMITER,
    MAX_PRELUDE_BYTES,
    PreludeDecoder,
    buffered_response,
    build_prelude,
    decode_stream,
    error_trailers,
    function_error_type,
    read_error_trailers,
)

H = list[tuple[bytes, bytes]]

# (id, integration, status, headers, expected prelude object)
PRELUDE_CASES: list[tuple[str, str, int, H, dict[str, Any]]] = [
    (
        "golden a_basic",
        "function-url",
        201,
        [
            (b"content-type", b"text/plain"),
            (b"x-a", b"b"),
            (b"set-cookie", b"a=1; Path=/"),
            (b"set-cookie", b"b=2"),
        ],
        {
            "statusCode": 201,
            "headers": {"content-type": "text/plain", "x-a": "b"},
            "cookies": ["a=1; Path=/", "b=2"],
        },
    ),
    (
        "names lower-cased, repeats comma-joined for URLs",
        "function-url",
        200,
        [(b"X-Multi", b"1"), (b"x-multi", b"2"), (b"Vary", b"accept")],
        {"statusCode": 200, "headers": {"x-multi": "1, 2", "vary": "accept"}},
    ),
    (
        "REST streaming uses multiValueHeaders for repeats",
        "rest",
        200,
        [(b"x-multi", b"1"), (b"x-multi", b"2"), (b"vary", b"accept"), (b"set-cookie", b"a=1")],
        {
            "statusCode": 200,
            "headers": {"vary": "accept"},
            "multiValueHeaders": {"x-multi": ["1", "2"]},
            "cookies": ["a=1"],
        },
    ),
    (
        "hop-by-hop and content-length dropped, and fields named by Connection",
        "function-url",
        200,
        [
            (b"content-length", b"5"),
            (b"transfer-encoding", b"chunked"),
            (b"connection", b"keep-alive, x-private"),
            (b"x-private", b"secret"),
            (b"keep-alive", b"timeout=5"),
            (b"upgrade", b"h2c"),
            (b"content-type", b"text/html"),
        ],
        {"statusCode": 200, "headers": {"content-type": "text/html"}},
    ),
    (
        "cookie with Expires keeps its comma",
        "function-url",
        302,
        [(b"location", b"/x"), (b"set-cookie", b"s=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT")],
        {
            "statusCode": 302,
            "headers": {"location": "/x"},
            "cookies": ["s=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT"],
        },
    ),
    ("no headers at all", "function-url", 204, [], {"statusCode": 204, "headers": {}}),
    (
        "latin-1 header value survives",
        "function-url",
        200,
        [(b"x-name", "café".encode("latin-1"))],
        {"statusCode": 200, "headers": {"x-name": "café"}},
    ),
]


@pytest.mark.parametrize(
    ("integration", "status", "headers", "expected"),
    [c[1:] for c in PRELUDE_CASES],
    ids=[c[0] for c in PRELUDE_CASES],
)
def test_prelude_encodes_and_decodes(
    integration: Any, status: int, headers: H, expected: dict[str, Any]
) -> None:
    wire = build_prelude(status, headers, integration)
    assert wire.endswith(DELIMITER)
    assert b"\x00" not in wire[: -len(DELIMITER)]
    assert json.loads(wire[: -len(DELIMITER)]) == expected

    prelude, body = decode_stream(wire + b"payload\x00\x00\x00\x00\x00\x00\x00\x00tail")
    assert body == b"payload" + DELIMITER + b"tail"  # only the first delimiter counts
    assert prelude.status == status
    assert prelude.cookies == expected.get("cookies", [])
    flat = sorted((name, value) for name, value in prelude.headers)
    want = sorted(
        [(k, v) for k, v in expected["headers"].items()]
        + [(k, v) for k, vs in expected.get("multiValueHeaders", {}).items() for v in vs]
    )
    assert flat == want


def test_decoder_is_incremental_byte_by_byte() -> None:
    wire = build_prelude(200, [(b"content-type", b"text/plain")], "function-url") + b"hello"
    decoder = PreludeDecoder()
    body = b"".join(decoder.feed(wire[i : i + 1]) for i in range(len(wire)))
    assert decoder.prelude is not None and decoder.prelude.status == 200
    assert body == b"hello"


def test_decoder_rejects_a_stream_with_no_delimiter_in_16_kib() -> None:
    decoder = PreludeDecoder()
    with pytest.raises(PreludeTooLargeError):
        decoder.feed(b"{" + b" " * MAX_PRELUDE_BYTES)


def test_prelude_over_16_kib_is_a_clear_error() -> None:
    cookies = [(b"set-cookie", b"c%d=%s" % (i, b"x" * 400)) for i in range(45)]
    with pytest.raises(PreludeTooLargeError, match="set-cookie"):
        build_prelude(200, cookies, "function-url")


def test_prelude_just_under_the_limit_is_fine() -> None:
    base = len(build_prelude(200, [(b"x", b"")], "function-url"))
    wire = build_prelude(200, [(b"x", b"y" * (MAX_PRELUDE_BYTES - base))], "function-url")
    assert len(wire) == MAX_PRELUDE_BYTES


class WeirdError_2(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ValueError("x"), "Function.ValueError"),
        (WeirdError_2("x"), "Function.WeirdError"),
        (PreludeTooLargeError("x"), "Function.PreludeTooLarge"),
        (type("lower", (Exception,), {})("x"), "Function.Lower"),
        (type("_", (Exception,), {})("x"), "Function.Unhandled"),
    ],
)
def test_error_type_matches_lambda_managed_instances_rule(exc: BaseException, expected: str) -> None:
    assert function_error_type(exc) == expected


def test_error_trailers_round_trip() -> None:
    try:
        raise ValueError("boom\r\nInjected: header")
    except ValueError as exc:
        trailers = error_trailers(exc)
    names = [name for name, _ in trailers]
    assert names == [b"Lambda-Runtime-Function-Error-Type", b"Lambda-Runtime-Function-Error-Body"]
    assert all(b"\r" not in v and b"\n" not in v for _, v in trailers)
    body = json.loads(base64.b64decode(trailers[1][1], validate=True))
    assert body["errorMessage"] == "boom\r\nInjected: header"
    assert body["errorType"] == "ValueError"
    assert any("raise ValueError" in line for line in body["stackTrace"])
    assert read_error_trailers(trailers) == ("Function.ValueError", body)
    assert read_error_trailers([]) is None


def _buffered(headers: H, body: bytes, integration: Any, multi: bool = False) -> dict[str, Any]:
    return buffered_response(200, headers, body, integration, multi_value_headers=multi)


def test_buffered_v2_has_cookies_and_joined_headers() -> None:
    out = _buffered(
        [
            (b"content-type", b"text/plain"),
            (b"x-a", b"1"),
            (b"x-a", b"2"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
        ],
        b"hi",
        "function-url",
    )
    assert out == {
        "statusCode": 200,
        "headers": {"content-type": "text/plain", "x-a": "1,2"},
        "cookies": ["a=1", "b=2"],
        "body": "hi",
        "isBase64Encoded": False,
    }


def test_buffered_rest_uses_multi_value_headers_and_never_cookies() -> None:
    out = _buffered(
        [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"content-type", b"application/json")],
        b"{}",
        "rest",
        True,
    )
    assert "cookies" not in out  # a `cookies` key in a REST response is a 502 (lessons.md 3.5)
    assert out["multiValueHeaders"] == {"set-cookie": ["a=1", "b=2"]}
    assert out["headers"] == {"content-type": "application/json"}


def test_buffered_alb_single_value_spells_repeated_cookies_differently() -> None:
    out = _buffered([(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"set-cookie", b"c=3")], b"", "alb")
    assert sorted(out["headers"].values()) == ["a=1", "b=2", "c=3"]
    assert len({k.lower() for k in out["headers"]}) == 1 and len(out["headers"]) == 3
    assert out["statusDescription"] == "200 OK"


def test_buffered_alb_multi_value() -> None:
    out = _buffered([(b"set-cookie", b"a=1"), (b"x", b"y")], b"", "alb", True)
    assert out["multiValueHeaders"] == {"set-cookie": ["a=1"], "x": ["y"]}
    assert "headers" not in out


@pytest.mark.parametrize(
    ("content_type", "body", "is_base64"),
    [
        (b"text/html; charset=utf-8", "héllo".encode(), False),
        (b"application/json", b'{"a":1}', False),
        (b"image/png", b"\x89PNG\r\n", True),
        (b"text/plain", b"\xff\xfe", True),  # not UTF-8: base64 rather than mangle it
        (b"application/octet-stream", bytes(range(256)), True),
    ],
)
def test_buffered_body_base64_only_when_binary(content_type: bytes, body: bytes, is_base64: bool) -> None:
    out = _buffered([(b"content-type", content_type)], body, "function-url")
    assert out["isBase64Encoded"] is is_base64
    decoded = base64.b64decode(out["body"]) if is_base64 else out["body"].encode()
    assert decoded == body


def test_buffered_gzip_text_is_base64() -> None:
    out = _buffered(
        [(b"content-type", b"text/plain"), (b"content-encoding", b"gzip")], b"\x1f\x8b...", "function-url"
    )
    assert out["isBase64Encoded"] is True


def test_buffered_over_6_mb_is_a_clear_error() -> None:
    with pytest.raises(ResponseTooLargeError, match="RESPONSE_STREAM"):
        _buffered([(b"content-type", b"text/plain")], b"x" * (6 * 1024 * 1024 + 1), "function-url")
