"""ASGI apps the emulator tests run in the sandbox (``serve tests.emulator.apps:app``).

Raw ASGI, so each route controls exactly which writes happen. Order proofs need no clock: a route that
must not produce its next event before the client has seen the previous one creates a marker file
``$EMU_TEST_SIGNALS/<key>.<n>`` after writing event ``n`` and then waits for ``<key>.go<n>``, which the
test creates only once it has read event ``n``. Waiting gives up after a while (so a broken emulator fails
a test instead of hanging it) and says so in the stream.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import anyio

Scope = dict[str, Any]

_GIVE_UP_S = 30.0
_BLOCK = bytes(range(256)) * 256  # 64 KiB


def _signals() -> Path:
    return Path(os.environ["EMU_TEST_SIGNALS"])


async def _wait_for(path: Path) -> bool:
    with anyio.move_on_after(_GIVE_UP_S):
        while not await anyio.Path(path).exists():
            await anyio.sleep(0.005)
        return True
    return False


def _query(scope: Scope) -> dict[str, str]:
    pairs = [p.partition("=") for p in scope["query_string"].decode().split("&") if p]
    return {k: v for k, _, v in pairs}


async def _start(send: Any, content_type: str, status: int = 200, extra: list[Any] | None = None) -> None:
    headers = [(b"content-type", content_type.encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _body(send: Any, data: bytes, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})


async def sse(scope: Scope, send: Any) -> None:
    """``n`` events; after each but the last, wait for the test's go-ahead. ``size`` pads the data."""
    q = _query(scope)
    key, n, size = q["key"], int(q.get("n", "3")), int(q.get("size", "0"))
    await _start(send, "text/event-stream")
    for i in range(1, n + 1):
        await _body(send, f"data: {i}{'x' * size}\n\n".encode())
        if i < n:
            (_signals() / f"{key}.{i}").touch()
            if not await _wait_for(_signals() / f"{key}.go{i}"):
                await _body(send, b"data: gave-up\n\n")
                break
    await _body(send, b"", more=False)


async def download(scope: Scope, send: Any) -> None:
    """``size`` bytes; with ``hang=1`` the function then blocks (until its timeout kills it)."""
    q = _query(scope)
    size = int(q["size"])
    await _start(send, "application/octet-stream")
    sent = 0
    while sent < size:
        piece = _BLOCK[: min(len(_BLOCK), size - sent)]
        await _body(send, piece)
        sent += len(piece)
    if q.get("hang") == "1":
        time.sleep(60)  # noqa: ASYNC251 (only killing the sandbox ends it)
    await _body(send, b"", more=False)


async def status(scope: Scope, send: Any) -> None:
    """Answers with status ``code`` and body ``body`` (ASGI lets an app ask for any int status)."""
    q = _query(scope)
    await _start(send, "text/plain", status=int(q["code"]))
    await _body(send, q.get("body", "").encode(), more=False)


async def crash(scope: Scope, send: Any) -> None:
    """One event, then an exception: the runtime ends the stream with error trailers."""
    await _start(send, "text/event-stream")
    await _body(send, b"data: 1\n\n")
    raise RuntimeError(f"boom {_query(scope).get('key', '')}")


async def crash_early(scope: Scope, send: Any) -> None:
    raise RuntimeError(f"early boom {_query(scope).get('key', '')}")


async def die(scope: Scope, send: Any) -> None:
    """The runtime process exits: before the response starts, or after one event."""
    if _query(scope).get("when") == "after":
        await _start(send, "text/event-stream")
        await _body(send, b"data: 1\n\n")
        (_signals() / f"{_query(scope)['key']}.1").touch()
        await _wait_for(_signals() / f"{_query(scope)['key']}.go1")
    print(f"app: exiting the process ({_query(scope).get('key', '')})", flush=True)
    os._exit(3)


async def block(scope: Scope, send: Any) -> None:
    """Blocks the event loop (a sync call in async code): only killing the sandbox ends it."""
    q = _query(scope)
    if q.get("stream") == "1":
        await _start(send, "text/event-stream")
        await _body(send, b"data: 1\n\n")
    time.sleep(float(q.get("seconds", "30")))  # noqa: ASYNC251 (the point of this route)
    await _body(send, b"data: late\n\n", more=False)


async def hang(scope: Scope, send: Any) -> None:
    """Awaits for ever after one event: the runtime cancels it at its deadline."""
    await _start(send, "text/event-stream")
    await _body(send, b"data: 1\n\n")
    await anyio.sleep(3600)


async def hello(scope: Scope, send: Any) -> None:
    from starlette.requests import Request

    request = Request(scope)
    q = _query(scope)
    print(f"app: hello {q.get('key', '')}", flush=True)
    payload = {
        "pid": os.getpid(),
        "scheme": scope["scheme"],
        "server": list(scope["server"]) if scope.get("server") else None,
        "path": scope["path"],
        "query": scope["query_string"].decode(),
        "url": str(request.url),
        "url_for_root": str(request.base_url),
        "cookies": request.cookies,
        "header": request.headers.get("x-test"),
        "client": list(scope["client"]) if scope.get("client") else None,
        "forwarded_for": request.headers.get("x-forwarded-for"),
    }
    extra = [
        (b"set-cookie", b"a=1; Path=/"),
        (b"set-cookie", b"b=2; Path=/"),
        (b"x-multi", b"one"),
        (b"x-multi", b"two"),
    ]
    await _start(send, "application/json", extra=extra)
    await _body(send, json.dumps(payload).encode(), more=False)


async def big_header(scope: Scope, send: Any) -> None:
    await _start(send, "text/plain", extra=[(b"x-big", b"v" * 20_000)])
    await _body(send, b"never sent", more=False)


async def body_of(scope: Scope, send: Any) -> None:
    """A plain body of ``size`` bytes in one message (for the 6 MB buffered limit)."""
    q = _query(scope)
    await _start(send, q.get("type", "text/plain").replace("%2F", "/"))
    await _body(send, b"x" * int(q["size"]), more=False)


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    """The request as the app got it: method, the headers named in ``show``, and the body."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    shown = {name: headers.get(name) for name in _query(scope).get("show", "").split(",") if name}
    await _start(send, "application/json")
    payload = {"method": scope["method"], "headers": shown, "body": body.decode("utf-8", "replace")}
    await _body(send, json.dumps(payload).encode(), more=False)


ROUTES = {
    "/sse": sse,
    "/download": download,
    "/crash": crash,
    "/crash-early": crash_early,
    "/die": die,
    "/block": block,
    "/hang": hang,
    "/hello": hello,
    "/big-header": big_header,
    "/body": body_of,
    "/status": status,
}


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/echo":
        await echo(scope, receive, send)
        return
    route = ROUTES.get(scope["path"])
    if route is None:
        await _start(send, "text/plain", status=404)
        await _body(send, b"not found", more=False)
        return
    await route(scope, send)
