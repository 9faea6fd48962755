"""The invocation client helpers over boto3's real ``EventStream``, raw bytes, and async iterables.

The end-to-end run (boto3 against the emulator over HTTP) is in tests/emulator/test_invoke_api.py; here
each way a stream can end is built byte by byte.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from botocore.response import StreamingBody

from lambda_asgi_stream import client
from lambda_asgi_stream._errors import IncompleteStreamError, InvocationError, LambdaAsgiStreamError
from lambda_asgi_stream.client import (
    astream_response,
    invoke_payload,
    invoke_response,
    stream_response,
)
from lambda_asgi_stream.encoder import DELIMITER
from lambda_asgi_stream.eventstream import encode_message, invoke_complete, payload_chunk

from .botocore_streams import lambda_event_stream

PRELUDE = b'{"statusCode":201,"headers":{"content-type":"text/plain","x-a":"1"},"cookies":["a=1; Path=/"]}'


def _wire(*chunks: bytes, complete: bytes | None = None) -> list[bytes]:
    """One PayloadChunk message per chunk, then InvokeComplete (success unless given)."""
    messages = [payload_chunk(c) for c in chunks]
    return [*messages, invoke_complete() if complete is None else complete]


def _sources(pieces: list[bytes]) -> dict[str, Any]:
    """The same bytes as each kind of source the sync helper reads."""
    joined = b"".join(pieces)
    return {
        "boto3-response": {"StatusCode": 200, "EventStream": lambda_event_stream(pieces)},
        "boto3-event-stream": lambda_event_stream(pieces),
        "raw-messages": list(pieces),
        "raw-bytes-odd-splits": [joined[i : i + 7] for i in range(0, len(joined), 7)],
    }


SOURCE_KINDS = list(_sources([]))


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_success_gives_status_headers_cookies_and_body(kind: str) -> None:
    # The prelude is split across two chunks and shares the second with the body, as writes can.
    pieces = _wire(PRELUDE[:10], PRELUDE[10:] + DELIMITER + b"hello ", b"", b"world")
    with stream_response(_sources(pieces)[kind]) as r:
        assert r.status == 201
        assert r.headers == [("content-type", "text/plain"), ("x-a", "1")]
        assert r.cookies == ["a=1; Path=/"]
        assert r.read() == b"hello world"
        assert r.log_result is None


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_mid_stream_failure_raises_after_the_last_chunk(kind: str) -> None:
    log = base64.b64encode(b"the log").decode()
    complete = invoke_complete("Function.RuntimeError", "boom", log)
    pieces = _wire(PRELUDE + DELIMITER + b"part 1", b"part 2", complete=complete)
    r = stream_response(_sources(pieces)[kind])
    received = []
    with pytest.raises(InvocationError) as caught:
        for chunk in r.iter_bytes():
            received.append(chunk)
    assert b"".join(received) == b"part 1part 2"  # everything that arrived, then the error
    assert caught.value.error_code == "Function.RuntimeError"
    assert caught.value.error_details == "boom"
    assert caught.value.log_result == log
    assert str(caught.value) == "Function.RuntimeError: boom"
    assert r.log_result == log


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_failure_before_the_prelude_raises_at_once(kind: str) -> None:
    pieces = [invoke_complete("Function.ValueError", "early")]
    with pytest.raises(InvocationError, match=r"Function\.ValueError: early"):
        stream_response(_sources(pieces)[kind])


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_a_stream_without_invoke_complete_is_never_complete(kind: str) -> None:
    pieces = [payload_chunk(PRELUDE + DELIMITER + b"looks"), payload_chunk(b" finished")]
    r = stream_response(_sources(pieces)[kind])
    with pytest.raises(IncompleteStreamError, match="without its InvokeComplete event") as caught:
        r.read()
    assert isinstance(caught.value, InvocationError)  # one except clause catches every failed invocation


def test_a_stream_cut_inside_a_message_says_so() -> None:
    whole = payload_chunk(PRELUDE + DELIMITER) + payload_chunk(b"body")
    r = stream_response([whole[:-3]])
    with pytest.raises(IncompleteStreamError, match="bytes of an unfinished message"):
        r.read()


def test_a_stream_that_ends_before_the_prelude() -> None:
    with pytest.raises(IncompleteStreamError):
        stream_response([payload_chunk(PRELUDE)])
    with pytest.raises(LambdaAsgiStreamError, match="not an HTTP response"):
        stream_response(_wire(b'{"not": "an http response"}'))


def test_error_events_raise_invocation_error() -> None:
    unmodeled = encode_message(
        {":message-type": "error", ":error-code": "ServiceException", ":error-message": "oops"}
    )
    with pytest.raises(InvocationError, match="ServiceException: oops"):
        stream_response([unmodeled])
    modeled = encode_message(
        {":message-type": "exception", ":exception-type": "TooManyRequestsException"},
        b'{"message":"slow down"}',
    )
    with pytest.raises(InvocationError, match="TooManyRequestsException: slow down"):
        stream_response([payload_chunk(PRELUDE + DELIMITER), modeled]).read()


def test_data_after_invoke_complete_is_an_error() -> None:
    with pytest.raises(LambdaAsgiStreamError, match="after the InvokeComplete"):
        stream_response([*_wire(PRELUDE + DELIMITER), payload_chunk(b"late")]).read()


def test_chunks_are_handed_over_as_they_arrive() -> None:
    """Chunk n reaches the caller before the source is asked for chunk n + 1."""
    handed: list[bytes] = []

    def source() -> Iterator[bytes]:
        yield payload_chunk(PRELUDE + DELIMITER)
        yield payload_chunk(b"one")
        assert handed == [b"one"]
        yield payload_chunk(b"two")
        assert handed == [b"one", b"two"]
        yield invoke_complete()

    for chunk in stream_response(source()):
        handed.append(chunk)
    assert handed == [b"one", b"two"]


def test_closing_closes_boto3_stream() -> None:
    closed: list[bool] = []
    stream = lambda_event_stream(_wire(PRELUDE + DELIMITER), on_close=lambda: closed.append(True))
    with stream_response(stream):
        pass
    assert closed == [True]


def test_public_names_exist() -> None:
    for name in client.__all__:
        assert hasattr(client, name), name


# --- async ----------------------------------------------------------------------------------------------


async def _agen(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        await asyncio.sleep(0)
        yield item


class _AioEventStream:
    """aiobotocore's EventStream, as far as the helper uses it: async iteration of parsed events."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.closed = False

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return _agen(self.events)

    async def close(self) -> None:
        self.closed = True


def test_async_sources() -> None:
    pieces = _wire(PRELUDE + DELIMITER + b"a", b"b", complete=invoke_complete("Function.X", "bad"))
    parsed = list(lambda_event_stream(pieces))  # the dicts aiobotocore yields too

    async def main() -> None:
        for source in (_agen(pieces), _AioEventStream(parsed), {"EventStream": _AioEventStream(parsed)}):
            async with await astream_response(source) as r:
                assert (r.status, r.cookies) == (201, ["a=1; Path=/"])
                got = []
                with pytest.raises(InvocationError, match=r"Function\.X: bad"):
                    async for chunk in r:
                        got.append(chunk)
                assert got == [b"a", b"b"]
        ok = _AioEventStream(list(lambda_event_stream(_wire(PRELUDE + DELIMITER + b"fine"))))
        async with await astream_response(ok) as r:
            assert await r.aread() == b"fine"
        assert ok.closed
        with pytest.raises(IncompleteStreamError):
            await (await astream_response(_agen(pieces[:-1]))).aread()
        with pytest.raises(TypeError, match="use stream_response"):
            await astream_response(pieces)

    asyncio.run(main())


# --- buffered Invoke --------------------------------------------------------------------------------------


def _invoke(payload: bytes, **extra: Any) -> dict[str, Any]:
    body = StreamingBody(io.BytesIO(payload), len(payload))
    return {"StatusCode": 200, "Payload": body, **extra}


def test_invoke_payload() -> None:
    assert invoke_payload(_invoke(b'{"a": [1, 2]}')) == {"a": [1, 2]}
    assert invoke_payload({"StatusCode": 202, "Payload": b""}) is None
    error = {"errorMessage": "bad thing", "errorType": "ValueError", "stackTrace": []}
    with pytest.raises(InvocationError) as caught:
        invoke_payload(_invoke(json.dumps(error).encode(), FunctionError="Unhandled", LogResult="bG9n"))
    assert (caught.value.error_code, caught.value.error_details) == ("Unhandled", "bad thing")
    assert caught.value.error_object == error
    assert caught.value.log_result == "bG9n"
    with pytest.raises(InvocationError, match="Unhandled: not json"):
        invoke_payload(_invoke(b"not json", FunctionError="Unhandled"))
    with pytest.raises(LambdaAsgiStreamError, match="see invoke_response"):
        invoke_payload(_invoke(PRELUDE + DELIMITER + b"body"))


def test_invoke_response_reads_buffered_and_streamed_payloads() -> None:
    buffered = {
        "statusCode": 200,
        "headers": {"content-type": "text/plain"},
        "cookies": ["a=1"],
        "body": base64.b64encode(b"\xffbin").decode(),
        "isBase64Encoded": True,
    }
    r = invoke_response(_invoke(json.dumps(buffered).encode()))
    assert (r.status, r.headers, r.cookies, r.body) == (
        200,
        [("content-type", "text/plain")],
        ["a=1"],
        b"\xffbin",
    )
    r = invoke_response(_invoke(PRELUDE + DELIMITER + b"streamed"))
    assert (r.status, r.cookies, r.body) == (201, ["a=1; Path=/"], b"streamed")
    with pytest.raises(InvocationError, match="Unhandled: x"):
        invoke_response(_invoke(b'{"errorMessage": "x"}', FunctionError="Unhandled"))
