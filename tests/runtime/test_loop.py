"""The invocation loop itself: events it cannot serve, Runtime API faults, connections, context, bytes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import threading
from typing import Any

import anyio
import pytest

from lambda_asgi_stream import RuntimeAPIError, RuntimeAPIStatusError, StartupError
from lambda_asgi_stream import runtime as runtime_module
from lambda_asgi_stream.config import Config
from lambda_asgi_stream.padding import PaddingPolicy
from lambda_asgi_stream.runtime import LambdaRuntime, current_context

from .fake_api import API, DRAINED_STATUS, TIMEOUT, FakeRuntimeAPI, decode_streamed
from .helpers import body, http_event, make_config, run_loop, start


async def hello(scope: Any, receive: Any, send: Any) -> None:
    await send(start(200, [("content-type", "text/plain")]))
    await send(body(f"hello {scope['path']}".encode()))


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "_BACKOFF_START", 0.001)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("event", "error_type", "words"),
    [
        ({"Records": [{"eventSource": "aws:sqs", "body": "x"}]}, "Function.UnsupportedEvent", "aws:sqs"),
        (
            {"detail-type": "Scheduled Event", "source": "aws.events"},
            "Function.UnsupportedEvent",
            "EventBridge",
        ),
        (b"{not json", "Function.MalformedEvent", "not valid JSON"),
        # deeper than the interpreter's recursion limit: json.loads raises RecursionError, not ValueError
        (b"[" * 100_000, "Function.MalformedEvent", "nested too deeply"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "Function.MalformedEvent", "nested too deeply"),
        ([1, 2, 3], "Function.UnsupportedEvent", "JSON object"),
        ({"version": "2.0", "requestContext": {"http": "GET"}}, "Function.MalformedEvent", "requestContext"),
    ],
)
async def test_unusable_event_goes_to_error_and_the_loop_goes_on(
    api: FakeRuntimeAPI, event: Any, error_type: str, words: str
) -> None:
    bad = api.add(event)
    good = api.add(http_event("/after"))
    await run_loop(hello, api)
    error = api.error(bad)
    assert error.target == f"{API}/invocation/{bad.request_id}/error"
    assert error.header("Lambda-Runtime-Function-Error-Type") == error_type
    assert error.header("Content-Type") == "application/json"
    assert error.header("Content-Length") == str(len(error.body)) and not error.chunked
    payload = json.loads(error.body)
    assert words in payload["errorMessage"]
    assert payload["errorType"] and isinstance(payload["stackTrace"], list)
    assert decode_streamed(api.response(good)).payload == b"hello /after"


@pytest.mark.anyio
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"])
async def test_events_are_read_in_every_encoding_json_reads(api: FakeRuntimeAPI, encoding: str) -> None:
    # The loop decodes the usual UTF-8 object itself (json.loads would sniff the encoding first); any
    # other encoding JSON allows (RFC 8259 8.1 readers, as Python's) must still read.
    invocation = api.add(json.dumps(http_event("/caf\u00e9"), ensure_ascii=False).encode(encoding))
    bad = api.add(b'{"version": "\xff"}')  # not UTF-8: unusable, and the loop goes on
    await run_loop(hello, api)
    assert decode_streamed(api.response(invocation)).payload == "hello /caf\u00e9".encode()
    assert api.error(bad).header("Lambda-Runtime-Function-Error-Type") == "Function.MalformedEvent"


@pytest.mark.anyio
async def test_next_failures_are_retried(api: FakeRuntimeAPI, fast_backoff: None) -> None:
    api.next_failures = 2
    invocation = api.add(http_event("/retried"))
    await run_loop(hello, api)
    assert [e[1] for e in api.log if e[0] == "next"] == [500, 500, 200, DRAINED_STATUS]
    assert decode_streamed(api.response(invocation)).payload == b"hello /retried"


@pytest.mark.anyio
async def test_next_failing_for_good_ends_the_loop_after_bounded_retries(
    api: FakeRuntimeAPI, fast_backoff: None
) -> None:
    api.next_failures = 1000
    runtime = LambdaRuntime(hello, make_config(api), handle_signals=False)
    with anyio.fail_after(TIMEOUT), pytest.raises(RuntimeAPIStatusError) as failed:
        await runtime.serve()
    assert failed.value.status == 500
    assert len(api.nexts()) == runtime_module._NEXT_ATTEMPTS  # bounded: never spins


@pytest.mark.anyio
async def test_unreachable_runtime_api_ends_the_loop(fast_backoff: None) -> None:
    with FakeRuntimeAPI() as gone:
        address = gone.address
    config = make_config(gone)
    assert config.runtime_api == address
    with anyio.fail_after(TIMEOUT), pytest.raises(RuntimeAPIError, match="cannot connect"):
        await LambdaRuntime(hello, config, handle_signals=False).serve()


@pytest.mark.anyio
async def test_one_kept_alive_connection_per_worker(api: FakeRuntimeAPI) -> None:
    for path in ("/a", "/b", "/c"):
        api.add(http_event(path))
    await run_loop(hello, api)
    assert len(api.requests) == 7
    assert {r.connection for r in api.requests} == {1}
    assert all(r.header("Connection") in (None, "keep-alive") for r in api.requests)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["RESPONSE_STREAM", "BUFFERED"])
async def test_a_task_the_app_leaves_ready_steps_before_the_next_wait(api: FakeRuntimeAPI, mode: str) -> None:
    # The worker blocks in its wait for `next`, where Lambda freezes the sandbox: a fire-and-forget task
    # the app started must first get its turn (one loop pass), or it would not run before the next event.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        async def upload() -> None:
            api.note("task", scope["path"])

        api.note("app", scope["path"])
        asyncio.get_running_loop().create_task(upload())
        await hello(scope, receive, send)  # never suspends: the task gets no turn during the invocation

    for path in ("/a", "/b"):
        api.add(http_event(path))
    await run_loop(app, api, invoke_mode=mode)
    # Without the pass, /a's task would first run when /b's app suspends, or before the third `next`.
    assert api.index(("app", "/a")) < api.index(("task", "/a")) < api.index(("app", "/b"))


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["RESPONSE_STREAM", "BUFFERED"])
@pytest.mark.parametrize("kind", ["timer", "socket"])
async def test_a_timer_due_or_a_socket_ready_before_the_wait_keeps_the_pass(
    api: FakeRuntimeAPI, mode: str, kind: str
) -> None:
    # No task is ready, but a timer the app set is due, or a socket it watches has data. The pass before
    # the wait collects it (its callback then runs in that same pass, after the worker's step: the wait and
    # the next invocation), so it must not be skipped: with an app that never suspends it would never run.
    loop = asyncio.get_running_loop()
    reader, writer = socket.socketpair()

    def readable() -> None:
        loop.remove_reader(reader)
        api.note(kind, "/set")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        api.note("app", path)
        if path == "/set" and kind == "timer":
            loop.call_at(loop.time(), api.note, kind, path)  # due by the time the worker waits
        elif path == "/set":
            writer.send(b"x")
            loop.add_reader(reader, readable)
        await hello(scope, receive, send)

    for path in ("/set", "/next", "/last"):
        api.add(http_event(path))
    try:
        await run_loop(app, api, invoke_mode=mode)
    finally:
        reader.close()
        writer.close()
    assert api.index(("app", "/next")) < api.index((kind, "/set")) < api.index(("app", "/last"))


def _count_polls(monkeypatch: pytest.MonkeyPatch, trace: list[str]) -> None:
    selector: Any = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    select = selector.select

    def counting_select(timeout: float | None = None) -> Any:
        trace.append("poll")
        return select(timeout)

    monkeypatch.setattr(selector, "select", counting_select)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["RESPONSE_STREAM", "BUFFERED"])
@pytest.mark.parametrize("lifespan", [False, True])
async def test_a_worker_whose_app_leaves_nothing_to_run_skips_the_loop_pass(
    api: FakeRuntimeAPI, mode: str, lifespan: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pass before `next` would only poll the loop: it is skipped, but for one pass now and then that
    # takes a streamed response's cancelled flush callbacks off the loop's queue. An app with a lifespan
    # has the SIGTERM extension's long poll watched on the loop, which needs no pass either.
    trace: list[str] = []
    _count_polls(monkeypatch, trace)
    count = 3 * runtime_module._CANCELLED_KEPT

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            if not lifespan:
                raise RuntimeError("no lifespan here")
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        trace.append(scope["path"])
        await hello(scope, receive, send)

    for i in range(count):
        api.add(http_event(f"/{i}"))
    await run_loop(app, api, invoke_mode=mode, lifespan="auto")
    assert api.extensions == (["lambda-asgi-stream-sigterm"] if lifespan else [])
    polls = "".join("p" if entry == "poll" else "a" for entry in trace)
    between = polls[polls.index("a") : polls.rindex("a")]  # from the first app call to the last
    assert between.count("a") == count - 1
    if mode == "BUFFERED":
        assert "p" not in between, polls
    else:
        assert 1 <= between.count("p") <= 3, polls  # one per _CANCELLED_KEPT + 1 invocations


@pytest.mark.anyio
async def test_a_fault_of_ours_between_invocations_ends_serve_with_it(
    api: FakeRuntimeAPI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Not an invocation's fault (those are reported and the loop goes on): a bug in the loop itself. The
    # process must not end as if Lambda had stopped it cleanly.
    real = runtime_module.RuntimeClient.next_invocation
    calls: list[int] = []

    async def next_invocation(self: Any, quiet_fd: int = -1) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("a bug of ours")
        return await real(self, quiet_fd)

    monkeypatch.setattr(runtime_module.RuntimeClient, "next_invocation", next_invocation)
    invocation = api.add(http_event("/a"))
    runtime = LambdaRuntime(hello, make_config(api), handle_signals=False, blocking_waits=True)
    with anyio.fail_after(TIMEOUT), pytest.raises(ValueError, match="a bug of ours"):
        await runtime.serve()
    # said when that worker stops (with several, the others may go on a long time)
    assert "a worker stopped on an internal error" in caplog.text
    assert list(api.answers) == [invocation.request_id]


def test_a_pass_would_idle_only_when_it_would_run_nothing() -> None:
    loop = asyncio.new_event_loop()
    idle = runtime_module._pass_would_idle
    try:
        assert type(loop) is asyncio.SelectorEventLoop
        assert idle(loop)
        handle = loop.call_soon(print)
        assert not idle(loop)  # a callback is ready
        handle.cancel()
        assert idle(loop)  # a cancelled one runs nothing
        for _ in range(runtime_module._CANCELLED_KEPT):
            loop.call_soon(print).cancel()
        assert not idle(loop)  # too many kept: a pass is run to discard them
        loop.run_until_complete(asyncio.sleep(0))
        assert idle(loop)
        later = loop.call_later(60, print)
        assert idle(loop)  # a timer not yet due
        due = loop.call_at(loop.time(), print)
        assert not idle(loop)
        due.cancel()
        assert not idle(loop)  # cancelled but still first on the heap: the pass that would drop it runs
        loop.run_until_complete(asyncio.sleep(0))
        assert idle(loop)
        later.cancel()
        assert not idle(loop)  # a cancelled timer first on the heap: the pass would drop it
        loop.run_until_complete(asyncio.sleep(0))
        assert idle(loop)
        timers = [loop.call_later(60 + i, print) for i in range(150)]
        assert idle(loop)
        for timer in timers[1::2]:
            timer.cancel()
        assert idle(loop)  # half of them cancelled: a pass would leave the heap as it is
        timers[2].cancel()
        assert not idle(loop)  # most of them cancelled: a pass would rebuild the heap without them
        for timer in timers:
            timer.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        assert idle(loop)
        reader, writer = socket.socketpair()
        with reader, writer:
            loop.add_reader(reader, print)
            assert not idle(loop)  # a watched socket may be ready: only a poll can tell
            assert idle(loop, quiet_fd=reader.fileno())  # unless it needs no pass before the wait
            assert not idle(loop, quiet_fd=writer.fileno())
            loop.remove_reader(reader)
        assert idle(loop)
        loop.add_signal_handler(signal.SIGUSR1, print)
        assert not idle(loop)
        loop.remove_signal_handler(signal.SIGUSR1)
        assert idle(loop)
    finally:
        loop.close()
    assert not idle(None)  # no loop known, or one of another kind (uvloop): the pass runs

    class OtherLoop(asyncio.SelectorEventLoop):
        pass

    other = OtherLoop()
    try:
        assert not idle(other)
    finally:
        other.close()


@pytest.mark.anyio
async def test_server_closing_each_connection_is_fine() -> None:
    with FakeRuntimeAPI(close_connections=True) as api:
        invocations = [api.add(http_event(path)) for path in ("/a", "/b")]
        await run_loop(hello, api)
    assert [decode_streamed(api.response(i)).payload for i in invocations] == [b"hello /a", b"hello /b"]
    assert len({r.connection for r in api.requests}) == len(api.requests) == 5


@pytest.mark.anyio
async def test_dropped_connection_mid_stream_is_survived(
    api: FakeRuntimeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(200, [("content-type", "application/octet-stream")]))
        if scope["path"] == "/cut":
            # keep writing until the broken connection shows; the loop must not die with the app
            for _ in range(1000):
                await send(body(b"x" * 65536, more=True))
        await send(body(b"done"))

    cut = api.add(http_event("/cut"))
    api.cut_after_chunks[cut.request_id] = 1  # the fake hangs up right after the prelude chunk
    after = api.add(http_event("/after"))
    await run_loop(app, api)
    assert api.answers[cut.request_id].kind == "cut"
    assert f"invocation {cut.request_id}: response stream to Lambda broke" in caplog.text
    assert decode_streamed(api.response(after)).payload == b"done"


@pytest.mark.anyio
async def test_refused_response_post_is_logged_and_the_loop_goes_on(
    api: FakeRuntimeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    refused = api.add(http_event("/refused"))
    api.response_status[refused.request_id] = 413
    after = api.add(http_event("/after"))
    await run_loop(hello, api)
    assert decode_streamed(api.response(refused)).payload == b"hello /refused"
    assert "answered 413" in caplog.text
    assert decode_streamed(api.response(after)).payload == b"hello /after"


@pytest.mark.anyio
async def test_context_trace_id_and_request_id_quoting(
    api: FakeRuntimeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "left over from before")
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        context = scope["aws.context"]
        seen.append(
            {
                "id": context.aws_request_id,
                "arn": context.invoked_function_arn,
                "remaining": context.get_remaining_time_in_millis(),
                "var": current_context.get() is context,
                "trace": os.environ.get("_X_AMZN_TRACE_ID"),
                "event": scope["aws.event"]["rawPath"],
                "client": context.client_context and context.client_context.custom,
                "identity": context.identity and context.identity.cognito_identity_id,
                "tenant": context.tenant_id,
            }
        )
        await send(start(204))
        await send(body())

    odd = api.add(http_event("/odd"), request_id="id/with space", trace_id="Root=1-abc;Sampled=1")
    extra = [
        ("Lambda-Runtime-Client-Context", json.dumps({"custom": {"k": "v"}})),
        ("Lambda-Runtime-Cognito-Identity", json.dumps({"cognitoIdentityId": "us-east-1:x"})),
        ("Lambda-Runtime-Aws-Tenant-Id", "tenant-7"),
    ]
    plain = api.add(http_event("/plain"), trace_id="Root=1-def;Sampled=0", extra_headers=extra)
    untraced = api.add(http_event("/untraced"), trace_id="")
    await run_loop(app, api)
    assert api.response(odd).target == f"{API}/invocation/id%2Fwith%20space/response"
    assert [s["id"] for s in seen] == ["id/with space", plain.request_id, untraced.request_id]
    # one worker: the trace id is published in the environment, and removed when an invocation has none
    assert [s["trace"] for s in seen] == ["Root=1-abc;Sampled=1", "Root=1-def;Sampled=0", None]
    assert all(s["var"] and s["arn"] == odd.function_arn for s in seen)
    assert all(0 < s["remaining"] <= 60_000 for s in seen)
    assert [s["event"] for s in seen] == ["/odd", "/plain", "/untraced"]
    assert [(s["client"], s["identity"], s["tenant"]) for s in seen] == [
        (None, None, None),
        ({"k": "v"}, "us-east-1:x", "tenant-7"),
        (None, None, None),
    ]


@pytest.mark.anyio
async def test_concurrent_workers_serve_invocations_side_by_side(
    api: FakeRuntimeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    traces: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        traces.append(os.environ.get("_X_AMZN_TRACE_ID"))
        await send(start(200, [("content-type", "text/plain")]))
        if scope["path"] == "/slow":
            # finishes only once the other invocation was answered: both were in flight at once
            fast_id = scope["aws.event"]["headers"]["x-other"]
            await anyio.to_thread.run_sync(api.wait_for, lambda: fast_id in api.answers)
        await send(body(current_context.get().aws_request_id.encode()))

    fast_id = "fast-invocation"
    slow = api.add(http_event("/slow", headers=[("x-other", fast_id)]))
    fast = api.add(http_event("/fast"), request_id=fast_id)
    await run_loop(app, api, max_concurrency=2)
    assert decode_streamed(api.response(slow)).payload == slow.request_id.encode()
    assert decode_streamed(api.response(fast)).payload == fast_id.encode()
    assert api.response(slow).connection != api.response(fast).connection
    assert api.index(("answered", fast_id)) < api.index(("answered", slow.request_id))
    assert traces == [None, None]  # several workers: one environment variable cannot be right


class _PausedReader(FakeRuntimeAPI):
    """A fake that stops reading a response stream after its first chunk, until ``resume`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.resume = threading.Event()

    def _on_chunk(self, request: Any, data: bytes, sock: Any) -> None:
        super()._on_chunk(request, data, sock)
        if request.method == "POST":
            self.resume.wait(TIMEOUT)


@pytest.mark.anyio
async def test_large_body_arrives_intact_through_backpressure() -> None:
    # `await send()` returns once the bytes are handed to the socket: while Lambda does not read, the app
    # is held back, after at most what the kernel's socket buffers take, instead of queueing the body
    # in memory. Measured as the app's progress while the reader is paused.
    piece = hashlib.sha256(b"seed").digest() * (128 * 1024 // 32)  # 128 KiB
    total = 256  # 32 MiB in all: far more than loopback socket buffers hold before the reader resumes
    sent = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal sent
        await send(start(200, [("content-type", "application/octet-stream")]))
        for _ in range(total):
            await send(body(piece, more=True))
            sent += 1
        await send(body(b"tail"))

    with _PausedReader() as api:
        invocation = api.add(http_event("/big"))
        async with anyio.create_task_group() as group:
            group.start_soon(run_loop, app, api)
            with anyio.fail_after(TIMEOUT):
                seen = -1
                while sent < total and sent != seen:  # until the app stops making progress
                    seen = sent
                    await anyio.sleep(0.2)
            stalled_at = sent
            api.resume.set()
        out = decode_streamed(api.response(invocation))
    assert stalled_at < total // 2, f"the app wrote {stalled_at} of {total} pieces while nobody read"
    assert len(out.payload) == len(piece) * total + 4
    assert out.payload == piece * total + b"tail"


@pytest.mark.anyio
async def test_thousands_of_tiny_writes_in_one_pass_arrive_whole(api: FakeRuntimeAPI) -> None:
    # Written without a pause, they are held together for the end of the pass: more buffers than one
    # sendmsg call takes (EMSGSIZE once broke such a response). Each must still arrive, in order.
    pieces = [b"%d," % i for i in range(3000)]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(200, [("content-type", "text/plain")]))
        for piece in pieces:
            await send(body(piece, more=True))
        await send(body(b"end"))

    invocation = api.add(http_event("/tiny"))
    await run_loop(app, api)
    post = api.response(invocation)
    assert decode_streamed(post).payload == b"".join(pieces) + b"end"
    assert post.trailers == []


@pytest.mark.anyio
async def test_idle_padding_goes_through_the_real_connection(api: FakeRuntimeAPI) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        rid = scope["aws.context"].aws_request_id
        await send(start(200, [("content-type", "text/event-stream")]))
        await send(body(b"data: 1\n\n", more=True))
        # the app stays idle until the padder pushed a comment line out on its own
        await anyio.to_thread.run_sync(api.wait_for_payload, rid, b"\n:")
        await send(body(b"data: 2\n\n"))

    invocation = api.add(http_event("/sse"))
    policy = PaddingPolicy(mode="idle", idle_ms=1.0, threshold=1024)
    await run_loop(app, api, padding=policy)
    post = api.response(invocation)
    out = decode_streamed(post)
    lines = out.payload.split(b"\n")
    assert [line for line in lines if line and not line.startswith(b":")] == [b"data: 1", b"data: 2"]
    padding = [line for line in lines if line.startswith(b":")]
    assert padding and len(out.payload) >= 1024  # padded up to the threshold
    assert post.trailers == []


@pytest.mark.anyio
async def test_app_without_lifespan_support_is_served_in_auto_mode(api: FakeRuntimeAPI) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("only http")
        await hello(scope, receive, send)

    invocation = api.add(http_event("/x"))
    await run_loop(app, api, lifespan="auto")
    assert decode_streamed(api.response(invocation)).payload == b"hello /x"
    assert api.init_errors == []


@pytest.mark.anyio
async def test_required_lifespan_that_the_app_lacks_is_an_init_error(api: FakeRuntimeAPI) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("only http")
        await hello(scope, receive, send)

    api.add(http_event("/x"))
    runtime = LambdaRuntime(app, make_config(api, lifespan="on"), handle_signals=False)
    with anyio.fail_after(TIMEOUT), pytest.raises(StartupError):
        await runtime.serve()
    assert api.nexts() == []
    (init,) = api.init_errors
    assert init.header("Lambda-Runtime-Function-Error-Type") == "Function.StartupError"
    assert "only http" in json.loads(init.body)["errorMessage"]


def test_runtime_needs_an_address() -> None:
    with pytest.raises(RuntimeAPIError, match="AWS_LAMBDA_RUNTIME_API"):
        LambdaRuntime(hello, Config())


@pytest.mark.anyio
async def test_snap_start_waits_for_restore_before_the_first_next(api: FakeRuntimeAPI) -> None:
    invocation = api.add(http_event("/restored"))
    await run_loop(hello, api, snap_start=True)
    assert [r.target.rsplit("/", 2)[-2:] for r in api.requests][:2] == [
        ["restore", "next"],
        ["invocation", "next"],
    ]
    assert decode_streamed(api.response(invocation)).payload == b"hello /restored"


@pytest.mark.anyio
async def test_silently_dropped_idle_connection_is_replaced(fast_backoff: None) -> None:
    with FakeRuntimeAPI(drop_after_answer=True) as api:
        invocations = [api.add(http_event(path)) for path in ("/a", "/b", "/c")]
        await run_loop(hello, api)
    assert [decode_streamed(api.response(i)).payload for i in invocations] == [
        b"hello /a",
        b"hello /b",
        b"hello /c",
    ]
    assert len({api.response(i).connection for i in invocations}) == 3


@pytest.mark.anyio
async def test_prelude_over_16_kib_is_a_500_with_a_clear_error(api: FakeRuntimeAPI) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(200, [("x-huge", "h" * 20_000)]))
        await send(body(b"never sent"))

    invocation = api.add(http_event("/huge"))
    await run_loop(app, api)
    out = decode_streamed(api.response(invocation))
    assert out.prelude is not None and out.prelude["statusCode"] == 500
    assert out.error_type == "Function.PreludeTooLarge"
    assert out.error is not None and "x-huge" in out.error["errorMessage"]


@pytest.mark.anyio
async def test_unfinished_response_ends_with_protocol_error_trailers(api: FakeRuntimeAPI) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(200, [("content-type", "text/plain")]))
        await send(body(b"half", more=True))

    invocation = api.add(http_event("/half"))
    await run_loop(app, api)
    out = decode_streamed(api.response(invocation))
    assert out.payload == b"half"
    assert out.error_type == "Function.ASGIProtocolError"
    assert out.error is not None and "more_body=False" in out.error["errorMessage"]


@pytest.mark.anyio
async def test_binary_request_body_arrives_as_bytes(api: FakeRuntimeAPI) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        await send(start(200, [("content-type", "application/octet-stream")]))
        await send(body(hashlib.sha256(message["body"]).hexdigest().encode()))

    data = bytes(range(256)) * 4
    headers = [("content-type", "application/octet-stream")]
    invocation = api.add(http_event("/upload", method="POST", headers=headers, body=data))
    assert json.loads(api._queue[0].event)["isBase64Encoded"] is True
    await run_loop(app, api)
    assert decode_streamed(api.response(invocation)).payload == hashlib.sha256(data).hexdigest().encode()


@pytest.mark.anyio
async def test_a_program_that_embeds_the_loop_can_cancel_serve_while_it_waits_for_next() -> None:
    # Without the process's signals the loop does not block in its waits (they could not be cancelled):
    # cancelling serve() parked on a held `next` ends it, with the lifespan shut down.
    with FakeRuntimeAPI(when_empty="hold") as api:
        invocation = api.add(http_event("/one"))
        runtime = LambdaRuntime(hello, make_config(api), handle_signals=False)
        assert runtime.blocking_waits is False
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as group:
                group.start_soon(runtime.serve)
                while len(api.nexts()) < 2:  # served, and parked on the next `next`
                    await anyio.sleep(0.01)
                group.cancel_scope.cancel()
    assert decode_streamed(api.response(invocation)).payload == b"hello /one"
