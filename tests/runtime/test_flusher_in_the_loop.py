"""The padding flusher through the runtime loop, on the fake Runtime API: flushes in and after the first
event-loop pass, failures with writes still noted, compressed event streams, a deadline with the timer
armed; each followed by another invocation on the same connection."""

from __future__ import annotations

import asyncio
import gzip
import time
from typing import Any

import pytest

from lambda_asgi_stream.padding import PaddingPolicy, flush
from lambda_asgi_stream.sse import SSEOptions

from .fake_api import FakeRuntimeAPI, decode_streamed
from .helpers import body, http_event, make_config, run_loop, start


@pytest.mark.anyio
async def test_a_flush_after_the_last_body_leaves_no_bytes_on_the_connection(api: FakeRuntimeAPI) -> None:
    # Explicit padding, HTML: the app flushes after every send, the last one included. Padding after the
    # last chunk would reach the Runtime API as the start of a next request, and break the connection.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(200, [("content-type", "text/html")]))
        await send(body(b"<p>" + scope["path"].encode() + b"</p>"))
        await flush(scope)

    first = api.add(http_event("/a"))
    second = api.add(http_event("/b"))
    config = make_config(api, padding=PaddingPolicy(mode="explicit", threshold=1000))
    await run_loop(app, api, config)  # asserts api.errors == []
    assert decode_streamed(api.response(first)).payload == b"<p>/a</p>"
    assert decode_streamed(api.response(second)).payload == b"<p>/b</p>"


def sse_events(payload: bytes) -> list[str]:
    """The data of each dispatched event (comments and padding ignored)."""
    out, data = [], []
    for line in payload.decode().split("\n"):
        if line == "":
            if data:
                out.append("\n".join(data))
            data = []
        elif line.startswith("data: "):
            data.append(line[6:])
    return out


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["extension", "message"])
async def test_a_flush_in_the_first_pass_then_a_pause(api: FakeRuntimeAPI, how: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(200, [("content-type", "text/event-stream")]))
        if how == "message":
            await send(
                {"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True, "flush": True}
            )
        else:
            await send(body(b"data: 1\n\n", more=True))
            await flush(scope)
        await send(body(b"data: 2\n\n", more=True))  # still the first pass
        await asyncio.sleep(0.05)  # the flusher's timer pushes "2" (latency 20 ms)
        await send(body(b"data: 3\n\n", more=True))
        await asyncio.sleep(0.05)
        await send(body())

    first = api.add(http_event("/a"))
    second = api.add(http_event("/b"))
    padding = PaddingPolicy(mode="idle", threshold=1000, latency_ms=20)
    await run_loop(app, api, padding=padding)
    for invocation in (first, second):
        streamed = decode_streamed(api.response(invocation))
        assert streamed.error_type is None
        assert sse_events(streamed.payload) == ["1", "2", "3"]
        assert len(streamed.payload) >= 3000  # three pushes


@pytest.mark.anyio
@pytest.mark.parametrize("half_line", [False, True])
async def test_a_failure_in_the_first_pass_with_noted_writes(api: FakeRuntimeAPI, half_line: bool) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(200, [("content-type", "text/event-stream")]))
        await send(body(b"data: 1\n\n", more=True))
        await send(body(b"data: 2\n" if half_line else b"data: 2\n\n", more=True))
        raise RuntimeError("boom")

    invocation = api.add(http_event("/a"))
    after = api.add(http_event("/b"))
    await run_loop(
        app, api, padding=PaddingPolicy(mode="idle", threshold=1000), sse=SSEOptions(error_event=True)
    )
    for inv in (invocation, after):
        streamed = decode_streamed(api.response(inv))
        assert streamed.error_type == "Function.RuntimeError"
        assert streamed.payload.startswith(b"data: 1\n\ndata: 2\n")
        assert b"event: error\n" in streamed.payload and streamed.payload.endswith(b"\n\n")


@pytest.mark.anyio
async def test_a_compressed_event_stream_gets_no_heartbeat_padding_or_error_event(
    api: FakeRuntimeAPI,
) -> None:
    data = gzip.compress(b"data: 1\n\n")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [
            ("content-type", "text/event-stream"),
            ("Content-Encoding", "gzip"),
            ("x-lambda-padding", "idle"),
        ]
        await send(start(200, headers))
        await send(body(data, more=True))
        await asyncio.sleep(0.1)
        raise RuntimeError("boom")

    invocation = api.add(http_event("/a"))
    await run_loop(
        app,
        api,
        padding=PaddingPolicy(mode="idle", threshold=1000, latency_ms=20),
        sse=SSEOptions(heartbeat_s=0.02, error_event=True),
    )
    streamed = decode_streamed(api.response(invocation))
    assert streamed.payload == data
    assert streamed.prelude is not None and "x-lambda-padding" not in {
        k.lower() for k in streamed.prelude["headers"]
    }


@pytest.mark.anyio
@pytest.mark.parametrize("blocks", [False, True])
async def test_a_deadline_with_the_flusher_armed_leaves_nothing_for_the_next_invocation(
    api: FakeRuntimeAPI, blocks: bool
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(200, [("content-type", "text/event-stream")]))
        await send(body(b"data: " + scope["path"].encode() + b"\n\n", more=True))
        if scope["path"] == "/slow":
            if blocks:  # never yields: stopped by its next send
                time.sleep(0.4)  # noqa: ASYNC251
                await send(body(b"data: late\n\n", more=True))
            await asyncio.sleep(10)
        await asyncio.sleep(0.15)
        await send(body(b"data: end\n\n"))

    slow = api.add(http_event("/slow"), deadline_ms=int(time.time() * 1000) + 300)
    fast = api.add(http_event("/fast"))
    await run_loop(
        app,
        api,
        padding=PaddingPolicy(mode="idle", threshold=1000, latency_ms=20),
        sse=SSEOptions(heartbeat_s=0.03, error_event=True),
        timeout_margin_ms=0,
    )
    first = decode_streamed(api.response(slow))
    assert first.error_type == "Function.Timeout"
    assert sse_events(first.payload)[0] == "/slow" and b"late" not in first.payload
    second = decode_streamed(api.response(fast))
    assert second.error_type is None
    assert sse_events(second.payload) == ["/fast", "end"]
    assert b"/slow" not in second.payload and b"event: error" not in second.payload
