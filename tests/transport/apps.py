"""Real FastAPI, Starlette and sse-starlette apps the transport tests run through the Lambda path.

Each factory takes a :class:`Probe`: the gates the test opens and the log of what the app did, so a
test can tell "the client had chunk 1 before the app produced chunk 2" from "the app had finished".
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.routing import Route

from lambda_asgi_stream._types import Receive, Scope, Send

GATE_TIMEOUT = 5.0


@dataclass
class Probe:
    """Shared between a test and its app. ``gates[i]`` lets the app go on past step ``i``."""

    steps: int = 3
    log: list[tuple[str, float]] = field(default_factory=list)
    gates: list[anyio.Event] = field(default_factory=list)
    thread_gates: list[threading.Event] = field(default_factory=list)
    sync: bool = False  # gates are threading.Events (the app runs on the sync transport's own loop)
    startups: int = 0
    shutdowns: int = 0
    closed: bool = False

    def __post_init__(self) -> None:
        if self.sync:
            self.thread_gates = [threading.Event() for _ in range(self.steps)]
        else:
            self.gates = [anyio.Event() for _ in range(self.steps)]

    def note(self, what: str) -> None:
        self.log.append((what, time.perf_counter()))

    def did(self, what: str) -> bool:
        return any(name == what for name, _ in self.log)

    def when(self, what: str) -> float:
        return next(t for name, t in self.log if name == what)

    def open(self, i: int) -> None:
        if self.sync:
            self.thread_gates[i].set()
        else:
            self.gates[i].set()

    async def wait(self, i: int) -> None:
        """Wait for the test to open gate ``i``; fail (never hang) if it does not."""
        if self.sync:
            gate = self.thread_gates[i]
            if not await anyio.to_thread.run_sync(gate.wait, GATE_TIMEOUT):
                raise TimeoutError(f"gate {i} never opened: the client did not get the earlier chunk")
            return
        with anyio.fail_after(GATE_TIMEOUT):
            await self.gates[i].wait()


class Item(BaseModel):
    name: str
    tags: list[str]


def fastapi_app(probe: Probe) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        probe.startups += 1
        yield {"db": "connected", "startups": probe.startups}
        probe.shutdowns += 1

    app = FastAPI(lifespan=lifespan)

    @app.get("/json")
    async def json_endpoint(q: str = "") -> dict[str, Any]:
        return {"hello": "lambda", "q": q}

    @app.post("/items")
    async def create_item(item: Item) -> JSONResponse:
        return JSONResponse({"created": item.model_dump()}, status_code=201)

    @app.post("/binary")
    async def binary(request: Request) -> Response:
        data = await request.body()
        return Response(
            content=data[::-1],
            media_type="application/octet-stream",
            headers={"x-sha256": hashlib.sha256(data).hexdigest(), "x-length": str(len(data))},
        )

    @app.get("/state")
    async def state(request: Request) -> dict[str, Any]:
        return {"db": request.state.db, "startups": request.state.startups}

    @app.get("/items/{item_id}")
    async def item(item_id: int, request: Request) -> dict[str, Any]:
        return {
            "id": item_id,
            "root_path": request.scope["root_path"],
            "url": str(request.url_for("item", item_id=item_id)),
        }

    @app.get("/cookies/set")
    async def set_cookies() -> Response:
        response = PlainTextResponse("set")
        response.set_cookie("session", "abc123", httponly=True)
        # Expires holds a comma: it must survive as its own Set-Cookie, never comma-joined.
        response.set_cookie("theme", "dark", expires="Wed, 21 Oct 2037 07:28:00 GMT")
        response.headers["x-multi"] = "a"
        response.headers.append("x-multi", "b")
        return response

    @app.get("/cookies/echo")
    async def echo_cookies(request: Request) -> dict[str, str]:
        return dict(request.cookies)

    @app.get("/old")
    async def old() -> RedirectResponse:
        return RedirectResponse("/json?q=moved", status_code=307)

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(probe.steps):
                if i:
                    await probe.wait(i - 1)
                probe.note(f"produced {i}")
                yield f"chunk {i}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/ndjson")
    async def ndjson() -> StreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            for i in range(probe.steps):
                if i:
                    await probe.wait(i - 1)
                probe.note(f"produced {i}")
                yield f'{{"n": {i}}}\n'.encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.get("/small-writes")
    async def small_writes(n: int = 5, size: int = 6) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(n):
                probe.note(f"produced {i}")
                yield str(i % 10).encode() * size
                await anyio.lowlevel.checkpoint()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/forever")
    async def forever() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                i = 0
                while True:
                    probe.note(f"produced {i}")
                    yield b"tick\n"
                    i += 1
                    await anyio.lowlevel.checkpoint()
            finally:
                probe.closed = True

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/fail-mid-stream")
    async def fail_mid_stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"partial "
            yield b"body"
            raise RuntimeError("boom mid-stream")

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/fail-in-endpoint")
    async def fail_in_endpoint() -> dict[str, str]:
        raise ValueError("boom in endpoint")

    @app.get("/slow-stream")
    async def slow_stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"before the deadline"
            await anyio.sleep(30)
            yield b"never"

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/huge-header")
    async def huge_header() -> PlainTextResponse:
        return PlainTextResponse("x", headers={"x-huge": "h" * 20_000})

    @app.get("/sse")
    async def sse() -> EventSourceResponse:
        async def events() -> AsyncIterator[dict[str, Any]]:
            for i in range(probe.steps):
                if i:
                    await probe.wait(i - 1)
                probe.note(f"produced {i}")
                yield {"event": "token", "id": str(i), "data": f"word {i}"}

        return EventSourceResponse(events(), ping=600)

    return app


def starlette_app(probe: Probe) -> Starlette:
    async def echo(request: Any) -> JSONResponse:
        scope = request.scope
        return JSONResponse(
            {
                "method": scope["method"],
                "path": scope["path"],
                "raw_path": scope["raw_path"].decode("ascii"),
                "root_path": scope["root_path"],
                "query_string": scope["query_string"].decode("latin-1"),
                "query": [list(pair) for pair in request.query_params.multi_items()],
                "headers": {k: v for k, v in request.headers.items()},
                "scheme": scope["scheme"],
                "server": list(scope["server"]) if scope["server"] else None,
            }
        )

    async def head_or_get(request: Any) -> PlainTextResponse:
        return PlainTextResponse("body that HEAD must not carry", headers={"x-kind": "page"})

    return Starlette(
        routes=[
            Route("/page", head_or_get, methods=["GET"]),
            Route("/{rest:path}", echo, methods=["GET", "POST"]),
        ]
    )


async def fail_before_start(scope: Scope, receive: Receive, send: Send) -> None:
    """A raw ASGI app that raises before http.response.start: the runtime must answer 500 for it."""
    if scope["type"] != "http":
        return
    raise ValueError("boom before start")


async def slow_before_start(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await anyio.sleep(30)
