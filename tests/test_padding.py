"""The padding flusher: when it pads, how much, and that each format still parses the same."""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
from html.parser import HTMLParser
from typing import Any

import anyio
import pytest
from httpx_sse._decoders import SSEDecoder

from lambda_asgi_stream import cycle as cycle_module
from lambda_asgi_stream._types import Receive, Scope, Send
from lambda_asgi_stream.buffering import HoldBack
from lambda_asgi_stream.cycle import HTTPCycle, PaddedStreamingResponder, PlainWriter
from lambda_asgi_stream.encoder import decode_stream
from lambda_asgi_stream.padding import FLUSH_EXTENSION, Flusher, PaddingPolicy, flush, pad_function_for

THRESHOLD = 1000


def flusher(content_type: str, budget: int = 10**9, encoding: str = "") -> Flusher:
    pad = pad_function_for(content_type, encoding)
    assert pad is not None
    return Flusher(pad, THRESHOLD, budget, automatic=True)


@pytest.mark.parametrize(
    ("content_type", "encoding", "padded"),
    [
        ("text/event-stream", "", True),
        ("text/event-stream; charset=utf-8", "", True),
        ("text/html; charset=utf-8", "", True),
        ("application/x-ndjson", "", True),
        ("application/jsonl", "", True),
        ("application/json", "", False),
        ("application/octet-stream", "", False),
        ("image/png", "", False),
        ("text/plain", "", False),
        ("", "", False),
        ("text/event-stream", "gzip", False),
        ("text/html", "br", False),
        ("text/html", "identity", True),
    ],
)
def test_which_responses_may_be_padded(content_type: str, encoding: str, padded: bool) -> None:
    assert (pad_function_for(content_type, encoding) is not None) is padded


def test_pads_just_enough_to_reach_the_threshold() -> None:
    f = flusher("text/event-stream")
    f.wrote(b"data: hello\n\n")
    pad = f.padding(0.0)
    assert len(pad) + len(b"data: hello\n\n") == THRESHOLD
    assert f.pending == 0 and f.padding(0.0) == b""  # nothing pending: nothing more to pad


def test_no_padding_once_the_service_would_release_anyway() -> None:
    f = flusher("text/event-stream")
    f.wrote(b"data: " + b"x" * THRESHOLD + b"\n\n")
    assert f.padding(0.0) == b""


@pytest.mark.parametrize(
    ("content_type", "tail"),
    [
        ("text/event-stream", b"data: half a li"),  # not after a complete line
        ("text/html", b"<p>some te"),  # inside text: spaces would change nothing visible, but
        ("application/x-ndjson", b'{"a": 1'),  # inside a JSON value: never
    ],
)
def test_never_pads_at_an_unsafe_boundary(content_type: str, tail: bytes) -> None:
    f = flusher(content_type)
    f.wrote(tail)
    assert f.padding(0.0) == b""
    assert f.pending == len(tail)


def test_a_hard_budget_stops_padding() -> None:
    f = flusher("text/event-stream", budget=2 * THRESHOLD)  # rate 0: a hard cap
    spent = 0
    for second in range(5):
        f.wrote(b"data: x\n\n")
        spent += len(f.padding(float(second)))
    assert spent <= 2 * THRESHOLD
    assert f.exhausted
    assert f.delay(10.0) == math.inf


def test_a_refilling_budget_paces_padding_instead_of_stopping_it() -> None:
    pad = pad_function_for("text/event-stream")
    assert pad is not None
    # A burst of two pushes, then the budget refills at one push per second.
    f = Flusher(pad, THRESHOLD, 2 * THRESHOLD, THRESHOLD, automatic=True)
    pushed = []
    for step in range(8):  # an event every 0.25 s, for 2 s
        now = step * 0.25
        f.wrote(b"data: x\n\n")
        wait = f.delay(now)
        if wait == 0:
            pushed.append(now)
            assert f.padding(now)
        else:
            assert 0 < wait <= 1.0  # never "never": the refill always comes
    assert pushed[:2] == [0.0, 0.25]  # the burst: every pause pushed at once
    assert len(pushed) < 8 and f.throttled and not f.exhausted
    # Once throttled, the next push is due when the refill covers it, and then it goes out.
    now = 2.0 + f.delay(2.0)
    assert f.padding(now)
    assert not f.exhausted


def sse_events(data: bytes) -> list[tuple[str, str, str | None]]:
    decoder = SSEDecoder()
    events = []
    for line in data.decode().splitlines():
        event = decoder.decode(line)
        if event is not None:
            events.append((event.event, event.data, event.id))
    return events


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.items: list[tuple[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.items.append(("start", (tag, attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.items.append(("end", tag))

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.items.append(("text", data.strip()))


def html_structure(data: bytes) -> list[tuple[str, Any]]:
    parser = _Text()
    parser.feed(data.decode())
    parser.close()
    return parser.items


def ndjson_values(data: bytes) -> list[Any]:
    return [json.loads(line) for line in data.decode().split("\n") if line.strip()]


FORMATS = [
    (
        "text/event-stream",
        [b"event: token\ndata: Hel\n\n", b"id: 2\ndata: lo\n\n", b": keep-alive\n\n", b"data: [DONE]\n\n"],
        sse_events,
    ),
    (
        "text/html; charset=utf-8",
        [
            b"<!doctype html><html><head><title>t</title></head>",
            b"<body><p>one</p>",
            b"<p>two</p></body></html>",
        ],
        html_structure,
    ),
    ("application/x-ndjson", [b'{"n": 1}\n', b'{"n": 2}\n', b'{"n": [3, "x"]}\n'], ndjson_values),
]


@pytest.mark.parametrize(("content_type", "writes", "parse"), FORMATS, ids=[f[0] for f in FORMATS])
def test_padded_stream_parses_the_same(content_type: str, writes: list[bytes], parse: Any) -> None:
    f = flusher(content_type)
    out = b""
    for write in writes:
        f.wrote(write)
        out += write
        out += f.padding(0.0)
    assert f.padding_bytes > 0, "the test must actually pad"
    assert len(out) > sum(map(len, writes))
    assert parse(out) == parse(b"".join(writes))


# --- the flusher inside the cycle, with the hold-back model as the far side ------------------------


class HeldBackWriter(PlainWriter):
    """A StreamWriter whose bytes pass through Lambda's hold-back model; records what was released."""

    def __init__(self, threshold: int) -> None:
        self.model = HoldBack(threshold)
        self.released: list[bytes] = []
        self.wire: list[bytes] = []
        self.prelude_seen = False

    async def write(self, data: bytes) -> None:
        self.wire.append(data)
        if not self.prelude_seen:
            self.prelude_seen = True
            return
        out = self.model.feed(data)
        if out:
            self.released.append(out)

    async def close(self, trailers: list[tuple[bytes, bytes]]) -> None:
        out = self.model.end()
        if out:
            self.released.append(out)

    def delivered(self) -> bytes:
        return b"".join(self.released)


def sse_app(events: int, pause: float, flush_by_hand: bool = False, wait_release: bool = False) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for n in range(events):
            seen.append(len(sse_events(writer.delivered())))  # events the client has, before event n
            await send({"type": "http.response.body", "body": f"data: {n}\n\n".encode(), "more_body": True})
            if flush_by_hand:
                await flush(scope)
            if wait_release:
                # Stay idle until the event reaches the client; with no padding this would time out.
                with anyio.fail_after(10):
                    while len(sse_events(writer.delivered())) <= n:
                        await anyio.sleep(0.001)
            await anyio.sleep(pause)
        await send({"type": "http.response.body", "body": b""})

    seen: list[int] = []
    writer = HeldBackWriter(THRESHOLD)
    app.seen = seen  # type: ignore[attr-defined]
    app.writer = writer  # type: ignore[attr-defined]
    return app


async def run_padded(app: Any, mode: str) -> PaddedStreamingResponder:
    policy = PaddingPolicy(mode=mode, idle_ms=5, threshold=THRESHOLD)  # type: ignore[arg-type]
    responder = PaddedStreamingResponder(app.writer, "function-url", policy)
    await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(app)
    return responder


@pytest.mark.anyio
async def test_idle_padding_releases_each_event_before_the_next_one() -> None:
    app = sse_app(events=4, pause=0, wait_release=True)
    responder = await run_padded(app, "idle")
    assert app.seen == [0, 1, 2, 3]
    assert responder.stats.padding > 0
    assert sse_events(app.writer.delivered()) == [("message", str(n), "") for n in range(4)]


@pytest.mark.anyio
async def test_responses_one_after_another_share_one_wake_up() -> None:
    # A runtime worker hands every padded response the same WakeUp. A short response leaves the loop timer
    # set for a push it no longer needs; the next response, which pauses with bytes pending, must still be
    # padded when its own push is due, and the finished one never be called again.
    policy = PaddingPolicy(mode="idle", idle_ms=5, threshold=THRESHOLD, latency_ms=0)
    wake = cycle_module.WakeUp(asyncio.get_running_loop())
    quick = sse_app(events=1, pause=0)
    first = PaddedStreamingResponder(quick.writer, "function-url", policy, wake=wake)
    await HTTPCycle({"type": "http", "headers": []}, b"", first).run(quick)
    assert first.stats.padding == 0 and wake.when == math.inf  # cleared: nothing for it to call
    second_app = sse_app(events=4, pause=0, wait_release=True)
    second = PaddedStreamingResponder(second_app.writer, "function-url", policy, wake=wake)
    await HTTPCycle({"type": "http", "headers": []}, b"", second).run(second_app)
    assert second_app.seen == [0, 1, 2, 3] and second.stats.padding > 0
    wake.close()


@pytest.mark.anyio
async def test_a_response_over_in_the_pass_that_started_it_sets_no_timer() -> None:
    # Most responses: the app never paused, so no push could ever have been due. The flusher is not even
    # made for them, nor a loop timer (on this writer, which cannot say when the pass ends, only a
    # cancelled callback is left behind).
    policy = PaddingPolicy(mode="idle", threshold=THRESHOLD)
    wake = cycle_module.WakeUp(asyncio.get_running_loop())

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for n in range(4):
            await send({"type": "http.response.body", "body": f"data: {n}\n\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    writer = HeldBackWriter(THRESHOLD)
    responder = PaddedStreamingResponder(writer, "function-url", policy, wake=wake)
    await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(app)
    assert wake._handle is None and wake.when == math.inf  # type: ignore[attr-defined]
    assert responder._pass_end is None and responder.stats.padding == 0
    assert responder.flusher is None  # not even made: nothing was ever pending past the pass
    assert [event[1] for event in sse_events(writer.delivered())] == ["0", "1", "2", "3"]


@pytest.mark.anyio
async def test_the_writes_of_the_first_pass_count_from_the_first_of_them() -> None:
    # They are only noted while that pass runs: accounted for when it ends, as written when the first of
    # them was (not when the response started, not when the pass ended), so no push comes later than it
    # would have, and none much earlier.
    clock = [100.0]
    wake = cycle_module.WakeUp(asyncio.get_running_loop())
    wake.clock = lambda: clock[0]
    policy = PaddingPolicy(mode="idle", threshold=THRESHOLD, latency_ms=200)
    writer = HeldBackWriter(THRESHOLD)
    responder = PaddedStreamingResponder(writer, "function-url", policy, wake=wake)
    seen: list[tuple[float, float]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        clock[0] = 100.15  # the app works a while before its first event
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        clock[0] = 100.3
        await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": True})
        clock[0] = 100.4
        await asyncio.sleep(0)  # the pass ends
        assert responder.flusher is not None
        seen.append((responder.flusher.since, responder._last_write))
        await send({"type": "http.response.body", "body": b""})

    await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(app)
    wake.close()
    assert seen == [(100.15, 100.15)]


def test_content_kinds_are_remembered_within_a_bound() -> None:
    cycle_module._CONTENT_KINDS.clear()
    assert cycle_module._content_kind(b"text/event-stream; charset=utf-8")[1]
    assert cycle_module._content_kind(b"Text/HTML")[0] is pad_function_for("text/html")
    for n in range(3 * cycle_module._CONTENT_KINDS_KEPT):
        assert cycle_module._content_kind(f"multipart/byteranges; boundary={n}".encode()) == (None, False)
    assert len(cycle_module._CONTENT_KINDS) <= cycle_module._CONTENT_KINDS_KEPT


@pytest.mark.anyio
async def test_padding_is_written_in_the_apps_context() -> None:
    # The timer's callback runs in no context of the app's, but the padding write it starts does: a log
    # line it writes may meet the app's logging filters, which may read a context variable (a request id).
    var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    seen: list[str | None] = []

    class Writer(HeldBackWriter):
        async def write(self, data: bytes) -> None:
            seen.append(var.get(None))
            await super().write(data)

    app = sse_app(events=2, pause=0, wait_release=True)
    app.writer = Writer(THRESHOLD)  # type: ignore[attr-defined]

    async def in_context(scope: Scope, receive: Receive, send: Send) -> None:
        var.set("req-1")
        await app(scope, receive, send)

    in_context.writer = app.writer  # type: ignore[attr-defined]
    responder = await run_padded(in_context, "idle")
    assert responder.stats.padding > 0
    assert seen and set(seen) == {"req-1"}  # the app's writes and the padding between them


@pytest.mark.anyio
async def test_a_wake_up_keeps_none_of_the_context_that_set_it() -> None:
    # Its loop timer outlives the invocation that set it (a worker's deadline timer stays for the function
    # timeout): a copy of that invocation's context would keep its event alive as long.
    var: contextvars.ContextVar[bytes] = contextvars.ContextVar("event")
    wake = cycle_module.WakeUp(asyncio.get_running_loop())
    token = var.set(b"an event of 6 MB")
    try:
        wake.set(wake.clock() + 60, print)
        assert var not in wake._handle._context  # type: ignore[union-attr]
    finally:
        var.reset(token)
        wake.close()


@pytest.mark.anyio
async def test_a_wake_up_set_later_fires_once_at_the_later_time_and_clears() -> None:
    loop = asyncio.get_running_loop()
    wake = cycle_module.WakeUp(loop)
    calls: list[float] = []

    def record() -> None:
        calls.append(wake.clock())

    wake.set(wake.clock() + 0.01, record)
    later = wake.clock() + 0.05
    wake.set(later, record)  # the loop timer stays at the earlier time, then sets itself for the rest
    await asyncio.sleep(0.1)
    assert len(calls) == 1 and calls[0] >= later
    wake.set(wake.clock() + 0.01, record)
    wake.clear(lambda: None)  # someone else's callback: this setting stays
    await asyncio.sleep(0.05)
    assert len(calls) == 2
    wake.set(wake.clock() + 0.01, record)
    wake.clear(record)
    await asyncio.sleep(0.05)
    assert len(calls) == 2  # cleared: nothing called
    wake.close()


@pytest.mark.anyio
async def test_without_padding_small_events_are_held_to_the_end() -> None:
    app = sse_app(events=4, pause=0.02)
    responder = await run_padded(app, "explicit")  # no idle padding, and the app never asks
    assert app.seen == [0, 0, 0, 0]
    assert len(app.writer.released) == 1  # all at once, at the end
    assert responder.stats.padding == 0


@pytest.mark.anyio
async def test_explicit_flush_releases_at_once() -> None:
    app = sse_app(events=3, pause=0, flush_by_hand=True)
    responder = await run_padded(app, "explicit")
    assert app.seen == [0, 1, 2]  # each event released before the app went on
    assert responder.stats.padding > 0


@pytest.mark.anyio
@pytest.mark.parametrize("content_type", [b"application/json", b"application/octet-stream"])
@pytest.mark.parametrize("mode", ["explicit", "idle"])
async def test_a_pad_function_the_policy_forces_pads_any_content_type(content_type: bytes, mode: str) -> None:
    # The app knows its bytes take padding (its own framing): the policy's pad function is used for a
    # content type that would otherwise never be padded.
    def spaces(tail: bytes, n: int) -> bytes:
        return b" " * n

    writer = HeldBackWriter(THRESHOLD)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]}
        )
        await send({"type": "http.response.body", "body": b'{"n": 1}', "more_body": True})
        await flush(scope)
        assert writer.delivered() == b'{"n": 1}' + b" " * (THRESHOLD - 8)  # released by the padding
        await send({"type": "http.response.body", "body": b""})

    policy = PaddingPolicy(mode=mode, threshold=THRESHOLD, pad=spaces)  # type: ignore[arg-type]
    responder = PaddedStreamingResponder(writer, "function-url", policy)
    result = await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(app)
    assert result.end == "complete" and responder.stats.padding == THRESHOLD - 8


@pytest.mark.anyio
async def test_flush_helper_is_a_no_op_outside_lambda() -> None:
    await flush({"type": "http"})  # uvicorn, tests: no extension, nothing to push
    await flush({"type": "http", "extensions": None})
    calls: list[int] = []

    async def push() -> None:
        calls.append(1)

    await flush({"type": "http", "extensions": {FLUSH_EXTENSION: push}})
    assert calls == [1]


@pytest.mark.anyio
async def test_fast_burst_costs_no_padding() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for n in range(50):
            await send({"type": "http.response.body", "body": f"data: {n}\n\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    app.writer = HeldBackWriter(THRESHOLD)  # type: ignore[attr-defined]
    responder = await run_padded(app, "idle")
    assert responder.stats.padding == 0


@pytest.mark.anyio
async def test_padding_header_is_consumed_and_can_turn_padding_off() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"x-lambda-padding", b"none")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await anyio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})

    app.writer = HeldBackWriter(THRESHOLD)  # type: ignore[attr-defined]
    responder = await run_padded(app, "idle")
    prelude, _ = decode_stream(b"".join(app.writer.wire))
    assert prelude.headers == [("content-type", "text/event-stream")]
    assert responder.stats.padding == 0


def test_policy_rejects_unknown_modes() -> None:
    with pytest.raises(ValueError, match="padding"):
        PaddingPolicy(mode="always")  # type: ignore[arg-type]


def test_padding_stops_at_the_lifetime_cap_whatever_the_refill() -> None:
    from lambda_asgi_stream.padding import MAX_PADDING_TOTAL

    pad = pad_function_for("text/html")
    assert pad is not None
    mib = 1024 * 1024
    f = Flusher(pad, mib, 10 * mib, 10 * mib, automatic=True)  # refills faster than it is spent
    spent = 0
    for second in range(100):
        f.wrote(b"<p>x</p>")
        if f.delay(float(second)) == math.inf:
            break
        spent += len(f.padding(float(second)))
    assert f.exhausted and spent <= MAX_PADDING_TOTAL
    assert spent > MAX_PADDING_TOTAL - 2 * mib


def test_delay_promises_only_what_padding_then_delivers() -> None:
    # The SSE pad can be a byte longer than the gap it fills (a line ending); delay() must count that.
    pad = pad_function_for("text/event-stream")
    assert pad is not None
    for pending in range(1, THRESHOLD):
        f = Flusher(pad, THRESHOLD, THRESHOLD - pending, 0, automatic=True)  # a budget of exactly the gap
        f.wrote(b"x" * (pending - 1) + b"\n")
        if f.delay(0.0) == 0.0:
            assert f.padding(0.0), pending


@pytest.mark.anyio
async def test_explicit_flush_waits_for_the_refill_instead_of_being_dropped() -> None:
    app = sse_app(events=4, pause=0, flush_by_hand=True)
    # A burst of one push, then one push every ~20 ms: every flush is honoured, some after a wait.
    policy = PaddingPolicy(
        mode="explicit", idle_ms=5, threshold=THRESHOLD, budget=THRESHOLD, rate=THRESHOLD * 50
    )
    responder = PaddedStreamingResponder(app.writer, "function-url", policy)
    await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(app)
    assert app.seen == [0, 1, 2, 3]  # each event released before the app went on


# --- the latency target (sans-IO: times passed in) ---------------------------------------------------


def test_push_waits_for_most_of_the_latency_target_after_the_oldest_pending_write() -> None:
    pad = pad_function_for("text/event-stream")
    assert pad is not None
    f = Flusher(pad, THRESHOLD, 10**9, automatic=True, latency=0.2, idle=0.005)
    assert f.push_at(0.0) == math.inf  # nothing pending
    for now in (1.0, 1.05, 1.1):
        f.wrote(b"data: x\n\n", now)
    assert f.push_at(1.1) == pytest.approx(1.18)  # from the first write, not the last: no debounce drift
    assert f.padding(1.18)
    assert f.push_at(1.18) == math.inf
    f.wrote(b"data: y\n\n", 1.3)
    assert f.push_at(1.3) == pytest.approx(1.48)


def test_a_write_that_reaches_the_threshold_restarts_the_clock() -> None:
    pad = pad_function_for("text/event-stream")
    assert pad is not None
    f = Flusher(pad, THRESHOLD, 10**9, automatic=True, latency=0.2)
    f.wrote(b"data: x\n\n", 0.0)
    f.wrote(b"data: " + b"x" * THRESHOLD + b"\n\n", 0.1)  # the service releases everything pending
    assert f.push_at(0.1) == math.inf
    f.wrote(b"data: z\n\n", 0.15)
    assert f.push_at(0.15) == pytest.approx(0.33)


def test_latency_zero_pushes_at_every_pause() -> None:
    pad = pad_function_for("text/event-stream")
    assert pad is not None
    f = Flusher(pad, THRESHOLD, 10**9, automatic=True, latency=0.0, idle=0.005)
    f.wrote(b"data: x\n\n", 0.0)
    f.wrote(b"data: x\n\n", 0.1)
    assert f.push_at(0.1) == pytest.approx(0.105)


def simulate(latency: float, threshold: int, gaps: list[float]) -> tuple[int, float, float]:
    """A token stream through the flusher's timing rule and the hold-back model, the timer fired exactly
    when due: (padding bytes, the longest a token waited, the stream's duration)."""
    pad = pad_function_for("text/event-stream")
    assert pad is not None
    f = Flusher(pad, threshold, 10**12, automatic=True, latency=latency, idle=0.005)
    model = HoldBack(threshold)
    waiting: list[float] = []  # write times of tokens the model still holds
    worst, now, last = 0.0, 0.0, 0.0

    def release(at: float) -> None:
        nonlocal worst
        worst = max([worst, *(at - w for w in waiting)])
        waiting.clear()

    for gap in gaps:
        due = f.push_at(last)
        if due <= now + gap:  # the timer fires before the next token
            data = f.padding(due)
            if model.feed(data):
                release(due)
        now += gap
        token = b'data: {"choices":[{"delta":{"content":" word"}}]}\n\n'
        waiting.append(now)
        f.wrote(token, now)
        last = now
        if model.feed(token):
            release(now)
    release(now)  # the end of the response
    return f.padding_bytes, worst, now


@pytest.mark.parametrize("threshold", [16 * 1024, 100 * 1024])
def test_a_steady_stream_costs_a_push_per_latency_target_and_no_more(threshold: int) -> None:
    gaps = [0.025 if i % 3 else 0.001 for i in range(500)]  # a token every ~17 ms, for ~8.5 s
    latency = 0.2
    padding, worst, duration = simulate(latency, threshold, gaps)
    reference = math.ceil(duration / latency) * threshold
    assert worst <= latency
    assert padding <= 1.25 * reference
    eager, eager_worst, _ = simulate(0.0, threshold, gaps)  # control: pushing at every pause costs more
    assert eager > 1.5 * padding and eager_worst < worst


@pytest.mark.anyio
async def test_a_half_written_sse_line_does_not_spin_the_timer() -> None:
    # Padding is due but the tail is mid-line (unsafe): the flusher must wait for the next write, not
    # re-arm its timer for a time already past (which would run it on every pass of the event loop).
    calls: list[float] = []

    class Counting(PaddedStreamingResponder):
        async def _pad(self) -> None:
            calls.append(0.0)
            await super()._pad()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: half a li", "more_body": True})
        await anyio.sleep(0.3)
        await send({"type": "http.response.body", "body": b"ne\n\n", "more_body": False})

    writer = HeldBackWriter(THRESHOLD)
    policy = PaddingPolicy(mode="idle", threshold=THRESHOLD, latency_ms=20)
    responder = Counting(writer, "function-url", policy)
    await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(app)
    assert len(calls) <= 2
    assert sse_events(writer.delivered()) == [("message", "half a line", "")]
