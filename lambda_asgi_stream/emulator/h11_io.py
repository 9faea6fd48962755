"""Server-side HTTP/1.1 helpers for the local Runtime API (h11 over an anyio socket stream)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.abc
import h11


async def next_event(conn: h11.Connection, stream: anyio.abc.SocketStream) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await stream.receive(256 * 1024)
        except anyio.EndOfStream:
            data = b""
        conn.receive_data(data)


async def read_body(conn: h11.Connection, stream: anyio.abc.SocketStream) -> bytes:
    body = bytearray()
    while True:
        event = await next_event(conn, stream)
        if isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        else:
            raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} in a request body")


async def drain_body(conn: h11.Connection, stream: anyio.abc.SocketStream) -> None:
    await read_body(conn, stream)


async def reply(
    conn: h11.Connection,
    stream: anyio.abc.SocketStream,
    status: int,
    payload: Any,
    extra: list[tuple[str, str]] | None = None,
) -> None:
    body = json.dumps(payload).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *(extra or [])]
    await stream.send(
        conn.send(h11.Response(status_code=status, headers=headers))
        + conn.send(h11.Data(data=body))
        + conn.send(h11.EndOfMessage())
    )


def header(req: h11.Request, name: str) -> str:
    wanted = name.encode()
    for key, value in req.headers:
        if key == wanted:
            return bytes(value).decode("latin-1")
    return ""


def json_or_text(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body.decode("utf-8", "replace")
