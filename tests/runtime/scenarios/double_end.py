"""The deadline hits while the app's last body write waits on backpressure: the body must end with one last
chunk, the failure's with its error trailers (a clean one queued first used to be followed by a second)."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from lambda_asgi_stream import runtime_api
from lambda_asgi_stream.cycle import HTTPCycle, StreamingResponder
from lambda_asgi_stream.runtime import RuntimeClient

server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
received = bytearray()
go = threading.Event()


def peer() -> None:
    conn, _ = server.accept()
    go.wait()
    conn.settimeout(1.5)
    try:
        while data := conn.recv(65536):
            received.extend(data)
    except OSError:
        pass


async def main() -> None:
    client = RuntimeClient(f"127.0.0.1:{server.getsockname()[1]}")
    post = client.open_stream(runtime_api.streaming_response("req-1"))
    responder = StreamingResponder(post, "function-url")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"y" * (8 << 20)})  # more than the socket takes

    loop = asyncio.get_running_loop()
    loop.call_later(0.5, go.set)
    cycle = HTTPCycle({"type": "http", "method": "GET"}, b"", responder)
    result = await cycle.run(app, deadline=loop.time() + 0.2)
    print("cycle end:", result.end)


thread = threading.Thread(target=peer, daemon=True)
thread.start()
asyncio.run(main())
thread.join()
print("last-chunk terminators on the wire:", received.count(b"\r\n0\r\n"))
print("error trailers:", b"Lambda-Runtime-Function-Error-Type: Function.Timeout" in received)
