"""A streamed response's POST when the deadline cuts it short (while its last chunk waits for a full
socket, while its connection is being opened) or when two callers meet while it connects. Real sockets on
loopback (a wrapper makes the kernel's partial writes happen at a chosen byte); h11 reads the request."""

from __future__ import annotations

import asyncio
import gc
import socket
import warnings
from collections.abc import Iterator
from typing import Any

import h11
import pytest

from lambda_asgi_stream import runtime_api
from lambda_asgi_stream._errors import DeadlineExceeded
from lambda_asgi_stream.cycle import HTTPCycle, PaddedStreamingResponder, StreamingResponder
from lambda_asgi_stream.padding import PaddingPolicy
from lambda_asgi_stream.sse import SSEOptions

from .helpers import LoopbackServer

PRELUDE = b'{"statusCode":200}' + b"\x00" * 8
SSE = [(b"content-type", b"text/event-stream")]


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    yield server
    server.close()


def read_until(sock: socket.socket, expected: bytes, settle: float = 0.2) -> bytes:
    """What arrives until ``expected`` has, and then whatever else comes within ``settle`` seconds."""
    wire = bytearray()
    while expected not in wire:
        data = sock.recv(1 << 20)
        assert data, "the connection closed"
        wire += data
    sock.settimeout(settle)
    try:
        while data := sock.recv(1 << 20):
            wire += data
    except TimeoutError:
        pass
    return bytes(wire)


def request_of(wire: bytes) -> tuple[list[bytes], list[tuple[bytes, bytes]], bytes]:
    """The body chunks and trailers of the first request on ``wire``, and the bytes left after it."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(wire)
    chunks: list[bytes] = []
    trailers: list[tuple[bytes, bytes]] = []
    while (event := conn.next_event()) is not h11.NEED_DATA:
        if isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        if isinstance(event, h11.EndOfMessage):
            trailers = [(bytes(k), bytes(v)) for k, v in event.headers]
            break
    return chunks, trailers, bytes(conn.trailing_data[0])


class GatedSocket:
    """The connection's real socket, whose ``sendmsg`` takes at most ``allow`` more bytes (None: no limit),
    then reports a full buffer (BlockingIOError): the kernel's partial writes, at a chosen byte."""

    def __init__(self, sock: socket.socket, allow: int | None) -> None:
        self.sock = sock
        self.allow = allow

    def sendmsg(self, buffers: Any) -> int:
        if self.allow is None:
            return self.sock.sendmsg(buffers)
        if self.allow == 0:
            raise BlockingIOError
        room, cut = self.allow, []
        for piece in buffers:
            part = memoryview(piece)[:room]
            cut.append(part)
            room -= len(part)
            if not room:
                break
        sent = self.sock.sendmsg(cut)
        self.allow -= sent
        return sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


@pytest.mark.anyio
async def test_the_sse_error_event_never_follows_the_last_chunk(server: LoopbackServer) -> None:
    # The app's final body message meets a full socket; the last chunk is partly written (so end() can no
    # longer take it back) and the deadline cancels the app while the rest waits. The failure report then
    # writes the SSE error event: it must not go after the last chunk, where the server reads it as the
    # start of a new request on the kept connection.
    post = server.client().open_stream(runtime_api.streaming_response("req-1"))
    sse = SSEOptions(heartbeat_s=0, error_event=True)
    responder = PaddedStreamingResponder(post, "function-url", PaddingPolicy(mode="explicit"), sse)
    final = b"data: 2\n\n"
    peers: list[socket.socket] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        peers.append(server.accept())
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await asyncio.sleep(0)  # a later pass: nothing held
        assert not post.connection.pending
        # The kernel takes the final chunk and two bytes of the last chunk, then is full.
        chunk_size = len(b"9\r\n" + final + b"\r\n")
        post.connection.sock = GatedSocket(post.connection.sock, chunk_size + 2)  # type: ignore[assignment]
        await send({"type": "http.response.body", "body": final})

    loop = asyncio.get_running_loop()
    loop.call_later(0.3, lambda: setattr(post.connection.sock, "allow", None))  # the socket drains later
    await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(app, deadline=loop.time() + 0.1)
    wire = await asyncio.to_thread(read_until, peers[0], b"0\r\n\r\n")
    chunks, _, after = request_of(wire)
    assert chunks[1:] == [b"data: 1\n\n", final]
    assert after == b"", f"bytes after the end of the request: {after[:60]!r}"


@pytest.mark.anyio
async def test_a_start_cancelled_while_connecting_still_reports_the_failure(server: LoopbackServer) -> None:
    # No kept connection: the prelude opens one, and the deadline cancels the app while it connects (a
    # non-blocking connect on loopback is EINPROGRESS: the task waits a pass). HTTPCycle.run then reports
    # the timeout: a 504 prelude and the error trailers, on the request that was never sent.
    post = server.client().open_stream(runtime_api.streaming_response("req-1"))
    responder = StreamingResponder(post, "function-url")
    starting = asyncio.ensure_future(responder.start(200, []))
    await asyncio.sleep(0)  # it is connecting
    assert post.connection.sock is None and not starting.done()
    starting.cancel()  # the deadline
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert not responder.started
    await responder.fail(DeadlineExceeded("cancelled at the invocation deadline"))  # as HTTPCycle.run does
    # Any connection that carries the request (the cancelled connect may have reached the backlog).
    while True:
        sock = await asyncio.to_thread(server.accept)
        sock.settimeout(0.5)
        try:
            first = sock.recv(1 << 20)
        except TimeoutError:
            continue
        if first:
            break
    wire = first
    while b"\r\n0\r\n" not in wire or not wire.endswith(b"\r\n\r\n"):  # the last chunk and its trailers
        wire += await asyncio.to_thread(sock.recv, 1 << 20)
    assert wire.startswith(b"POST /2018-06-01/runtime/invocation/req-1/response")
    _, trailers, _ = request_of(wire)
    assert any(name.lower() == b"lambda-runtime-function-error-type" for name, _ in trailers)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("policy", "headers"),
    [
        (PaddingPolicy(mode="explicit"), SSE),  # explicit flusher + SSE heartbeat: watched
        (PaddingPolicy(mode="idle"), [*SSE, (b"x-lambda-padding", b"idle")]),  # flusher made at start
    ],
)
async def test_a_flush_while_the_start_connects_does_not_fail(
    server: LoopbackServer, policy: PaddingPolicy, headers: list[tuple[bytes, bytes]]
) -> None:
    # A task of the app's calls flush() while http.response.start waits for the connection (no kept one:
    # a connect on loopback is EINPROGRESS): nothing to push yet, and nothing may fail.
    post = server.client().open_stream(runtime_api.streaming_response("req-1"))
    responder = PaddedStreamingResponder(post, "function-url", policy, SSEOptions(heartbeat_s=20))
    starting = asyncio.ensure_future(responder.start(200, headers))
    await asyncio.sleep(0)
    assert not starting.done() and responder.watched  # connecting
    try:
        await responder.flush()
    finally:
        await starting
        responder.close()


@pytest.mark.anyio
async def test_open_entered_twice_while_connecting_opens_one_connection(server: LoopbackServer) -> None:
    # A second caller while the first one connects (a send() from a task the app left running when it
    # returned, then the cycle's failure report): one connection, none left unclosed.
    post = server.client().open_stream(runtime_api.streaming_response("req-1"))
    responder = StreamingResponder(post, "function-url")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        asyncio.get_running_loop().create_task(
            send({"type": "http.response.start", "status": 200, "headers": []})
        )
        await asyncio.sleep(0)  # the task is connecting; the app returns (a protocol error: failure report)

    connections: list[Any] = []
    original = post.connection.open

    async def counting_open() -> None:
        connections.append(None)
        await original()

    post.connection.open = counting_open  # type: ignore[method-assign]
    gc.collect()  # earlier tests' garbage: its warnings are not this test's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(app)
        await asyncio.sleep(0.05)
        gc.collect()
    leaked = [w for w in caught if issubclass(w.category, ResourceWarning) and "socket" in str(w.message)]
    assert len(connections) == 1, f"{len(connections)} connections opened for one response"
    assert not leaked, [str(w.message) for w in leaked]
