"""The raw ASGI app of ``soak.py``: each request says, in its ``x-soak`` header, what the app must do.

The header is a JSON object: ``kind`` (what to do), ``nonce`` (echoed in the ``x-soak-nonce`` response
header, at the start of every body and in every error message, so an answer that reaches the wrong
request id is recognised), ``size`` (body bytes), ``chunks`` (body messages), ``pause_ms`` (sleeps
between SSE events), ``ctype``. The body is :func:`body_of` ``(nonce, size, ctype)``: ``soak.py``
computes the same bytes to check what the fake Runtime API received. The ``x-soak-req`` response header
is the SHA-256 of the request body the app received.

Kinds: ``ok`` (the body in ``chunks`` messages; ``ctype`` text/event-stream: ``chunks`` events, with
pauses), ``raise_before`` / ``raise_after`` (:class:`SoakBoom`, before the response start, or after every
body message, all sent with ``more_body``), ``hostile_before`` / ``hostile_after`` (the same with
:class:`HostileError`, whose ``__str__`` raises), ``deadline_before`` / ``deadline_after`` (sleep
until cancelled, before the start or after the body messages), ``deadline_blocking`` (``time.sleep``
past the deadline without yielding, then send).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from typing import Any

SSE_TYPE = "text/event-stream"


class SoakBoom(Exception):
    """The app's own failure; its message carries the request's nonce."""


class HostileError(Exception):
    """An exception that cannot be printed: ``str()`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("hostile __str__")


def pieces_of(plan: dict[str, Any]) -> list[bytes]:
    """The body messages the app sends for ``plan`` (every one of them, for the failing kinds too)."""
    if plan["kind"] in ("raise_before", "hostile_before", "deadline_before", "deadline_blocking"):
        return []
    if plan["ctype"] == SSE_TYPE:
        return sse_events(plan["nonce"], plan["size"], plan["chunks"])
    return split(body_of(plan["nonce"], plan["size"], plan["ctype"]), plan["chunks"])


def body_of(nonce: str, size: int, ctype: str) -> bytes:
    """The response body for ``nonce``: starts with the nonce (when it fits), then seeded filler."""
    prefix = f"{nonce}:".encode()
    if size < len(prefix):
        return prefix[:size]
    rest = size - len(prefix)
    rng = random.Random(nonce)
    if ctype.startswith("text/"):
        filler = rng.randbytes((rest + 1) // 2).hex().encode()[:rest]
    else:
        filler = rng.randbytes(rest)
    return prefix + filler


def sse_events(nonce: str, size: int, count: int) -> list[bytes]:
    """``count`` SSE events of about ``size`` bytes in all, each naming the nonce and its index."""
    each = max(0, size // max(count, 1) - 40)
    rng = random.Random(nonce)
    return [f"id: {i}\ndata: {nonce} {i} {rng.randbytes(each // 2).hex()}\n\n".encode() for i in range(count)]


def split(data: bytes, parts: int) -> list[bytes]:
    """``data`` in ``parts`` pieces (some maybe empty when data is short), in order."""
    parts = max(parts, 1)
    step = -(-len(data) // parts) if data else 0
    return [data[i * step : (i + 1) * step] for i in range(parts)] if step else [data] + [b""] * (parts - 1)


def _headers(plan: dict[str, Any], request_body: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", plan["ctype"].encode()),
        (b"x-soak-nonce", plan["nonce"].encode()),
        (b"x-soak-req", hashlib.sha256(request_body).hexdigest().encode()),
    ]


async def _read_body(receive: Any) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    raw = dict(scope["headers"]).get(b"x-soak")
    if raw is None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"no x-soak header"})
        return
    plan = json.loads(raw)
    await serve(plan, await _read_body(receive), send)


async def serve(plan: dict[str, Any], request_body: bytes, send: Any) -> None:
    kind, nonce = plan["kind"], plan["nonce"]
    if kind == "deadline_blocking":
        # On purpose: an app that never yields, stopped by its next send() after the deadline.
        time.sleep(plan["pause_ms"] / 1000)  # noqa: ASYNC251
    if kind in ("raise_before", "hostile_before"):
        raise SoakBoom(f"boom {nonce}") if kind == "raise_before" else HostileError()
    if kind == "deadline_before":
        await asyncio.sleep(3600)
    start = {"type": "http.response.start", "status": 200, "headers": _headers(plan, request_body)}
    await send(start)
    pieces = pieces_of(plan)
    failing = kind in ("raise_after", "hostile_after", "deadline_after")
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1 and not failing
        await send({"type": "http.response.body", "body": piece, "more_body": not last})
        if plan["pause_ms"] and not last and kind != "deadline_blocking":
            await asyncio.sleep(plan["pause_ms"] / 1000)
    if kind == "raise_after":
        raise SoakBoom(f"boom {nonce}")
    if kind == "hostile_after":
        raise HostileError()
    if kind == "deadline_after":
        await asyncio.sleep(3600)
