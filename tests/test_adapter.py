"""The buffered ``Adapter(app)(event, context)`` path, end to end: what the managed runtime sees.

Its fast paths (one loop iteration per call, the loop's own clock for the deadline, the anyio backend's
CancelScope class used directly) must keep the semantics of ``loop.run_until_complete`` and of an
``anyio.CancelScope`` with the invocation's deadline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import json
import logging
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import anyio
import pytest

from lambda_asgi_stream import Adapter, ConfigError
from lambda_asgi_stream._types import Message, Receive, Scope, Send
from lambda_asgi_stream.events.build import build_event

seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")
ready_callbacks: list[str] = []


class Context:
    """What the managed runtime passes: only the remaining time matters here."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


async def reply(send: Send, body: bytes, content_type: bytes = b"text/plain", status: int = 200) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]}
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            scope["state"]["answer"] = 42
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    request: Message = await receive()
    if path == "/echo":
        info = {"body": request["body"].decode(), "state": dict(scope["state"]), "var": seen.get()}
        seen.set("changed")  # must not leak into the next call
        scope["state"]["answer"] = 0  # nor this: each call gets a copy of the lifespan state
        await reply(send, json.dumps(info).encode(), b"application/json")
    elif path == "/binary":
        await reply(send, b"\x89PNG\x00\xff", b"image/png")
    elif path == "/raise-before":
        raise ValueError("before the start")
    elif path == "/raise-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        raise KeyError("after the start")
    elif path == "/hang":
        await anyio.sleep(30)
    elif path == "/hang-after-start":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await anyio.sleep(30)
    elif path == "/swallow":
        with contextlib.suppress(BaseException):  # an app that ignores the first cancellation
            await anyio.sleep(30)
        await anyio.sleep(30)  # cancelled again: the deadline's scope keeps cancelling
    elif path == "/shield":
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.3)
        await anyio.sleep(30)
    elif path == "/deadline":
        loop_time = asyncio.get_running_loop().time()
        await reply(send, json.dumps(anyio.current_effective_deadline() - loop_time).encode())
    elif path == "/leave-ready":
        loop = asyncio.get_running_loop()
        loop.call_soon(ready_callbacks.append, "callback")
        await reply(send, b"ok")
    elif path == "/interrupt":
        raise KeyboardInterrupt
    elif path == "/stop-loop":
        asyncio.get_running_loop().stop()
        await anyio.sleep(0.05)
        await reply(send, b"late")
    else:
        await reply(send, b"not found", status=404)


@pytest.fixture
def adapter() -> Iterator[Adapter]:
    handler = Adapter(app)
    yield handler
    handler.close()


def event(path: str, integration: Any = "function-url", **kwargs: Any) -> dict[str, Any]:
    return build_event(integration, method="GET", path=path, **kwargs)


@pytest.mark.parametrize("integration", ["function-url", "http-api", "rest", "alb"])
def test_text_and_binary_bodies(adapter: Adapter, integration: Any) -> None:
    text = adapter(event("/echo", integration, body=b"hi", headers=[("content-type", "text/plain")]))
    assert text["statusCode"] == 200 and text["isBase64Encoded"] is False
    assert json.loads(text["body"]) == {"body": "hi", "state": {"answer": 42}, "var": "unset"}
    binary = adapter(event("/binary", integration), Context(30_000))
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\x89PNG\x00\xff"


def test_context_vars_and_lifespan_state_do_not_leak_between_calls(adapter: Adapter) -> None:
    for _ in range(3):
        body = json.loads(adapter(event("/echo"), Context(30_000))["body"])
        assert body["var"] == "unset" and body["state"] == {"answer": 42}
    assert seen.get() == "unset"
    assert adapter.lifespan.state == {"answer": 42}


def test_error_before_the_start_is_a_500_and_logged(adapter: Adapter, caplog: Any) -> None:
    with caplog.at_level(logging.ERROR, "lambda_asgi_stream"):
        response = adapter(event("/raise-before"), Context(30_000))
    assert response["statusCode"] == 500 and response["body"] == "Internal Server Error"
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [ValueError]


def test_error_after_the_start_is_a_whole_500_and_logged(adapter: Adapter, caplog: Any) -> None:
    # Buffered: nothing has left the function, so the half-made response is dropped for a whole 500,
    # as Mangum answers, and the traceback is logged at ERROR.
    response = adapter(event("/raise-after"), Context(30_000))
    assert (response["statusCode"], response["body"]) == (500, "Internal Server Error")
    assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.records)
    assert adapter(event("/echo"))["statusCode"] == 200  # the adapter goes on serving


def test_deadline_before_the_start_is_a_504(adapter: Adapter) -> None:
    started = time.monotonic()
    response = adapter(event("/hang"), Context(600))  # 500 ms margin: cancelled 100 ms from now
    assert time.monotonic() - started < 5
    assert response["statusCode"] == 504 and response["body"] == "Gateway Timeout"


def test_deadline_after_the_start_is_a_whole_504(adapter: Adapter) -> None:
    assert adapter(event("/hang-after-start"), Context(600))["statusCode"] == 504


def test_deadline_keeps_cancelling_an_app_that_swallows_the_first_cancellation(adapter: Adapter) -> None:
    started = time.monotonic()
    assert adapter(event("/swallow"), Context(600))["statusCode"] == 504
    assert time.monotonic() - started < 5


def test_deadline_waits_for_a_shielded_section(adapter: Adapter) -> None:
    started = time.monotonic()
    assert adapter(event("/shield"), Context(600))["statusCode"] == 504
    assert 0.3 <= time.monotonic() - started < 5


def test_deadline_is_the_apps_effective_anyio_deadline(adapter: Adapter) -> None:
    left = json.loads(adapter(event("/deadline"), Context(10_000))["body"])
    assert 9.0 < left <= 9.5  # 10 s minus the 500 ms margin
    no_context = json.loads(adapter(event("/deadline"))["body"])
    assert no_context == math.inf


def test_callbacks_the_app_leaves_ready_run_before_the_call_returns(adapter: Adapter) -> None:
    ready_callbacks.clear()
    assert adapter(event("/leave-ready"))["body"] == "ok"
    assert ready_callbacks == ["callback"]  # as under loop.run_until_complete


def test_base_exception_propagates_and_the_adapter_still_serves(adapter: Adapter) -> None:
    with pytest.raises(KeyboardInterrupt):
        adapter(event("/interrupt"))
    assert adapter(event("/echo"))["statusCode"] == 200


def test_a_call_the_app_stopped_the_loop_under_fails_alone(adapter: Adapter) -> None:
    with pytest.raises(RuntimeError, match="Event loop stopped before Future completed"):
        adapter(event("/stop-loop"))
    # The abandoned call finishes during the next one, and must not stop the loop under it.
    assert adapter(event("/hang"), Context(700))["statusCode"] == 504
    assert adapter(event("/echo"))["statusCode"] == 200


def test_one_deadline_timer_serves_call_after_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # __call__'s calls share one DeadlineTimer (each in its own task). The timer left armed for a past
    # call's deadline must not cut a later call short, and a later call's shorter deadline still holds.
    from lambda_asgi_stream import cycle as cycle_module

    monkeypatch.setattr(cycle_module, "_anyio_cancel_scope", lambda: None)  # the plain timer path

    async def pause(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await asyncio.sleep(float(scope["path"].strip("/")))
            await reply(send, b"done")

    handler = Adapter(pause, lifespan="off")
    try:
        assert handler(event("/0"), Context(600))["statusCode"] == 200  # its deadline: 100 ms from now
        time.sleep(0.2)  # that deadline passes between calls, with no loop running
        assert handler(event("/0.3"), Context(1500))["statusCode"] == 200  # 1 s budget, 0.3 s of work
        started = time.monotonic()
        assert handler(event("/30"), Context(600))["statusCode"] == 504
        assert time.monotonic() - started < 5
        assert handler(event("/0"), Context(30_000))["statusCode"] == 200
    finally:
        handler.close()


def test_calling_from_inside_a_running_loop_is_refused(adapter: Adapter) -> None:
    adapter(event("/echo"))

    async def nested() -> None:
        adapter(event("/echo"))

    with pytest.raises(RuntimeError, match="another loop is running"):
        asyncio.run(nested())
    assert adapter(event("/echo"))["statusCode"] == 200


def test_handle_on_a_loop_the_caller_runs() -> None:
    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        handler = Adapter(app, lifespan="off")
        ok = await handler.handle(event("/echo"), Context(30_000))
        late = await handler.handle(event("/hang"), Context(600))
        return ok, late

    ok, late = asyncio.run(main())
    assert ok["statusCode"] == 200 and late["statusCode"] == 504


def test_an_asyncio_cancellation_from_outside_is_not_swallowed() -> None:
    # wait_for cancels with task.cancel(), not through an anyio scope: it must still cancel the call.
    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(10)

    adapter = Adapter(slow, lifespan="off")
    event = build_event("function-url", method="GET", path="/")

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(adapter.handle(event), 0.05)

    asyncio.run(main())


def test_lifespan_startup_crash_is_a_warning_with_traceback_unsupported_is_info(caplog: Any) -> None:
    async def crashes(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            raise RuntimeError("database unreachable")
        await reply(send, b"ok")

    async def no_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError("only http")
        await reply(send, b"ok")

    with caplog.at_level("INFO", logger="lambda_asgi_stream"):
        for app_ in (crashes, no_lifespan):
            handler = Adapter(app_)
            assert handler(event("/"))["statusCode"] == 200  # served either way (auto mode)
            handler.close()
    crashed = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert [r.levelname for r in crashed] == ["WARNING"] and crashed[0].exc_info is not None
    unsupported = [r for r in caplog.records if "unsupported" in r.getMessage()]
    assert [r.levelname for r in unsupported] == ["INFO"] and not unsupported[0].exc_info


async def scope_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        raise ValueError("no lifespan")
    body = json.dumps({"path": scope["path"], "root_path": scope["root_path"]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"server", b"x"), (b"X-Powered-By", b"y")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def test_mangums_options_by_name_and_by_position() -> None:
    # Mangum(app, lifespan, api_gateway_base_path, custom_handlers, text_mime_types, exclude_headers)
    by_position = Adapter(scope_app, "off", "v1", None, ["text/plain"], ["Server", "x-powered-by"])
    by_name = Adapter(
        scope_app,
        lifespan="off",
        api_gateway_base_path="v1",
        text_mime_types=["text/plain"],
        exclude_headers=["Server", "x-powered-by"],
    )
    for handler in (by_position, by_name):
        response = handler(event("/v1/items", "rest"))
        assert response["headers"] == {"content-type": "application/json"}  # excluded, case-insensitive
        assert response["isBase64Encoded"]  # JSON is no longer text: text_mime_types replaced the defaults
        seen = json.loads(base64.b64decode(response["body"]))
        assert seen["root_path"].endswith("/v1") and seen["path"].endswith("/v1/items")
        handler.close()


def test_a_base_path_that_cannot_be_a_path_is_refused() -> None:
    with pytest.raises(ConfigError, match="api_gateway_base_path"):
        Adapter(scope_app, api_gateway_base_path="v1?x")


def test_the_one_pass_stop_falls_back_on_loops_without_a_ready_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    # _stop_after_ready_callbacks reads asyncio's private BaseEventLoop._ready to stop one pass sooner; a
    # loop without it (uvloop) takes the plain path: stop after one more pass, as run_until_complete does.
    from lambda_asgi_stream import adapter as adapter_module

    class NoReady:
        stopped_soon: ClassVar[list[Any]] = []

        def stop(self) -> None:
            raise AssertionError("must not stop at once without knowing what is ready")

        def call_soon(self, callback: Any) -> None:
            self.stopped_soon.append(callback)

    loop = NoReady()
    adapter_module._stop_after_ready_callbacks(loop)  # type: ignore[arg-type]
    assert loop.stopped_soon == [loop.stop]
    # and a whole Adapter works with the fallback taken on a real loop
    monkeypatch.setattr(adapter_module, "_stop_after_ready_callbacks", lambda lp: lp.call_soon(lp.stop))
    handler = Adapter(app, lifespan="off")
    assert handler(event("/echo"))["statusCode"] == 200
    assert handler(event("/leave-ready"))["statusCode"] == 200
    handler.close()


def test_the_deadline_does_not_load_anyios_backend_for_an_app_that_never_used_it() -> None:
    # Loading anyio's asyncio backend costs the first invocation ~10 ms; an app that imports anyio but has
    # not used it holds no anyio scope, so a plain timer enforces the deadline until it does.
    code = (
        "import sys, anyio\n"
        "from lambda_asgi_stream import Adapter\n"
        "from lambda_asgi_stream.events.build import build_event\n"
        "async def app(scope, receive, send):\n"
        "    start = {'type': 'http.response.start', 'status': 200}\n"
        "    await send({**start, 'headers': [(b'content-type', b'text/plain')]})\n"
        "    await send({'type': 'http.response.body', 'body': b'ok'})\n"
        "class Context:\n"
        "    def get_remaining_time_in_millis(self): return 30_000\n"
        "handler = Adapter(app, lifespan='off')\n"
        "assert handler(build_event('function-url', method='GET', path='/'), Context())['body'] == 'ok'\n"
        "print('anyio._backends._asyncio' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
