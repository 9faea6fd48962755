"""SSE extras: event formatting, heartbeats when silent, and the opt-in terminal error event."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from httpx_sse._decoders import SSEDecoder

from lambda_asgi_stream._types import Receive, Scope, Send
from lambda_asgi_stream.cycle import HTTPCycle, PaddedStreamingResponder, PlainWriter
from lambda_asgi_stream.encoder import decode_stream, read_error_trailers
from lambda_asgi_stream.padding import PaddingPolicy
from lambda_asgi_stream.sse import HEARTBEAT, SSEOptions, format_event


def parse(data: bytes) -> list[tuple[str, str, str, int | None]]:
    decoder = SSEDecoder()
    out = []
    for line in data.decode().splitlines():
        event = decoder.decode(line)
        if event is not None:
            out.append((event.event, event.data, event.id, event.retry))
    return out


def test_format_event_round_trips_through_a_real_parser() -> None:
    data = format_event("first\nsecond", event="token", id="42", retry=1500) + format_event("{}")
    assert parse(data) == [("token", "first\nsecond", "42", 1500), ("message", "{}", "42", None)]


def test_format_event_refuses_multi_line_fields() -> None:
    with pytest.raises(ValueError, match="one line"):
        format_event("x", event="a\nb")


class Recorder(PlainWriter):
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.trailers: list[tuple[bytes, bytes]] = []

    async def write(self, data: bytes) -> None:
        self.writes.append(data)

    async def close(self, trailers: list[tuple[bytes, bytes]]) -> None:
        self.trailers = trailers


async def run(app: Any, sse: SSEOptions, padding: str = "none") -> Recorder:
    recorder = Recorder()
    policy = PaddingPolicy(mode=padding, idle_ms=5, threshold=10_000)  # type: ignore[arg-type]
    responder = PaddedStreamingResponder(recorder, "function-url", policy, sse)
    await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(
        app, deadline=anyio.current_time() + 5
    )
    return recorder


def start(content_type: bytes = b"text/event-stream") -> dict[str, Any]:
    return {"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]}


@pytest.mark.anyio
async def test_heartbeat_is_sent_while_the_app_is_silent() -> None:
    recorder = Recorder()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        with anyio.fail_after(5):  # stay silent until the runtime has written a heartbeat
            while HEARTBEAT not in recorder.writes:
                await anyio.sleep(0.005)
        await send({"type": "http.response.body", "body": b"data: 2\n\n"})

    policy = PaddingPolicy(mode="none")
    responder = PaddedStreamingResponder(recorder, "function-url", policy, SSEOptions(heartbeat_s=0.02))
    await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(app)
    _, body = decode_stream(b"".join(recorder.writes))
    assert [e[1] for e in parse(body)] == ["1", "2"]  # heartbeats are comments: invisible to clients


@pytest.mark.anyio
async def test_no_heartbeat_for_other_content_types() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(b"text/plain"))
        await send({"type": "http.response.body", "body": b"x\n", "more_body": True})
        await anyio.sleep(0.1)
        await send({"type": "http.response.body", "body": b""})

    recorder = await run(app, SSEOptions(heartbeat_s=0.01))
    assert HEARTBEAT not in recorder.writes


@pytest.mark.anyio
@pytest.mark.parametrize("error_event", [True, False])
async def test_terminal_error_event_is_opt_in_and_generic(error_event: bool) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send({"type": "http.response.body", "body": b"data: partial\n\n", "more_body": True})
        raise RuntimeError("cannot reach postgres://admin:hunter2@db")

    recorder = await run(app, SSEOptions(heartbeat_s=0, error_event=error_event))
    _, body = decode_stream(b"".join(recorder.writes))
    events = parse(body)
    assert events[0][1] == "partial"
    if error_event:
        assert events[-1][0] == "error"
        sent = json.loads(events[-1][1])
        assert sent["type"] == "Function.RuntimeError"
        assert "hunter2" not in body.decode()  # the exception text never reaches the browser by default
    else:
        assert len(events) == 1
    assert read_error_trailers(recorder.trailers) is not None  # the invocation still fails


@pytest.mark.anyio
async def test_terminal_error_event_carries_the_message_only_with_the_second_opt_in() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send({"type": "http.response.body", "body": b"data: partial\n\n", "more_body": True})
        raise RuntimeError("upstream went away")

    recorder = await run(app, SSEOptions(heartbeat_s=0, error_event=True, error_detail=True))
    _, body = decode_stream(b"".join(recorder.writes))
    assert json.loads(parse(body)[-1][1]) == {
        "type": "Function.RuntimeError",
        "message": "upstream went away",
    }


@pytest.mark.anyio
async def test_terminal_event_at_the_deadline() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send({"type": "http.response.body", "body": b"data: tick\n\n", "more_body": True})
        await anyio.sleep_forever()

    recorder = Recorder()
    responder = PaddedStreamingResponder(
        recorder, "function-url", PaddingPolicy(mode="none"), SSEOptions(heartbeat_s=0, error_event=True)
    )
    await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(
        app, deadline=anyio.current_time() + 0.05
    )
    _, body = decode_stream(b"".join(recorder.writes))
    assert parse(body)[-1][0] == "error"
    assert json.loads(parse(body)[-1][1])["type"] == "Function.Timeout"


@pytest.mark.anyio
async def test_heartbeat_inside_an_unfinished_event_does_not_split_it() -> None:
    writes: list[bytes] = []

    class Writer(PlainWriter):
        async def write(self, data: bytes) -> None:
            writes.append(data)

        async def close(self, trailers: Any) -> None:
            pass

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send({"type": "http.response.body", "body": b"event: token\n", "more_body": True})
        await anyio.sleep(0.1)  # several heartbeats fall between the two lines of one event
        await send({"type": "http.response.body", "body": b"data: hello\n\n"})

    responder = PaddedStreamingResponder(
        Writer(), "function-url", PaddingPolicy("none"), SSEOptions(heartbeat_s=0.02)
    )
    await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(app)
    stream = b"".join(writes).split(b"\x00" * 8, 1)[1]
    assert stream.count(HEARTBEAT) >= 2
    decoder = SSEDecoder()
    events = [e for line in stream.decode().splitlines() if (e := decoder.decode(line)) is not None]
    assert [(e.event, e.data) for e in events] == [("token", "hello")]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("written", "separator"),
    [(b"data: partial\n\n", b""), (b"data: partial\n", b"\n"), (b"data: half", b"\n\n")],
)
async def test_the_error_event_follows_what_the_first_pass_wrote(written: bytes, separator: bytes) -> None:
    # With padding on, the writes of the pass that started the response are only noted until it ends;
    # a failure in that pass must still see where the last of them stopped.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send({"type": "http.response.body", "body": written, "more_body": True})
        raise RuntimeError("upstream went away")

    recorder = Recorder()
    responder = PaddedStreamingResponder(
        recorder, "function-url", PaddingPolicy(mode="idle"), SSEOptions(heartbeat_s=0, error_event=True)
    )
    await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(app)
    _, body = decode_stream(b"".join(recorder.writes))
    assert body.startswith(written + separator + b"event: error\n")


@pytest.mark.anyio
async def test_a_compressed_event_stream_gets_no_heartbeat_and_no_error_event() -> None:
    # Its bytes are gzip's, not lines: a comment or an event written among them would corrupt it.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"content-encoding", b"gzip")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"\x1f\x8b compressed\n", "more_body": True})
        await anyio.sleep(0.1)
        raise RuntimeError("upstream went away")

    recorder = await run(app, SSEOptions(heartbeat_s=0.01, error_event=True))
    assert HEARTBEAT not in recorder.writes
    _, body = decode_stream(b"".join(recorder.writes))
    assert body == b"\x1f\x8b compressed\n"
    assert read_error_trailers(recorder.trailers) is not None
