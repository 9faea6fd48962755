"""Routes for the end-record tests, run by ``serve`` (raw ASGI: each route controls its writes)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

from lambda_asgi_stream._types import Receive, Scope, Send


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    q = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
    kind, n, pause = scope["path"].strip("/"), int(q.get("n", "3")), float(q.get("pause", "0"))
    types = {
        "sse": "text/event-stream",
        "ndjson": "application/x-ndjson",
        "csv": "text/csv",
        "crash": "text/event-stream",
    }
    headers: list[Any] = [(b"content-type", types[kind].encode())]
    if "opt" in q:
        headers.append((b"x-lambda-end-record", q["opt"].encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for i in range(n):
        line = {
            "sse": f"data: {i}\n\n",
            "ndjson": f'{{"i": {i}}}\n',
            "csv": f"{i},x\r\n",
            "crash": f"data: {i}\n\n",
        }
        await send({"type": "http.response.body", "body": line[kind].encode(), "more_body": True})
        await asyncio.sleep(pause)
    if kind == "crash":
        raise RuntimeError("cut mid-stream")
    await send({"type": "http.response.body", "body": b"", "more_body": False})
