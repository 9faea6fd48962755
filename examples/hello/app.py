"""A small Starlette app that streams: the README's ``invoke`` example and the deploy scripts' test app.

    lambda-asgi-stream invoke examples.hello.app:app --event examples/hello/event.json

prints each chunk with the time it reached the (local) Lambda Runtime API, a few hundred ms apart.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route


async def countdown(request: Request) -> StreamingResponse:
    """Server-Sent Events, one every 300 ms: each leaves the function as soon as it is written."""
    steps = int(request.query_params.get("from", "5"))

    async def events() -> AsyncIterator[str]:
        for n in range(steps, 0, -1):
            yield f"data: {json.dumps({'n': n})}\n\n"
            await anyio.sleep(0.3)
        yield "event: done\ndata: liftoff\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def hello(request: Request) -> JSONResponse:
    remaining = request.scope["aws.context"].get_remaining_time_in_millis()
    return JSONResponse({"hello": "world", "path": request.url.path, "remaining_ms": remaining})


app = Starlette(routes=[Route("/", hello), Route("/countdown", countdown)])
