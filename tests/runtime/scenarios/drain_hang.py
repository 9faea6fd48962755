"""A heartbeat write blocked on backpressure is cancelled when the app fails; the failure report after it
must still be woken when the socket drains (the cancelled write used to remove the report's wake-up)."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from lambda_asgi_stream import runtime_api
from lambda_asgi_stream.cycle import HTTPCycle, PaddedStreamingResponder
from lambda_asgi_stream.padding import PaddingPolicy
from lambda_asgi_stream.runtime import RuntimeClient
from lambda_asgi_stream.sse import SSEOptions

LAST_CHUNK = b"\r\n0\r\n"
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
server.bind(("127.0.0.1", 0))
server.listen(1)
received = bytearray()
start_reading = threading.Event()
got_last_chunk = threading.Event()


def peer() -> None:
    conn, _ = server.accept()
    start_reading.wait()  # the reader stalls for a while, then reads everything
    conn.settimeout(8)
    try:
        while data := conn.recv(65536):
            received.extend(data)
            if LAST_CHUNK in received:
                got_last_chunk.set()
                return
    except OSError:
        pass


async def main() -> None:
    client = RuntimeClient(f"127.0.0.1:{server.getsockname()[1]}")
    conn = client.connection
    await conn.open()
    assert conn.sock is not None
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    conn.reusable = True  # as if a `next` had just been read on it: the POST goes on this connection
    conn._used_at = time.monotonic()
    post = client.open_stream(runtime_api.streaming_response("req-1"))
    policy = PaddingPolicy(mode="explicit")
    responder = PaddedStreamingResponder(post, "function-url", policy, SSEOptions(heartbeat_s=0.1))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        assert conn.sock is not None
        while True:  # stands in for a reader that stopped: the kernel buffer is full
            try:
                conn.sock.send(b"x" * 1024)
            except BlockingIOError:
                break
        await asyncio.sleep(0.4)  # the heartbeat fires at 0.1 s and blocks on the socket
        raise RuntimeError("the app fails while the heartbeat write is blocked")

    asyncio.get_running_loop().call_later(0.6, start_reading.set)
    try:
        cycle = HTTPCycle({"type": "http", "method": "GET"}, b"", responder)
        result = await asyncio.wait_for(cycle.run(app), 5)
    except asyncio.TimeoutError:
        print("BUG: HTTPCycle.run() hung")
        return
    reached = await asyncio.get_running_loop().run_in_executor(None, got_last_chunk.wait, 5)
    print("OK: run() returned", result.end, "; last chunk reached peer:", reached)


threading.Thread(target=peer, daemon=True).start()
asyncio.run(main())
