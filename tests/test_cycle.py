"""The ASGI cycle and its failure policy, with tiny inline apps and a recording writer."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import anyio
import pytest

from lambda_asgi_stream import PreludeTooLargeError
from lambda_asgi_stream import cycle as cycle_module
from lambda_asgi_stream._types import Message, Receive, Scope, Send
from lambda_asgi_stream.cycle import BufferedResponder, HTTPCycle, PlainWriter, StreamingResponder
from lambda_asgi_stream.encoder import decode_stream, read_error_trailers

pytestmark = pytest.mark.anyio

SCOPE: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": []}


class Recorder(PlainWriter):
    """A StreamWriter that keeps what it is given."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.trailers: list[tuple[bytes, bytes]] | None = None

    async def write(self, data: bytes) -> None:
        assert self.trailers is None, "write after close"
        self.writes.append(data)

    async def close(self, trailers: list[tuple[bytes, bytes]]) -> None:
        assert self.trailers is None, "closed twice"
        self.trailers = trailers

    def decoded(self) -> tuple[int, list[tuple[str, str]], bytes, tuple[str, Any] | None]:
        prelude, body = decode_stream(b"".join(self.writes))
        assert self.trailers is not None, "stream never closed"
        return prelude.status, prelude.headers, body, read_error_trailers(self.trailers)


async def run_streaming(app: Any, body: bytes = b"", deadline: float | None = None) -> tuple[Recorder, Any]:
    recorder = Recorder()
    result = await HTTPCycle(dict(SCOPE), body, StreamingResponder(recorder, "function-url")).run(
        app, deadline=deadline
    )
    return recorder, result


def start(status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> Message:
    return {
        "type": "http.response.start",
        "status": status,
        "headers": headers or [(b"content-type", b"text/plain")],
    }


def body(data: bytes, more: bool = False) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


async def test_each_body_message_is_written_at_once() -> None:
    seen: list[int] = []
    recorder = Recorder()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        seen.append(len(recorder.writes))
        await send(body(b"a", more=True))
        seen.append(len(recorder.writes))
        await send(body(b"", more=True))  # zero-length: writes nothing
        seen.append(len(recorder.writes))
        await send(body(b"b"))

    result = await HTTPCycle(dict(SCOPE), b"", StreamingResponder(recorder, "function-url")).run(app)
    assert seen == [1, 2, 2]
    assert result.end == "complete"
    assert recorder.decoded()[2:] == (b"ab", None)


async def test_request_body_then_disconnect_only_after_the_response() -> None:
    received: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        received.append(await receive())
        with anyio.move_on_after(0.05) as waited:
            await receive()
        assert waited.cancelled_caught, "disconnect must not come before the response is complete"
        await send(start())
        await send(body(b"done"))
        received.append(await receive())
        received.append(await receive())

    recorder, result = await run_streaming(app, body=b"payload")
    assert received == [
        {"type": "http.request", "body": b"payload", "more_body": False},
        {"type": "http.disconnect"},
        {"type": "http.disconnect"},
    ]
    assert result.end == "complete"


@pytest.mark.parametrize("status", [204, 301, 304])
async def test_body_less_response_still_sends_prelude_and_terminator(status: int) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(status, [(b"location", b"/elsewhere")]))
        await send(body(b""))

    recorder, result = await run_streaming(app)
    assert recorder.decoded() == (status, [("location", "/elsewhere")], b"", None)


async def test_raise_before_start_gives_500_and_error_trailers() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise KeyError("nope")

    recorder, result = await run_streaming(app)
    status, _, text, error = recorder.decoded()
    assert (status, text) == (500, b"Internal Server Error")
    assert error is not None and error[0] == "Function.KeyError"
    assert result.end == "error" and isinstance(result.error, KeyError)


async def test_raise_after_start_keeps_bytes_and_sends_trailers() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(body(b"partial", more=True))
        raise RuntimeError("mid-stream")

    recorder, _ = await run_streaming(app)
    status, _, text, error = recorder.decoded()
    assert (status, text) == (200, b"partial")
    assert error is not None and error[0] == "Function.RuntimeError"
    assert error[1]["errorMessage"] == "mid-stream"
    assert b"mid-stream" not in b"".join(recorder.writes), "error text must never go into the body"


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([], "expected http.response.start"),
        ([start()], "expected a final http.response.body"),
        ([start(), body(b"x", more=True)], "expected a final http.response.body"),
    ],
)
async def test_returning_without_finishing_is_a_failure(messages: list[Message], expected: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            await send(message)

    recorder, result = await run_streaming(app)
    error = recorder.decoded()[3]
    assert error is not None and error[0] == "Function.ASGIProtocolError"
    assert expected in error[1]["errorMessage"]


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([body(b"x")], "expected http.response.start"),
        ([start(), start()], "expected http.response.body"),
        ([start(), body(b"x"), body(b"y")], "expected nothing more"),
        ([{"type": "http.response.start", "status": "200"}], "int status"),
        ([start(), {"type": "http.response.body", "body": "text"}], "needs bytes"),
    ],
)
async def test_out_of_order_messages_raise_in_send_and_fail_the_stream(
    messages: list[Message], fragment: str
) -> None:
    raised: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            try:
                await send(message)
            except RuntimeError as exc:  # ASGIProtocolError is a RuntimeError, as in uvicorn
                raised.append(exc)
                return  # the app swallows it: the cycle must still report it

    recorder, result = await run_streaming(app)
    assert raised and fragment in str(raised[0])
    if result.end == "complete":
        # Only a message after a finished response: the response itself is whole.
        assert "nothing more" in fragment
    else:
        error = recorder.decoded()[3]
        assert error is not None and error[0] == "Function.ASGIProtocolError"


async def test_prelude_too_large_becomes_a_500() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(200, [(b"x-big", b"y" * 20000)]))
        await send(body(b"never"))

    recorder, _ = await run_streaming(app)
    status, _, _, error = recorder.decoded()
    assert status == 500
    assert error is not None and error[0] == "Function.PreludeTooLarge"


@pytest.fixture(params=["anyio scope", "asyncio timer"])
def deadline_strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways the cycle enforces a deadline: an anyio cancel scope when the process has anyio loaded
    (as here, under pytest's anyio plugin), else a plain timer that cancels the task."""
    if request.param == "asyncio timer":
        monkeypatch.setattr(cycle_module, "_anyio_cancel_scope", lambda: None)
    return str(request.param)


async def test_deadline_before_start_is_504_with_timeout_trailer(deadline_strategy: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(10)

    recorder, result = await run_streaming(app, deadline=anyio.current_time() + 0.05)
    status, _, _, error = recorder.decoded()
    assert status == 504
    assert error is not None and error[0] == "Function.Timeout"
    assert result.end == "timeout"


async def test_deadline_mid_stream_keeps_bytes_and_sends_timeout_trailer(deadline_strategy: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(body(b"tick", more=True))
        await asyncio.sleep(10)

    recorder, _ = await run_streaming(app, deadline=anyio.current_time() + 0.05)
    status, _, text, error = recorder.decoded()
    assert (status, text) == (200, b"tick")
    assert error is not None and error[0] == "Function.Timeout"


async def test_deadline_stops_an_app_that_never_yields(deadline_strategy: str) -> None:
    # send() returns without suspending when the bytes are taken at once, so neither the timer nor the
    # cancel scope ever gets a chance: the deadline is checked on send() itself.
    sent: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        for n in range(400):
            time.sleep(0.001)  # noqa: ASYNC251 (CPU work, or a blocking call: the point of the test)
            await send(body(b"x" * 1024, more=True))
            sent.append(n)
        await send(body(b""))

    recorder, result = await run_streaming(app, deadline=anyio.current_time() + 0.05)
    status, _, text, error = recorder.decoded()
    assert result.end == "timeout"
    assert status == 200 and error is not None and error[0] == "Function.Timeout"
    assert len(sent) < 400 and len(text) == 1024 * len(sent)


async def test_an_app_that_blocks_past_the_deadline_gets_504(deadline_strategy: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        time.sleep(0.08)  # noqa: ASYNC251 (past the deadline, without ever yielding)
        await receive()
        await send(start())
        await send(body(b"too late"))

    recorder, result = await run_streaming(app, deadline=anyio.current_time() + 0.05)
    status, _, _, error = recorder.decoded()
    assert (status, result.end) == (504, "timeout")
    assert error is not None and error[0] == "Function.Timeout"


async def test_a_timer_deadline_leaves_the_task_uncancelled() -> None:
    # The timer takes its own cancellation back (Task.uncancel, 3.11+), as asyncio.timeout() does, so a
    # later asyncio.timeout() in the same task still works.
    cycle_module_timer = cycle_module._anyio_cancel_scope
    try:
        cycle_module._anyio_cancel_scope = lambda: None  # type: ignore[assignment]

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await asyncio.sleep(10)

        await run_streaming(app, deadline=anyio.current_time() + 0.02)
    finally:
        cycle_module._anyio_cancel_scope = cycle_module_timer  # type: ignore[assignment]
    task = asyncio.current_task()
    assert task is not None
    if hasattr(task, "cancelling"):
        assert task.cancelling() == 0
    await asyncio.wait_for(asyncio.sleep(0.001), 1)


async def test_one_deadline_timer_serves_a_task_cycle_after_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    # The runtime's worker keeps one DeadlineTimer for all its invocations. A timer armed for an earlier
    # cycle's deadline must neither cut a later cycle early nor cancel the task between cycles, and a cycle
    # with an earlier deadline than the one armed must still be stopped at its own.
    monkeypatch.setattr(cycle_module, "_anyio_cancel_scope", lambda: None)  # the plain timer path
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    timer = cycle_module.DeadlineTimer(loop, task)
    assert timer.clock() == pytest.approx(loop.time(), abs=0.01)

    async def quick(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(body(b"ok"))

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await asyncio.sleep(10)

    async def cycle(app: Any, deadline: float) -> tuple[str, float]:
        began = timer.clock()
        result = await HTTPCycle(dict(SCOPE), b"", StreamingResponder(Recorder(), "function-url")).run(
            app, deadline=deadline, timer=timer
        )
        return result.end, timer.clock() - began

    assert (await cycle(quick, timer.clock() + 0.05))[0] == "complete"
    # The timer armed for that deadline fires while no cycle runs: the task goes on undisturbed.
    await asyncio.sleep(0.1)
    # A later, longer deadline: the timer set for it, not for the old one.
    end, took = await cycle(slow, timer.clock() + 0.3)
    assert end == "timeout" and took >= 0.29
    # A far deadline armed, then a near one: stopped at the near one.
    assert (await cycle(quick, timer.clock() + 100))[0] == "complete"
    end, took = await cycle(slow, timer.clock() + 0.05)
    assert end == "timeout" and took < 5
    timer.close()
    if hasattr(task, "cancelling"):
        assert task.cancelling() == 0
    await asyncio.wait_for(asyncio.sleep(0.001), 1)


async def test_error_after_complete_is_logged_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(body(b"whole"))
        raise ValueError("background task failed")

    recorder, result = await run_streaming(app)
    assert recorder.decoded()[2:] == (b"whole", None)
    assert result.end == "complete" and isinstance(result.late_error, ValueError)
    assert "after the response was complete" in caplog.text


async def test_response_trailers_message_is_tolerated_after_the_body() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({**start(), "trailers": True})
        await send(body(b"x"))
        await send(
            {"type": "http.response.trailers", "headers": [(b"x-checksum", b"1")], "more_trailers": False}
        )

    recorder, result = await run_streaming(app)
    assert result.end == "complete"
    assert recorder.decoded()[3] is None


# --- buffered ---------------------------------------------------------------------------------------


async def run_buffered(app: Any) -> BufferedResponder:
    responder = BufferedResponder("function-url", multi_value_headers=False)
    await HTTPCycle(dict(SCOPE), b"", responder).run(app)
    return responder


async def test_buffered_collects_the_whole_response() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(201, [(b"content-type", b"application/json")]))
        await send(body(b'{"a":', more=True))
        await send(body(b"1}"))

    out = (await run_buffered(app)).result()
    assert (out["statusCode"], json.loads(out["body"])) == (201, {"a": 1})


async def test_buffered_failure_before_start_is_a_500_response() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("x")

    out = (await run_buffered(app)).result()
    assert (out["statusCode"], out["body"]) == (500, "Internal Server Error")


async def test_buffered_failure_after_start_is_a_whole_500_never_half_a_body() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(201, [(b"x-partial", b"1")]))
        await send(body(b"half", more=True))
        raise ValueError("cut")

    responder = await run_buffered(app)
    result = responder.result()
    assert (result["statusCode"], result["body"]) == (500, "Internal Server Error")
    assert "x-partial" not in result["headers"]


async def test_buffered_stops_holding_a_body_over_6_mb() -> None:
    sent = 0

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal sent
        await send(start())
        for _ in range(100):
            await send(body(b"x" * 1024 * 1024, more=True))
            sent += 1
        await send(body(b""))

    responder = await run_buffered(app)
    assert sent <= 7  # the app's send raised as soon as the limit passed
    assert responder.result()["statusCode"] == 500


# --- faults that are not Exceptions, and headers the app must not send ---------------------------------


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="3.10 has no Task.cancelling(): the cycle re-raises and the runtime loop reports it "
    "(tests/runtime/test_resilience.py)",
)
async def test_a_stray_cancelled_error_from_the_app_is_an_app_failure_not_a_shutdown() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        import asyncio

        task = asyncio.ensure_future(asyncio.sleep(10))
        task.cancel()
        await task  # raises CancelledError, though nobody cancelled the app

    recorder, result = await run_streaming(app)
    status, _, _, error = recorder.decoded()
    assert status == 500
    assert result.end == "error" and "without being cancelled" in str(result.error)
    assert error is not None and error[0] == "Function.RuntimeError"


async def test_sys_exit_in_the_app_is_an_app_failure() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send(body(b"partial", more=True))
        raise SystemExit(3)

    recorder, result = await run_streaming(app)
    status, _, payload, error = recorder.decoded()
    assert (status, payload) == (200, b"partial")
    assert error is not None and "sys.exit(3)" in error[1]["errorMessage"]


@pytest.mark.parametrize("how", ["cancel scope", "task.cancel()"])
async def test_a_real_cancellation_still_goes_through(how: str) -> None:
    # A cancellation someone asked for (SIGTERM's cancel scope, a server's task.cancel()) must come out of
    # the cycle as a cancellation, never be turned into an app failure and swallowed.
    import asyncio

    started = anyio.Event()
    outcome: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        await anyio.sleep_forever()

    async def serve() -> None:
        try:
            await run_streaming(app)
        except anyio.get_cancelled_exc_class():
            outcome.append("cancelled")
            raise
        outcome.append("returned")

    if how == "cancel scope":
        with anyio.CancelScope() as outer:
            async with anyio.create_task_group() as group:
                group.start_soon(serve)
                await started.wait()
                outer.cancel()
        assert outer.cancelled_caught
    else:
        task = asyncio.ensure_future(serve())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert outcome == ["cancelled"]


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ([(b"x-a", b"1\r\nset-cookie: evil=1")], "CR, LF or NUL"),
        ([(b"x-a", b"nul\x00")], "CR, LF or NUL"),
        ([(b"bad name", b"v")], "invalid response header name"),
        ([(b"", b"v")], "invalid response header name"),
    ],
)
async def test_unsafe_response_headers_are_refused(headers: list[tuple[bytes, bytes]], says: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(200, headers))
        await send(body(b"never"))

    recorder, result = await run_streaming(app)
    status, sent, payload, error = recorder.decoded()
    assert status == 500 and b"never" not in payload
    assert all(b"evil" not in v.encode() for _, v in sent)
    assert says in str(result.error)
    assert error is not None and error[0] == "Function.ASGIProtocolError"


async def test_a_refused_start_leaves_no_body_on_the_wire() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        with pytest.raises(PreludeTooLargeError):
            await send(start(200, [(b"x-big", b"v" * 20000)]))
        await send(body(b"orphan bytes"))  # must not follow, with no prelude in front of them

    recorder, result = await run_streaming(app)
    status, _, payload, error = recorder.decoded()
    assert status == 500 and b"orphan" not in payload
    assert error is not None


async def test_utf8_header_values_reach_the_prelude_as_text() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            start(200, [(b"x-name", "Jos\u00e9".encode()), (b"x-latin", "Jos\u00e9".encode("latin-1"))])
        )
        await send(body(b""))

    recorder, _ = await run_streaming(app)
    _, headers, _, _ = recorder.decoded()
    assert ("x-name", "Jos\u00e9") in headers and ("x-latin", "Jos\u00e9") in headers


async def test_the_anyio_scope_class_falls_back_to_anyio_cancelscope(monkeypatch: pytest.MonkeyPatch) -> None:
    # _anyio_cancel_scope takes the running backend's own class (type(anyio.CancelScope())) to skip a
    # sniffio look-up per call; when that cannot be had it must hand back anyio.CancelScope itself.
    monkeypatch.setattr(cycle_module, "_scope_class", None)

    class Broken:
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("no backend")

    monkeypatch.setattr(anyio, "CancelScope", Broken())
    assert isinstance(cycle_module._anyio_cancel_scope(), Broken)
    monkeypatch.undo()
    monkeypatch.setattr(cycle_module, "_scope_class", None)
    scope_class = cycle_module._anyio_cancel_scope()
    assert scope_class is not None and isinstance(scope_class(), anyio.CancelScope)


async def test_an_app_that_swallows_the_deadline_and_returns_timed_out_on_both_paths(
    deadline_strategy: str,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return  # swallowed: returns without a response

    recorder, result = await run_streaming(app, deadline=anyio.current_time() + 0.05)
    assert result.end == "timeout"
    assert recorder.decoded()[0] == 504


async def test_a_send_after_the_cycle_failed_is_refused() -> None:
    late: list[BaseException] = []
    sends: list[Send] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        sends.append(send)
        await send(start())
        raise ValueError("failed mid-stream")

    recorder, result = await run_streaming(app)
    assert result.end == "error"
    try:
        await sends[0](body(b"after the end"))  # a task the app left behind
    except Exception as exc:
        late.append(exc)
    assert late and "nothing more" in str(late[0])
    assert b"after the end" not in b"".join(recorder.writes)
