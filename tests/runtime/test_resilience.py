"""One invocation's fault never ends the loop, and a fatal Runtime API fault never cuts other streams."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from lambda_asgi_stream import RuntimeAPIStatusError
from lambda_asgi_stream import runtime as runtime_module
from lambda_asgi_stream.events.build import build_event
from lambda_asgi_stream.runtime import LambdaRuntime
from lambda_asgi_stream.sse import SSEOptions

from .fake_api import TIMEOUT, FakeRuntimeAPI, decode_streamed
from .helpers import body, http_event, make_config, run_loop, start

pytestmark = pytest.mark.anyio


async def hello(scope: Any, receive: Any, send: Any) -> None:
    await send(start(200, [("content-type", "text/plain")]))
    await send(body(f"hello {scope['path']}".encode()))


async def test_an_unexpected_parser_error_costs_only_that_event(
    api: FakeRuntimeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = runtime_module.parse_event
    calls: list[int] = []

    def flaky(event: Any, context: Any = None, *, base_path: str = "") -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a gap in a parser")
        return real(event, context, base_path=base_path)

    monkeypatch.setattr(runtime_module, "parse_event", flaky)
    broken = api.add(http_event("/broken"))
    after = api.add(http_event("/after"))
    await run_loop(hello, api)
    answer = api.error(broken)
    assert dict(answer.headers)["Lambda-Runtime-Function-Error-Type"] == "Function.MalformedEvent"
    assert "a gap in a parser" in json.loads(answer.body)["errorMessage"]
    assert decode_streamed(api.response(after)).payload == b"hello /after"


async def test_an_internal_error_in_handle_is_reported_and_the_loop_goes_on(
    api: FakeRuntimeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = LambdaRuntime._stream
    calls: list[int] = []

    async def failing(self: LambdaRuntime, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("a bug of ours")
        return await real(self, *args)

    monkeypatch.setattr(LambdaRuntime, "_stream", failing)
    broken = api.add(http_event("/broken"))
    after = api.add(http_event("/after"))
    await run_loop(hello, api)
    assert json.loads(api.error(broken).body)["errorMessage"] == "a bug of ours"
    assert decode_streamed(api.response(after)).payload == b"hello /after"


async def test_a_broken_heartbeat_write_ends_that_stream_not_the_loop(api: FakeRuntimeAPI) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(200, [("content-type", "text/event-stream")]))
        if scope["path"] == "/sse":
            await send(body(b"data: 1\n\n", more=True))
            # Silent long enough for heartbeats to hit the connection the fake has hung up.
            with anyio.fail_after(TIMEOUT):
                while api.answers.get(cut.request_id) is None:
                    await anyio.sleep(0.01)
            await anyio.sleep(0.2)
            for _ in range(100):
                await send(body(b"data: 2\n\n", more=True))
        await send(body(b"data: end\n\n"))

    cut = api.add(http_event("/sse"))
    api.cut_after_chunks[cut.request_id] = 2  # the prelude, then "data: 1"
    after = api.add(http_event("/after"))
    await run_loop(app, api, sse=SSEOptions(heartbeat_s=0.02))
    assert api.answers[cut.request_id].kind == "cut"
    assert decode_streamed(api.response(after)).payload == b"data: end\n\n"


async def test_a_fatal_fault_of_one_worker_lets_the_stream_of_another_finish(api: FakeRuntimeAPI) -> None:
    api.refuse_next_after = 1  # the second worker's `next` is refused while the first one streams

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(200, [("content-type", "text/plain")]))
        await send(body(b"part 1 ", more=True))
        with anyio.fail_after(TIMEOUT):
            while ("next", 400) not in api.log:
                await anyio.sleep(0.005)
        await send(body(b"part 2"))

    streaming = api.add(http_event("/stream"))
    runtime = LambdaRuntime(app, make_config(api, max_concurrency=2), handle_signals=False)
    with anyio.fail_after(TIMEOUT + 5), pytest.raises(RuntimeAPIStatusError) as stopped:
        await runtime.serve()
    assert stopped.value.status == 400
    assert api.answers[streaming.request_id].kind == "response"
    assert decode_streamed(api.response(streaming)).payload == b"part 1 part 2"


async def test_alb_and_http_api_events_are_answered_buffered_in_stream_mode(
    api: FakeRuntimeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    alb = api.add(build_event("alb", method="GET", path="/alb"))
    http_api = api.add(build_event("http-api", method="GET", path="/http-api"))
    url = api.add(http_event("/url"))
    await run_loop(hello, api)
    for invocation, path in ((alb, "/alb"), (http_api, "/http-api")):
        answer = api.response(invocation)
        assert not answer.chunked
        assert json.loads(answer.body)["body"] == f"hello {path}"
    assert api.response(url).chunked
    assert caplog.text.count("cannot be streamed") == 1  # said once, not per event


def _lifespan_app(marks: list[str]) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        marks.append("startup")
        yield
        marks.append("shutdown")

    async def index(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/", index)], lifespan=lifespan)


async def test_an_app_with_lifespan_registers_for_sigterm(api: FakeRuntimeAPI) -> None:
    marks: list[str] = []
    invocation = api.add(http_event("/"))
    await run_loop(_lifespan_app(marks), api, lifespan="auto")
    assert api.extensions == ["lambda-asgi-stream-sigterm"]
    assert api.index(("extension",)) < api.index(("next",))  # registered during init
    # Sent before the first `next`, on a connection of its own: the fake's thread for it may read it last.
    api.wait_for(lambda: "/2020-01-01/extension/event/next" in [r.target for r in api.requests])
    assert decode_streamed(api.response(invocation)).payload == b"ok"
    assert marks == ["startup", "shutdown"]


async def test_no_extension_without_lifespan(api: FakeRuntimeAPI) -> None:
    api.add(http_event("/"))
    await run_loop(hello, api, lifespan="auto")
    assert api.extensions == []


async def test_a_buffered_response_over_6_mb_as_json_is_an_error_not_a_413(api: FakeRuntimeAPI) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        # 4 MB of quotes: under 6 MB as a body, about 8 MB once JSON escapes every one of them.
        await send(start(200, [("content-type", "application/json")]))
        await send(body(b'"' * (4 * 1024 * 1024)))

    big = api.add(http_event("/big"))
    await run_loop(app, api, invoke_mode="BUFFERED")
    answer = api.error(big)
    assert dict(answer.headers)["Lambda-Runtime-Function-Error-Type"] == "Function.ResponseSizeTooLarge"
    assert "6 MB" in json.loads(answer.body)["errorMessage"]


async def test_a_stray_cancelled_error_after_the_deadline_fired_is_a_timeout(api: FakeRuntimeAPI) -> None:
    import asyncio
    import time

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/after":
            await hello(scope, receive, send)
            return
        await send(start(200, [("content-type", "text/plain")]))
        await send(body(b"partial", more=True))
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.3)  # the deadline passes in here
            future = asyncio.get_running_loop().create_future()
            future.cancel()
            await future  # a CancelledError that is not the deadline scope's own

    late = api.add(http_event("/shielded"), deadline_ms=int(time.time() * 1000) + 50)
    after = api.add(http_event("/after"))
    await run_loop(app, api, timeout_margin_ms=0)
    streamed = decode_streamed(api.response(late))
    assert streamed.payload == b"partial"
    assert streamed.error_type == "Function.Timeout"
    assert decode_streamed(api.response(after)).payload == b"hello /after"


async def test_non_ascii_buffered_bodies_are_measured_as_utf8_json(api: FakeRuntimeAPI) -> None:
    text = "\u65e5\u672c\u8a9e" * 400_000  # 3.6 MB of UTF-8; ~7.2 MB if JSON escaped it as \uXXXX

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(200, [("content-type", "text/html; charset=utf-8")]))
        await send(body(text.encode()))

    page = api.add(http_event("/page"))
    await run_loop(app, api, invoke_mode="BUFFERED")
    assert json.loads(api.response(page).body)["body"] == text


async def test_a_stray_cancelled_error_costs_one_invocation_on_every_python(api: FakeRuntimeAPI) -> None:
    import asyncio

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/stray":
            task = asyncio.ensure_future(asyncio.sleep(10))
            task.cancel()
            await task  # CancelledError, though nobody cancelled the app
        await hello(scope, receive, send)

    stray = api.add(http_event("/stray"))
    after = api.add(http_event("/after"))
    await run_loop(app, api)
    answer = api.answers[stray.request_id]
    if answer.kind == "response":  # 3.11+: the cycle tells it apart: a 500 and error trailers
        streamed = decode_streamed(answer.request)
        assert streamed.prelude is not None and streamed.prelude["statusCode"] == 500
        assert streamed.error_type == "Function.RuntimeError"
    else:  # 3.10: the loop's backstop reports it on /error
        assert answer.kind == "error"
    assert decode_streamed(api.response(after)).payload == b"hello /after"


class _Hostile(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception fails")


async def test_a_hostile_exception_mid_stream_still_ends_the_stream_once(api: FakeRuntimeAPI) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(200, [("content-type", "text/plain")]))
        await send(body(b"part", more=True))
        if scope["path"] == "/huge":
            raise ValueError("password=hunter2 " + "x" * (2 * 1024 * 1024))
        raise _Hostile()

    hostile = api.add(http_event("/hostile"))
    huge = api.add(http_event("/huge"))
    await run_loop(app, api)  # fails on a second answer for the same request id
    out = decode_streamed(api.response(hostile))
    assert (out.payload, out.error_type) == (b"part", "Function.Hostile")
    assert out.error is not None and "str() failed" in out.error["errorMessage"]
    cut = api.response(huge)
    assert decode_streamed(cut).error_type == "Function.ValueError"
    assert sum(len(value) for _, value in cut.trailers) < 12 * 1024  # not the 2.8 MB it was
