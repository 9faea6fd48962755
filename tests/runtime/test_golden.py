"""Our streaming POST against the Node.js runtime client's captures (golden/README.md).

Each golden handler is re-done as an ASGI app and run through the real loop against the fake Runtime API;
both requests go through the same strict parser and are compared after de-chunking and decoding: the same
request line, the required headers, the same prelude object, exactly 8 NULs, the same payload and the same
trailer names, with a base64 JSON error body. Where the README says "do better" (d, g), the better
behaviour is asserted.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import anyio
import pytest

from lambda_asgi_stream._types import ASGIApp

from .fake_api import DELIMITER, GOLDEN_REQUEST_ID, FakeRuntimeAPI, RawRequest, decode_streamed, parse_raw
from .helpers import PRELUDE_TYPE, body, http_event, run_loop, start

GOLDEN = Path(__file__).parent / "golden"
CASES = ["a_basic", "b_timed", "c_midstream_error", "d_prestream_error", "g_empty_metadata", "h_binary"]
TRAILERS = {"lambda-runtime-function-error-type", "lambda-runtime-function-error-body"}


def golden(name: str) -> RawRequest:
    return parse_raw((GOLDEN / f"{name}.request.raw").read_bytes())


async def serve_one(app: ASGIApp, api: FakeRuntimeAPI) -> RawRequest:
    invocation = api.add(http_event("/"), request_id=GOLDEN_REQUEST_ID)
    await run_loop(app, api)
    return api.response(invocation)


def assert_streaming_head(ours: RawRequest, node: RawRequest, api: FakeRuntimeAPI) -> None:
    assert ours.complete and ours.chunked
    assert (ours.method, ours.target) == (node.method, node.target)
    for name in ("Lambda-Runtime-Function-Response-Mode", "Transfer-Encoding"):
        assert ours.header(name) == node.header(name), name
    assert ours.header("Lambda-Runtime-Function-Response-Mode") == "streaming"
    assert ours.header("Transfer-Encoding") == "chunked"
    assert ours.header("Content-Type") == PRELUDE_TYPE
    assert ours.declared_trailers() == node.declared_trailers() == TRAILERS
    assert ours.header("Host") == api.address
    assert ours.header("Content-Length") is None


def assert_error_trailers(ours: RawRequest, node: RawRequest, exc: BaseException) -> None:
    assert {k.lower() for k, _ in ours.trailers} == {k.lower() for k, _ in node.trailers} == TRAILERS
    mine, theirs = decode_streamed(ours), decode_streamed(node)
    assert mine.error is not None and theirs.error is not None
    assert mine.error["errorMessage"] == theirs.error["errorMessage"] == str(exc)
    assert isinstance(mine.error["errorType"], str) and mine.error["errorType"]
    # README: prefer a `Function.` name, letters only (Lambda Managed Instances' rule).
    assert mine.error_type == f"Function.{type(exc).__name__}"
    assert re.fullmatch(r"Function\.[A-Z][a-zA-Z]+", mine.error_type)
    raw = ours.trailer("Lambda-Runtime-Function-Error-Body") or ""
    assert base64.b64encode(base64.b64decode(raw, validate=True)).decode() == raw  # standard, padded


@pytest.mark.parametrize("name", CASES)
def test_golden_captures_parse_strictly(name: str) -> None:
    """The strict parser accepts what Node sent, so it can judge our requests by the same rules."""
    node = golden(name)
    assert node.complete and node.chunked
    assert node.target == f"/2018-06-01/runtime/invocation/{GOLDEN_REQUEST_ID}/response"
    assert node.declared_trailers() == TRAILERS


@pytest.mark.anyio
async def test_a_basic(api: FakeRuntimeAPI) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [("content-type", "text/plain"), ("x-a", "b"), ("set-cookie", "a=1; Path=/")]
        await send(start(201, [*headers, ("set-cookie", "b=2")]))
        await send(body(b"Hello", more=True))
        await send(body(b" world", more=True))
        await send(body())

    ours, node = await serve_one(app, api), golden("a_basic")
    assert_streaming_head(ours, node, api)
    mine, theirs = decode_streamed(ours), decode_streamed(node)
    assert theirs.prelude == {
        "statusCode": 201,
        "headers": {"content-type": "text/plain", "x-a": "b"},
        "cookies": ["a=1; Path=/", "b=2"],
    }
    assert mine.prelude == theirs.prelude
    assert mine.payload == theirs.payload == b"Hello world"
    end = ours.body.index(DELIMITER)
    assert json.loads(ours.body[:end]) == theirs.prelude
    assert ours.body[end:] == DELIMITER + b"Hello world"  # exactly 8 NULs between prelude and payload
    assert ours.trailers == node.trailers == []


@pytest.mark.anyio
async def test_b_timed_each_write_leaves_at_once(api: FakeRuntimeAPI) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(200, [("content-type", "text/plain")]))
        await send(body(b"chunk-1", more=True))
        # Node waits 200 ms; we wait until the fake Runtime API has received chunk-1 (order, not time).
        await anyio.to_thread.run_sync(api.wait_for_payload, GOLDEN_REQUEST_ID, b"chunk-1")
        api.note("app", "writes chunk-2")
        await send(body(b"chunk-2", more=True))
        await send(body())

    ours, node = await serve_one(app, api), golden("b_timed")
    assert_streaming_head(ours, node, api)
    mine, theirs = decode_streamed(ours), decode_streamed(node)
    assert mine.prelude == theirs.prelude == {"statusCode": 200, "headers": {"content-type": "text/plain"}}
    assert mine.payload == theirs.payload == b"chunk-1chunk-2"
    assert ours.trailers == node.trailers == []
    chunks = [(i, e[2]) for i, e in enumerate(api.log) if e[0] == "chunk"]
    first = next(i for i, data in chunks if b"chunk-1" in data)
    second = next(i for i, data in chunks if b"chunk-2" in data)
    assert first < api.index(("app", "writes chunk-2")) < second


@pytest.mark.anyio
async def test_c_midstream_error(api: FakeRuntimeAPI) -> None:
    boom = RuntimeError("boom")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(200, [("content-type", "text/plain")]))
        await send(body(b"partial", more=True))
        raise boom

    ours, node = await serve_one(app, api), golden("c_midstream_error")
    assert_streaming_head(ours, node, api)
    mine, theirs = decode_streamed(ours), decode_streamed(node)
    assert mine.prelude == theirs.prelude == {"statusCode": 200, "headers": {"content-type": "text/plain"}}
    assert mine.payload == theirs.payload == b"partial"  # bytes already sent stay
    assert_error_trailers(ours, node, boom)
    assert theirs.error_type == "Error"  # Node sends the bare JS name; we send a Function. name


@pytest.mark.anyio
async def test_d_prestream_error_sends_500_prelude_then_trailers(api: FakeRuntimeAPI) -> None:
    boom = RuntimeError("boom")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise boom

    ours, node = await serve_one(app, api), golden("d_prestream_error")
    # Node: no prelude at all (octet-stream, empty body). Do better: a 500 prelude, then the trailers.
    assert node.header("Content-Type") == "application/octet-stream" and node.body == b""
    assert_streaming_head(ours, node, api)
    mine = decode_streamed(ours)
    assert mine.prelude is not None and mine.prelude["statusCode"] == 500
    assert mine.prelude["headers"]["content-type"].startswith("text/plain")
    assert mine.payload == b"Internal Server Error"
    assert_error_trailers(ours, node, boom)


@pytest.mark.anyio
async def test_g_empty_body_still_sends_prelude_and_delimiter(api: FakeRuntimeAPI) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(204, [("x-empty", "1")]))
        await send(body())

    ours, node = await serve_one(app, api), golden("g_empty_metadata")
    assert node.body == b""  # Node's known bug: status and headers lost
    assert_streaming_head(ours, node, api)
    expected = {"statusCode": 204, "headers": {"x-empty": "1"}}  # g_empty_metadata.handler.js
    mine = decode_streamed(ours)
    assert mine.prelude == expected
    assert ours.body.endswith(DELIMITER) and mine.payload == b""
    assert ours.trailers == node.trailers == []


@pytest.mark.anyio
async def test_h_binary_body_is_raw_bytes(api: FakeRuntimeAPI) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(200, [("content-type", "application/octet-stream")]))
        await send(body(bytes(range(256)), more=True))
        await send(body())

    ours, node = await serve_one(app, api), golden("h_binary")
    assert_streaming_head(ours, node, api)
    mine, theirs = decode_streamed(ours), decode_streamed(node)
    assert (
        mine.prelude
        == theirs.prelude
        == {
            "statusCode": 200,
            "headers": {"content-type": "application/octet-stream"},
        }
    )
    assert mine.payload == theirs.payload == bytes(range(256))  # never base64 in streaming mode
    assert ours.trailers == node.trailers == []
