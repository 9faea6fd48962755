"""Edges of the padded streaming responder: a flush after the response's end, failures of a response to
HEAD, a timer that falls due while an explicit flush writes. Real cycle and responder, recording writer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lambda_asgi_stream._types import Receive, Scope, Send
from lambda_asgi_stream.cycle import HTTPCycle, PaddedStreamingResponder, PlainWriter
from lambda_asgi_stream.padding import PaddingPolicy, flush
from lambda_asgi_stream.sse import HEARTBEAT, SSEOptions

THRESHOLD = 1000


class Recorder(PlainWriter):
    """Records every write, and whether it came after the stream was closed."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.after_close: list[bytes] = []
        self.closed = False
        self.trailers: list[Any] | None = None

    async def write(self, data: bytes) -> None:
        (self.after_close if self.closed else self.writes).append(data)

    async def close(self, trailers: list[Any]) -> None:
        self.closed = True
        self.trailers = trailers


def start(content_type: bytes, *extra: tuple[bytes, bytes]) -> dict[str, Any]:
    return {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", content_type), *extra],
    }


def body(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content_type", "last", "heartbeat"),
    [
        (b"text/html", b"<p>x</p>", 20.0),
        (b"application/x-ndjson", b'{"a": 1}\n', 20.0),
        (b"text/event-stream", b"data: 1\n\n", 0.0),  # SSE without heartbeats: not watched either
    ],
)
async def test_a_flush_after_the_last_body_writes_nothing_after_the_end(
    content_type: bytes, last: bytes, heartbeat: float
) -> None:
    # Explicit mode (or any response the timer does not watch): an app that flushes after each send, the
    # last one included, must get nothing written after the end (on the wire: bytes after the last chunk).
    writer = Recorder()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(content_type))
        await send(body(last))
        await flush(scope)  # e.g. a helper that flushes after every send

    policy = PaddingPolicy(mode="explicit", threshold=THRESHOLD)
    responder = PaddedStreamingResponder(writer, "function-url", policy, SSEOptions(heartbeat_s=heartbeat))
    result = await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(app)
    assert result.end == "complete"
    assert writer.after_close == [], f"{sum(map(len, writer.after_close))} bytes written after the end"


@pytest.mark.anyio
async def test_a_head_response_failing_after_start_gets_no_sse_error_event() -> None:
    # RFC 9110 9.3.2: a response to HEAD has no content. The cycle drops the app's body bytes; the opt-in
    # SSE error event must not add any either (the failure is in the trailers).
    writer = Recorder()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(b"text/event-stream"))
        await send(body(b"data: 1\n\n", more=True))
        raise RuntimeError("boom")

    policy = PaddingPolicy(mode="idle", threshold=THRESHOLD)
    sse = SSEOptions(error_event=True)
    responder = PaddedStreamingResponder(writer, "function-url", policy, sse, head=True)
    result = await HTTPCycle({"type": "http", "method": "HEAD", "headers": []}, b"", responder).run(app)
    assert result.end == "error"
    assert writer.trailers  # the failure is reported in the trailers
    assert writer.writes[1:] == [], f"HEAD response got a body: {writer.writes[1:]!r}"


@pytest.mark.anyio
@pytest.mark.parametrize("slow_padding", [False, True])
async def test_a_timer_that_fires_during_an_explicit_flush_is_not_lost(slow_padding: bool) -> None:
    # The timer does not re-arm while a write is in progress, leaving that to the write when it ends:
    # flush()'s padding write must do so too, or an SSE stream that flushes on a slow socket just as the
    # heartbeat falls due, then goes quiet, gets no heartbeat at all.
    class SlowPadding(Recorder):
        async def write(self, data: bytes) -> None:
            if slow_padding and data.startswith(b":") and len(data) > 100:
                await asyncio.sleep(0.12)  # the socket is full: the padding waits to be written
            await super().write(data)

    writer = SlowPadding()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(b"text/event-stream"))
        await send(body(b"data: 1\n\n", more=True))
        await asyncio.sleep(0.03)
        await flush(scope)
        await asyncio.sleep(0.4)  # quiet: waiting for the upstream's next token
        await send(body(b"data: 2\n\n"))

    policy = PaddingPolicy(mode="explicit", threshold=THRESHOLD)
    responder = PaddedStreamingResponder(writer, "function-url", policy, SSEOptions(heartbeat_s=0.05))
    result = await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(app)
    assert result.end == "complete"
    assert responder.stats.padding > 0
    assert HEARTBEAT in writer.writes, "no heartbeat in 0.4 s of silence with heartbeat_s=0.05"


@pytest.mark.anyio
async def test_a_head_response_failing_before_start_gets_no_error_body() -> None:
    # The same for the 500 a failure before the start writes: its "Internal Server Error" is no content
    # for a response to HEAD either.
    writer = Recorder()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    policy = PaddingPolicy(mode="idle", threshold=THRESHOLD)
    responder = PaddedStreamingResponder(writer, "function-url", policy, head=True)
    result = await HTTPCycle({"type": "http", "method": "HEAD", "headers": []}, b"", responder).run(app)
    assert result.end == "error" and writer.trailers
    assert writer.writes[1:] == [], f"HEAD response got a body: {writer.writes[1:]!r}"
