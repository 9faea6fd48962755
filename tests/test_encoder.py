"""The encoder, both directions from one table (h11's test_io habit): prelude bytes and back."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from lambda_asgi_stream import ConfigError, PreludeTooLargeError, ResponseTooLargeError
from lambda_asgi_stream._types import INTEGRATIONS
from lambda_asgi_stream.encoder import (
    DEFAULT_TEXT_MIME_TYPES,
    DELIMITER,
    MAX_PRELUDE_BYTES,
    PreludeDecoder,
    buffered_response,
    build_prelude,
    decode_buffered_response,
    decode_stream,
    error_payload,
    error_trailers,
    function_error_type,
    header_names,
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
    assert "cookies" not in out  # a `cookies` key in a REST response is a 502 (API Gateway REST answers 502)
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


APP_HEADERS: H = [
    (b"Content-Type", b"text/html; charset=utf-8"),
    (b"Server", b"uvicorn"),
    (b"X-Powered-By", b"starlette"),
    (b"Set-Cookie", b"a=1; Path=/"),
    (b"Set-Cookie", b"b=2; Expires=Wed, 21 Oct 2026 07:28:00 GMT"),
    (b"Vary", b"accept"),
    (b"Vary", b"cookie"),
]


def test_buffered_lambda_at_edge_is_what_cloudfront_takes() -> None:
    out = buffered_response(201, APP_HEADERS, b"<p>hi</p>", "lambda-at-edge", multi_value_headers=True)
    assert out == {
        "status": "201",  # CloudFront wants a string
        "statusDescription": "Created",
        "headers": {
            "content-type": [{"key": "content-type", "value": "text/html; charset=utf-8"}],
            "server": [{"key": "server", "value": "uvicorn"}],
            "x-powered-by": [{"key": "x-powered-by", "value": "starlette"}],
            "set-cookie": [
                {"key": "set-cookie", "value": "a=1; Path=/"},
                {"key": "set-cookie", "value": "b=2; Expires=Wed, 21 Oct 2026 07:28:00 GMT"},
            ],
            "vary": [{"key": "vary", "value": "accept"}, {"key": "vary", "value": "cookie"}],
        },
        "body": "<p>hi</p>",
        "bodyEncoding": "text",
    }


def test_buffered_lambda_at_edge_binary_and_empty_bodies() -> None:
    png = buffered_response(
        200, [(b"content-type", b"image/png")], b"\x89PNG", "lambda-at-edge", multi_value_headers=True
    )
    assert (png["bodyEncoding"], base64.b64decode(png["body"])) == ("base64", b"\x89PNG")
    # A 204 with a body field, even an empty one, is a 502 from CloudFront: no body field at all.
    empty = buffered_response(204, [], b"", "lambda-at-edge", multi_value_headers=True)
    assert empty == {"status": "204", "statusDescription": "No Content", "headers": {}}
    odd = buffered_response(299, [], b"", "lambda-at-edge", multi_value_headers=True)
    assert odd["statusDescription"] == "299"


def test_buffered_lambda_at_edge_drops_fields_cloudfront_refuses() -> None:
    headers = [
        (b"connection", b"close"),
        (b"keep-alive", b"timeout=5"),
        (b"upgrade", b"h2c"),
        (b"x-accel-buffering", b"no"),
        (b"x-amzn-requestid", b"1"),
        (b"x-amz-cf-id", b"2"),
        (b"x-edge-location", b"3"),
        (b"x-forwarded-proto", b"https"),
        (b"via", b"1.1 proxy"),
        (b"x-ok", b"kept"),
    ]
    out = buffered_response(200, headers, b"", "lambda-at-edge", multi_value_headers=True)
    assert list(out["headers"]) == ["x-ok"]


def test_buffered_vpc_lattice_is_one_value_per_name() -> None:
    out = buffered_response(200, APP_HEADERS, b"hi", "vpc-lattice", multi_value_headers=False)
    assert out["statusCode"] == 200 and out["statusDescription"] == "200 OK"
    assert out["body"] == "hi" and out["isBase64Encoded"] is False
    assert out["headers"]["vary"] == "accept,cookie"
    cookies = sorted(v for k, v in out["headers"].items() if k.lower() == "set-cookie")
    assert cookies == ["a=1; Path=/", "b=2; Expires=Wed, 21 Oct 2026 07:28:00 GMT"]


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_exclude_headers_drops_them_from_every_buffered_shape(integration: Any) -> None:
    multi = integration in ("rest", "lambda-at-edge")
    excluded = header_names(["server", "X-POWERED-BY", "set-cookie"])
    out = buffered_response(
        200, APP_HEADERS, b"x", integration, multi_value_headers=multi, exclude_headers=excluded
    )
    status, headers, body = decode_buffered_response(out)
    names = {name for name, _ in headers}
    assert names == {"content-type", "vary"}
    assert (status, body) == (200, b"x")
    kept = buffered_response(200, APP_HEADERS, b"x", integration, multi_value_headers=multi)
    assert {name for name, _ in decode_buffered_response(kept)[1]} == {
        "content-type",
        "server",
        "x-powered-by",
        "set-cookie",
        "vary",
    }


@pytest.mark.parametrize("integration", ["function-url", "rest"])
def test_exclude_headers_drops_them_from_the_streamed_prelude(integration: Any) -> None:
    excluded = header_names(["Server", "Set-Cookie"])
    prelude, _ = decode_stream(build_prelude(200, APP_HEADERS, integration, excluded))
    assert {name for name, _ in prelude.headers} == {"content-type", "x-powered-by", "vary"}
    assert prelude.cookies == []
    assert build_prelude(200, APP_HEADERS, integration, frozenset()) == build_prelude(
        200, APP_HEADERS, integration
    )


@pytest.mark.parametrize("bad", ["server", ["bad name"], ["x\r\ny"], [7]])
def test_header_names_refuses_what_could_never_match(bad: Any) -> None:
    with pytest.raises(ConfigError, match="exclude_headers"):
        header_names(bad)


def test_text_mime_types_replace_the_defaults() -> None:
    html = [(b"content-type", b"text/html")]
    custom = ("application/x-custom",)
    assert (
        buffered_response(200, html, b"<p>", "function-url", multi_value_headers=False)["isBase64Encoded"]
        is False
    )
    out = buffered_response(
        200, html, b"<p>", "function-url", multi_value_headers=False, text_mime_types=custom
    )
    assert out["isBase64Encoded"] is True  # text/ is no longer in the list
    mine = [(b"content-type", b"application/x-custom; v=1")]
    out = buffered_response(
        200, mine, b"ok", "function-url", multi_value_headers=False, text_mime_types=custom
    )
    assert (out["isBase64Encoded"], out["body"]) == (False, "ok")
    assert "text/" in DEFAULT_TEXT_MIME_TYPES


def test_decode_lambda_at_edge_response() -> None:
    out = buffered_response(200, APP_HEADERS, bytes(range(10)), "lambda-at-edge", multi_value_headers=True)
    status, headers, body = decode_buffered_response(out)
    assert status == 200 and body == bytes(range(10))
    assert [v for k, v in headers if k == "set-cookie"] == [
        "a=1; Path=/",
        "b=2; Expires=Wed, 21 Oct 2026 07:28:00 GMT",
    ]


class _Hostile(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception fails")

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name} for you")


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_error_reports_are_bounded_whatever_the_message() -> None:
    from lambda_asgi_stream import runtime_api
    from lambda_asgi_stream.encoder import MAX_ERROR_REPORT_BYTES

    huge = _raised(ValueError("secret " + "x" * (2 * 1024 * 1024)))
    payload = error_payload(huge)
    assert len(json.dumps(payload)) <= MAX_ERROR_REPORT_BYTES
    assert payload["errorMessage"].startswith("secret x") and payload["stackTrace"]
    name, value = error_trailers(huge)[1]
    assert len(value) <= MAX_ERROR_REPORT_BYTES * 4 // 3 + 4
    assert len(runtime_api.invocation_error("id", huge).body or b"") <= MAX_ERROR_REPORT_BYTES


def test_error_reports_keep_the_innermost_frames() -> None:
    def recurse(n: int) -> None:
        if n == 0:
            raise ValueError("deep")
        recurse(n - 1)

    try:
        recurse(200)
    except ValueError as exc:
        trace = error_payload(exc)["stackTrace"]
    assert trace[-1] == "ValueError: deep"
    assert "recurse" in trace[-3]


def test_error_reports_survive_a_hostile_exception() -> None:
    exc = _raised(_Hostile())
    payload = error_payload(exc)
    assert payload["errorType"] == "_Hostile"
    assert "str() failed" in payload["errorMessage"]
    assert error_trailers(exc)[0] == (b"Lambda-Runtime-Function-Error-Type", b"Function.Hostile")


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_the_padding_header_never_reaches_the_client(integration: Any) -> None:
    # x-lambda-padding is the app's word to the flusher: consumed in every mode, padded or not.
    headers = [(b"content-type", b"text/plain"), (b"X-Lambda-Padding", b"none")]
    buffered = buffered_response(200, headers, b"x", integration, multi_value_headers=False)
    assert "x-lambda-padding" not in json.dumps(buffered).lower()
    if integration in ("function-url", "rest"):
        assert b"x-lambda-padding" not in build_prelude(200, headers, integration).lower()


def test_the_usual_prelude_is_written_as_the_json_encoder_writes_it() -> None:
    # build_prelude writes a status with single-valued headers itself; anything else goes through the
    # encoder. Both must give the same bytes for any names and values (quotes, controls, non-ASCII).
    import random

    from lambda_asgi_stream.encoder import _compact_json, _prelude_json

    rng = random.Random(5)
    alphabet = ['"', "\\", "\n", "\x00", "\x7f", "\u00e9", "\u2028", "\U0001f600", "a", " ", "/", ";"]
    for _ in range(500):
        headers = {
            "".join(rng.choices(alphabet, k=rng.randint(0, 6))): "".join(
                rng.choices(alphabet, k=rng.randint(0, 9))
            )
            for _ in range(rng.randint(0, 4))
        }
        prelude: dict[str, Any] = {"statusCode": rng.randint(100, 999), "headers": headers}
        assert _prelude_json(prelude) == _compact_json(prelude)
        prelude["cookies"] = ["a=1"]
        assert _prelude_json(prelude) == _compact_json(prelude)


def test_prelude_is_an_immutable_value_whose_repr_leaves_the_raw_dict_out() -> None:
    # A plain class now (it was a frozen dataclass with field(repr=False) on raw): same behaviour.
    from lambda_asgi_stream.encoder import Prelude, parse_prelude

    prelude = parse_prelude(b'{"statusCode":201,"headers":{"a":"b"},"cookies":["c=d"]}')
    assert prelude == Prelude(
        201, [("a", "b")], ["c=d"], {"statusCode": 201, "headers": {"a": "b"}, "cookies": ["c=d"]}
    )
    assert prelude != Prelude(201, [("a", "b")], ["c=d"], {})
    assert repr(prelude) == "Prelude(status=201, headers=[('a', 'b')], cookies=['c=d'])"
    with pytest.raises(AttributeError):
        prelude.status = 200
