"""The fake Runtime API's own parser is strict, so the loop's framing is judged independently of h11."""

from __future__ import annotations

import pytest

from .fake_api import ProtocolViolation, decode_streamed, parse_raw

HEAD = (
    b"POST /2018-06-01/runtime/invocation/x/response HTTP/1.1\r\n"
    b"Content-Type: application/vnd.awslambda.http-integration-response\r\n"
    b"Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
PRELUDE = b'{"statusCode":200}' + b"\x00" * 8


def test_a_well_framed_request_decodes() -> None:
    raw = (
        HEAD + b"1a\r\n" + PRELUDE + b"\r\n2\r\nhi\r\n0\r\nLambda-Runtime-Function-Error-Type: Function.X\r\n"
    )
    raw += b"Lambda-Runtime-Function-Error-Body: eyJlcnJvck1lc3NhZ2UiOiJ4In0=\r\n\r\n"
    request = parse_raw(raw)
    assert request.chunks == [PRELUDE, b"hi"] and request.raw == raw
    assert request.declared_trailers() == {
        "lambda-runtime-function-error-type",
        "lambda-runtime-function-error-body",
    }
    out = decode_streamed(request)
    assert (out.prelude, out.payload, out.error_type, out.error) == (
        {"statusCode": 200},
        b"hi",
        "Function.X",
        {"errorMessage": "x"},
    )


@pytest.mark.parametrize(
    "raw",
    [
        HEAD.replace(b"HTTP/1.1", b"HTTP/1.0") + b"0\r\n\r\n",  # not HTTP/1.1
        HEAD.replace(b"\r\n\r\n", b"\n\r\n") + b"0\r\n\r\n",  # bare LF in the head
        HEAD.replace(b"Trailer:", b" Trailer:") + b"0\r\n\r\n",  # folded line
        HEAD.replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\n") + b"0\r\n\r\n",  # two framings
        HEAD + b"2;ext=1\r\nhi\r\n0\r\n\r\n",  # chunk extension
        HEAD + b" 2\r\nhi\r\n0\r\n\r\n",  # space before the size
        HEAD + b"zz\r\nhi\r\n0\r\n\r\n",  # not hex
        HEAD + b"2\r\nhiX\r\n0\r\n\r\n",  # data longer than announced
        HEAD + b"2\r\nhi\r\n0\r\n",  # no blank line after the last chunk
        HEAD + b"2\r\nhi\r\n0\r\nBad Trailer\r\n\r\n",  # malformed trailer
        HEAD + b"2\r\nhi\r\n0\r\n\r\nextra",  # bytes after the request
    ],
)
def test_framing_errors_are_caught(raw: bytes) -> None:
    with pytest.raises((ProtocolViolation, EOFError)):
        parse_raw(raw)
