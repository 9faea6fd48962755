"""Real FastAPI and Starlette apps through the whole loop: fake Runtime API, LambdaRuntime, app, wire."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from fastapi import BackgroundTasks, FastAPI, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from lambda_asgi_stream import StartupError
from lambda_asgi_stream.config import Config
from lambda_asgi_stream.runtime import LambdaRuntime

from .fake_api import API, TIMEOUT, FakeRuntimeAPI, decode_streamed
from .helpers import PRELUDE_TYPE, http_event, make_config, run_loop


def request_id(request: Request) -> str:
    rid: str = request.scope["aws.context"].aws_request_id
    return rid


def starlette_cookies(*pairs: tuple[str, str]) -> list[str]:
    """The Set-Cookie values Starlette itself writes for these cookies."""
    response = Response()
    for name, value in pairs:
        response.set_cookie(name, value)
    return [v.decode() for k, v in response.raw_headers if k == b"set-cookie"]


def make_app(api: FakeRuntimeAPI) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        api.note("startup")
        yield {"db": "connected"}
        api.note("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/items/{item_id}")
    async def item(item_id: int, q: str = "") -> dict[str, Any]:
        return {"id": item_id, "q": q}

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        data = await request.body()
        return {"len": len(data), "json": json.loads(data)}

    @app.get("/stream")
    async def stream(request: Request) -> StreamingResponse:
        rid = request_id(request)

        async def parts() -> AsyncIterator[bytes]:
            for part in (b"one\n", b"two\n", b"three\n"):
                yield part
                # Each part reaches the Runtime API before the app makes the next one.
                await anyio.to_thread.run_sync(api.wait_for_payload, rid, part)
                api.note("app", "received", part)

        return StreamingResponse(parts(), media_type="text/plain")

    @app.get("/background")
    async def background(request: Request, tasks: BackgroundTasks) -> dict[str, bool]:
        rid = request_id(request)

        async def work() -> None:
            # Runs after the response: the terminator is on the wire before this work ends.
            await anyio.to_thread.run_sync(api.wait_for, lambda: rid in api.answers)
            api.note("background done", rid)

        tasks.add_task(work)
        return {"queued": True}

    @app.get("/state")
    async def state(request: Request) -> dict[str, Any]:
        seen = getattr(request.state, "mine", None)
        request.state.mine = "set by an earlier request"
        return {"db": request.state.db, "seen": seen}

    @app.get("/cookies")
    async def cookies(response: Response) -> dict[str, bool]:
        response.set_cookie("a", "1", path="/")
        response.set_cookie("b", "2", expires="Wed, 21 Oct 2015 07:28:00 GMT")
        return {"ok": True}

    @app.get("/old")
    async def old() -> RedirectResponse:
        return RedirectResponse("/new", status_code=307)

    @app.get("/multi")
    async def multi() -> Response:
        response = Response("multi", media_type="text/plain")
        response.raw_headers += [(b"x-multi", b"a"), (b"x-multi", b"b"), (b"x-single", b"c")]
        response.set_cookie("s", "1")
        response.set_cookie("t", "2")
        return response

    @app.get("/fail-before")
    async def fail_before() -> None:
        raise RuntimeError("endpoint failed")

    @app.get("/fail-after")
    async def fail_after() -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            yield b"first part"
            raise ValueError("generator failed")

        return StreamingResponse(parts(), media_type="text/plain")

    @app.get("/forever")
    async def forever() -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            yield b"tick"
            await anyio.sleep_forever()

        return StreamingResponse(parts(), media_type="text/plain")

    @app.get("/hang")
    async def hang() -> None:
        await anyio.sleep_forever()

    return app


@pytest.mark.anyio
async def test_plain_json(api: FakeRuntimeAPI) -> None:
    invocation = api.add(http_event("/items/3", query_string="q=x"))
    await run_loop(make_app(api), api)
    post = api.response(invocation)
    assert post.header("Content-Type") == PRELUDE_TYPE
    out = decode_streamed(post)
    assert out.prelude == {"statusCode": 200, "headers": {"content-type": "application/json"}}
    assert json.loads(out.payload) == {"id": 3, "q": "x"}
    assert out.error_type is None and post.trailers == []
    # next, response, next: the loop asked for the second invocation after answering the first.
    assert [(r.method, r.target.rsplit("/", 1)[-1]) for r in api.requests] == [
        ("GET", "next"),
        ("POST", "response"),
        ("GET", "next"),
    ]
    assert all((r.header("User-Agent") or "").startswith("lambda-asgi-stream/") for r in api.requests)


@pytest.mark.anyio
async def test_request_body_reaches_the_app(api: FakeRuntimeAPI) -> None:
    payload = json.dumps({"hello": "wörld"}).encode()
    headers = [("content-type", "application/json")]
    invocation = api.add(http_event("/echo", method="POST", headers=headers, body=payload))
    await run_loop(make_app(api), api)
    out = decode_streamed(api.response(invocation))
    assert json.loads(out.payload) == {"len": len(payload), "json": {"hello": "wörld"}}


@pytest.mark.anyio
async def test_streaming_response_chunks_leave_one_by_one(api: FakeRuntimeAPI) -> None:
    invocation = api.add(http_event("/stream"))
    await run_loop(make_app(api), api)
    post = api.response(invocation)
    out = decode_streamed(post)
    assert out.prelude == {"statusCode": 200, "headers": {"content-type": "text/plain; charset=utf-8"}}
    assert out.payload == b"one\ntwo\nthree\n"
    # one HTTP chunk for the prelude, then one per write, nothing merged or held back
    assert post.chunks[1:] == [b"one\n", b"two\n", b"three\n"]
    assert post.trailers == []
    received = [api.index(("app", "received", part)) for part in (b"one\n", b"two\n", b"three\n")]
    assert received == sorted(received)


@pytest.mark.anyio
async def test_background_tasks_finish_before_the_next_invocation(api: FakeRuntimeAPI) -> None:
    first = api.add(http_event("/background"))
    second = api.add(http_event("/items/1"))
    await run_loop(make_app(api), api)
    out = decode_streamed(api.response(first))
    assert json.loads(out.payload) == {"queued": True} and out.error_type is None
    answered = api.index(("answered", first.request_id))
    done = api.index(("background done", first.request_id))
    handed_out = api.index(("next", 200, second.request_id))
    next_after = min(
        i for i, e in enumerate(api.log) if e[0] == "head" and e[3].endswith("/next") and i > answered
    )
    # response complete -> background work done -> only then the next `next`
    assert answered < done < next_after < handed_out
    assert json.loads(decode_streamed(api.response(second)).payload) == {"id": 1, "q": ""}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "on"])
async def test_lifespan_state_once_per_environment(api: FakeRuntimeAPI, mode: str) -> None:
    first, second = api.add(http_event("/state")), api.add(http_event("/state"))
    await run_loop(make_app(api), api, lifespan=mode)
    for invocation in (first, second):
        # state from startup is visible; a request's own changes do not leak into the next request
        assert json.loads(decode_streamed(api.response(invocation)).payload) == {
            "db": "connected",
            "seen": None,
        }
    assert [e for e in api.log if e[0] in ("startup", "shutdown")] == [("startup",), ("shutdown",)]
    first_next = min(i for i, e in enumerate(api.log) if e[0] == "head" and e[3].endswith("/next"))
    assert api.index(("startup",)) < first_next
    assert api.index(("next", 410)) < api.index(("shutdown",))


@pytest.mark.anyio
async def test_two_cookies_go_to_the_prelude_cookies(api: FakeRuntimeAPI) -> None:
    invocation = api.add(http_event("/cookies"))
    await run_loop(make_app(api), api)
    out = decode_streamed(api.response(invocation))
    assert out.prelude is not None
    cookies = out.prelude["cookies"]
    assert len(cookies) == 2
    assert cookies[0].startswith("a=1;") and "Path=/" in cookies[0]
    assert cookies[1].startswith("b=2;") and "expires=Wed, 21 Oct 2015 07:28:00 GMT" in cookies[1]
    assert "set-cookie" not in out.prelude["headers"]
    assert json.loads(out.payload) == {"ok": True}


@pytest.mark.anyio
async def test_redirect_without_body_sends_prelude_and_delimiter(api: FakeRuntimeAPI) -> None:
    invocation = api.add(http_event("/old"))
    await run_loop(make_app(api), api)
    post = api.response(invocation)
    out = decode_streamed(post)
    # content-length is dropped in streaming mode; the status and location must survive
    assert out.prelude == {"statusCode": 307, "headers": {"location": "/new"}}
    assert out.payload == b"" and post.body.endswith(b"\x00" * 8)
    assert post.trailers == []


@pytest.mark.anyio
async def test_head_sends_headers_but_no_body(api: FakeRuntimeAPI) -> None:
    app = Starlette(routes=[Route("/page", lambda request: PlainTextResponse("hello page"))])
    head = api.add(http_event("/page", method="HEAD"))
    get = api.add(http_event("/page"))
    await run_loop(app, api)
    out_head, out_get = decode_streamed(api.response(head)), decode_streamed(api.response(get))
    assert (
        out_head.prelude
        == out_get.prelude
        == {
            "statusCode": 200,
            "headers": {"content-type": "text/plain; charset=utf-8"},
        }
    )
    assert out_get.payload == b"hello page"
    assert out_head.payload == b""  # RFC 9110 9.3.2: no content in a response to HEAD
    assert api.response(head).trailers == []


@pytest.mark.anyio
async def test_head_in_buffered_mode_has_an_empty_body(api: FakeRuntimeAPI) -> None:
    app = Starlette(routes=[Route("/page", lambda request: PlainTextResponse("hello page"))])
    head = api.add(http_event("/page", method="HEAD"))
    await run_loop(app, api, invoke_mode="BUFFERED")
    document = json.loads(api.response(head).body)
    assert document["statusCode"] == 200 and document["body"] == ""
    assert document["headers"]["content-type"] == "text/plain; charset=utf-8"


@pytest.mark.anyio
async def test_rest_event_gets_multi_value_headers(api: FakeRuntimeAPI) -> None:
    rest = api.add(http_event("/multi", integration="rest"))
    url = api.add(http_event("/multi"))
    await run_loop(make_app(api), api)
    out = decode_streamed(api.response(rest))
    assert out.prelude == {
        "statusCode": 200,
        "headers": {"content-type": "text/plain; charset=utf-8", "x-single": "c"},
        "multiValueHeaders": {"x-multi": ["a", "b"]},
        "cookies": starlette_cookies(("s", "1"), ("t", "2")),
    }
    assert out.payload == b"multi"
    # a Function URL prelude never carries multiValueHeaders: repeats are comma-joined
    url_prelude = decode_streamed(api.response(url)).prelude
    assert url_prelude is not None and "multiValueHeaders" not in url_prelude
    assert url_prelude["headers"]["x-multi"] == "a, b"


@pytest.mark.anyio
async def test_buffered_invoke_mode_posts_one_json_document(api: FakeRuntimeAPI) -> None:
    config = Config.from_env(
        {
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "LAMBDA_ASGI_STREAM_INVOKE_MODE": "BUFFERED",
            "LAMBDA_ASGI_STREAM_LIFESPAN": "off",
        }
    )
    url = api.add(http_event("/cookies"))
    rest = api.add(http_event("/multi", integration="rest"))
    await run_loop(make_app(api), api, config)
    post = api.response(url)
    assert post.header("Content-Type") == "application/json"
    assert post.header("Content-Length") == str(len(post.body))
    assert not post.chunked and post.trailers == []
    assert post.header("Transfer-Encoding") is None
    assert post.header("Lambda-Runtime-Function-Response-Mode") is None
    document = json.loads(post.body)
    assert document["statusCode"] == 200
    assert json.loads(document["body"]) == {"ok": True} and document["isBase64Encoded"] is False
    assert [c.split(";")[0] for c in document["cookies"]] == ["a=1", "b=2"]
    rest_document = json.loads(api.response(rest).body)
    assert rest_document["multiValueHeaders"]["x-multi"] == ["a", "b"]
    assert rest_document["body"] == "multi"


@pytest.mark.anyio
async def test_buffered_response_cut_by_an_error_is_a_whole_500(api: FakeRuntimeAPI, caplog: Any) -> None:
    invocation = api.add(http_event("/fail-after"))
    after = api.add(http_event("/items/2"))
    await run_loop(make_app(api), api, invoke_mode="BUFFERED")
    answer = json.loads(api.response(invocation).body)
    assert (answer["statusCode"], answer["body"]) == (500, "Internal Server Error")
    assert "generator failed" in caplog.text  # logged at ERROR with its traceback
    assert json.loads(json.loads(api.response(after).body)["body"]) == {"id": 2, "q": ""}


@pytest.mark.anyio
async def test_endpoint_error_gives_starlettes_500_and_the_loop_goes_on(api: FakeRuntimeAPI) -> None:
    failing = api.add(http_event("/fail-before"))
    after = api.add(http_event("/items/5"))
    await run_loop(make_app(api), api)
    out = decode_streamed(api.response(failing))
    # Starlette's ServerErrorMiddleware completes a 500 itself, then re-raises: the terminator is already
    # sent, so the re-raised error is logged, not reported (the background-work rule).
    assert out.prelude is not None and out.prelude["statusCode"] == 500
    assert out.payload == b"Internal Server Error"
    assert json.loads(decode_streamed(api.response(after)).payload) == {"id": 5, "q": ""}


@pytest.mark.anyio
async def test_error_after_start_ends_with_trailers(api: FakeRuntimeAPI) -> None:
    invocation = api.add(http_event("/fail-after"))
    await run_loop(make_app(api), api)
    post = api.response(invocation)
    out = decode_streamed(post)
    assert out.prelude is not None and out.prelude["statusCode"] == 200
    assert out.payload == b"first part"
    assert out.error_type == "Function.ValueError"
    assert out.error is not None and out.error["errorMessage"] == "generator failed"
    assert out.error["errorType"] == "ValueError"


@pytest.mark.anyio
async def test_deadline_before_start_gives_504_and_timeout_trailers(api: FakeRuntimeAPI) -> None:
    past = int(time.time() * 1000) - 1000
    invocation = api.add(http_event("/hang"), deadline_ms=past)
    await run_loop(make_app(api), api)
    out = decode_streamed(api.response(invocation))
    assert out.prelude is not None and out.prelude["statusCode"] == 504
    assert out.error_type == "Function.Timeout"
    assert out.error is not None and "deadline" in out.error["errorMessage"]


@pytest.mark.anyio
async def test_deadline_mid_stream_ends_with_timeout_trailers(api: FakeRuntimeAPI) -> None:
    # 300 ms left, margin 0: plenty for the first part, then the app hangs until it is cancelled
    invocation = api.add(http_event("/forever"), deadline_ms=int(time.time() * 1000) + 300)
    after = api.add(http_event("/items/7"))
    await run_loop(make_app(api), api, timeout_margin_ms=0)
    out = decode_streamed(api.response(invocation))
    assert out.prelude is not None and out.prelude["statusCode"] == 200
    assert out.payload == b"tick"
    assert out.error_type == "Function.Timeout"
    assert json.loads(decode_streamed(api.response(after)).payload) == {"id": 7, "q": ""}


@pytest.mark.anyio
async def test_lifespan_startup_failure_is_an_init_error(api: FakeRuntimeAPI) -> None:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield

    app = FastAPI(lifespan=lifespan)
    api.add(http_event("/"))
    runtime = LambdaRuntime(app, make_config(api, lifespan="auto"), handle_signals=False)
    with anyio.fail_after(TIMEOUT), pytest.raises(StartupError, match="no database"):
        await runtime.serve()
    assert api.nexts() == []  # init failed: not a single invocation was asked for
    (init,) = api.init_errors
    assert init.target == f"{API}/init/error"
    assert init.header("Lambda-Runtime-Function-Error-Type") == "Function.StartupError"
    error = json.loads(init.body)
    assert "no database" in error["errorMessage"] and error["errorType"] == "StartupError"
