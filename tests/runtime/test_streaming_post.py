"""When the bytes of a streamed response reach the socket: the pass that starts the response sends its
burst together, every later write leaves at once; what the writer does at the end of that pass (its
flush, the padding flusher's call, in a context of their own). Real sockets on loopback; h11 reads the
request at the end."""

from __future__ import annotations

import asyncio
import contextvars
import socket
from collections.abc import Iterator
from typing import Any

import h11
import pytest

from lambda_asgi_stream import http1, runtime_api
from lambda_asgi_stream.cycle import HTTPCycle, PaddedStreamingResponder
from lambda_asgi_stream.padding import PaddingPolicy
from lambda_asgi_stream.runtime import HOLD_LIMIT, StreamingPost

from .helpers import LoopbackServer

PRELUDE = b'{"statusCode":200}' + b"\x00" * 8
APP_VAR: contextvars.ContextVar[bytes] = contextvars.ContextVar("app_var")


class Peer:
    """The server end of the connection: what has arrived so far, without waiting for more."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(5)
        self.wire = bytearray()

    def arrived(self, expected: bytes) -> bytes:
        """Everything sent so far, once ``expected`` has arrived (bytes on loopback may take a moment)."""
        while expected not in self.wire:
            data = self.sock.recv(1 << 20)
            assert data, "the connection closed"
            self.wire += data
        return bytes(self.wire)

    def nothing_more(self, post: StreamingPost) -> bool:
        """No byte of ours is on the way: the queue is empty and the socket has nothing unread."""
        self.sock.setblocking(False)
        try:
            self.wire += self.sock.recv(1 << 20)
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(5)
        return not post.connection.pending


class Server(LoopbackServer):
    """The loopback server, and a response started on a connection to it."""

    async def open_stream(self) -> tuple[StreamingPost, Peer]:
        """A response started by its prelude, in the current event-loop pass (a fixture would end it)."""
        post = self.client().open_stream(runtime_api.streaming_response("req-1"))
        await post.prelude(PRELUDE)  # connects; the prelude itself waits for the body or the pass's end
        return post, Peer(self.accept())


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server()
    yield server
    server.close()


def chunks_of(wire: bytes) -> list[bytes]:
    """The request's body chunks as h11 reads them (and a check that the framing is sound)."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(wire)
    seen: list[bytes] = []
    while (event := conn.next_event()) is not h11.NEED_DATA:
        if isinstance(event, h11.Data):
            seen.append(bytes(event.data))
        if isinstance(event, h11.EndOfMessage):
            break
    return seen


@pytest.mark.anyio
async def test_a_burst_after_the_first_body_bytes_leaves_at_the_end_of_the_pass(server: Server) -> None:
    post, peer = await server.open_stream()
    await post.write(b"one")  # the first body bytes leave at once, with the head and the prelude
    assert b"one" in peer.arrived(b"3\r\none\r\n")
    await post.write(b"two")
    await post.write(b"three")
    assert not peer.nothing_more(post)  # held: the app has not paused yet
    assert b"two" not in peer.wire
    await asyncio.sleep(0)  # the pass ends
    peer.arrived(b"5\r\nthree\r\n")
    await asyncio.sleep(0)
    await post.write(b"four")  # a later pass writes at once
    peer.arrived(b"4\r\nfour\r\n")
    assert peer.nothing_more(post)
    await post.end(b"", [])
    wire = peer.arrived(b"0\r\n\r\n")
    assert chunks_of(wire) == [PRELUDE, b"one", b"two", b"three", b"four"]  # each write its own chunk


@pytest.mark.anyio
async def test_the_end_takes_what_is_held_along(server: Server) -> None:
    post, peer = await server.open_stream()
    await post.write(b"a")
    for piece in (b"b", b"c"):
        await post.write(piece)
    await post.end(b"d", [])  # the response ends within the pass: all of it in one go
    assert peer.nothing_more(post)
    assert chunks_of(peer.arrived(b"0\r\n\r\n")) == [PRELUDE, b"a", b"b", b"c", b"d"]


@pytest.mark.parametrize("ends_in_the_pass", [True, False])
@pytest.mark.anyio
async def test_more_held_chunks_than_one_system_call_takes_all_arrive(
    server: Server, ends_in_the_pass: bool
) -> None:
    # Three pieces per chunk: 2,000 one-byte writes held are 6,000 pieces, past the kernel's limit of
    # buffers per sendmsg (Linux: 1,024; more is EMSGSIZE), yet far under HOLD_LIMIT.
    post, peer = await server.open_stream()
    pieces = [bytes([65 + i % 26]) for i in range(2000)]
    for piece in pieces:
        await post.write(piece)
    if not ends_in_the_pass:
        await asyncio.sleep(0)  # the pass ends: the writer's flush sends what it held
        peer.arrived(b"1\r\n" + pieces[-1] + b"\r\n")
        assert peer.nothing_more(post)
    await post.end(b"", [])
    wire = peer.arrived(b"0\r\n\r\n")
    assert chunks_of(wire) == [PRELUDE, *pieces]


@pytest.mark.anyio
async def test_a_write_past_the_limit_takes_the_held_bytes_along_at_once(server: Server) -> None:
    post, peer = await server.open_stream()
    await post.write(b"first")
    await post.write(b"small")
    assert not peer.nothing_more(post)
    big = b"x" * HOLD_LIMIT  # with what is held, past the limit: Lambda would forward a write this size
    await post.write(big)
    assert peer.nothing_more(post)  # all of it went in that write, in order, with nothing left behind
    await post.write(b"after")  # the pass goes on: small writes are held again
    assert not peer.nothing_more(post)
    await post.end(b"", [])
    wire = peer.arrived(b"0\r\n\r\n")
    assert chunks_of(wire) == [PRELUDE, b"first", b"small", big, b"after"]


@pytest.mark.anyio
async def test_a_prelude_alone_leaves_when_the_pass_ends(server: Server) -> None:
    post, peer = await server.open_stream()
    assert not peer.nothing_more(post)
    await asyncio.sleep(0)  # the app paused before its first body bytes (a slow first token)
    peer.arrived(PRELUDE)
    for piece in (b"later", b"again"):  # a later pass: each write at once, nothing held
        await post.write(piece)
        peer.arrived(b"%x\r\n%s\r\n" % (len(piece), piece))
        assert peer.nothing_more(post)
    await post.end(b"", [])
    assert chunks_of(peer.arrived(b"0\r\n\r\n")) == [PRELUDE, b"later", b"again"]


@pytest.mark.anyio
async def test_what_the_end_of_the_pass_cannot_send_goes_once_the_socket_takes_it(server: Server) -> None:
    post, peer = await server.open_stream()
    await post.write(b"first")  # the first body bytes, at once
    filler = b"f" * 65536
    while post.connection.write(http1.chunk(filler)):  # the peer reads nothing yet: fill the socket
        pass
    await post.write(b"token")  # held for the end of the pass, behind what the socket did not take
    await asyncio.sleep(0)  # the pass ends; its flush meets a full socket
    assert post.connection.pending
    # The app now waits for its next token; the peer starts reading. Nothing more is written, yet the token
    # must arrive: the flush left a drain behind.
    wire = await asyncio.to_thread(peer.arrived, b"5\r\ntoken\r\n")
    assert wire.endswith(b"5\r\ntoken\r\n")
    await post.end(b"", [])
    chunks = chunks_of(peer.arrived(b"0\r\n\r\n"))
    assert chunks[:2] == [PRELUDE, b"first"] and chunks[-1] == b"token"
    assert set(chunks[2:-1]) == {filler}


@pytest.mark.anyio
async def test_a_response_ended_in_its_first_pass_cancels_its_flush(server: Server) -> None:
    # Nothing is left for the flush to send; cancelled, it no longer counts as work ready on the loop, so
    # the worker may skip the loop pass before its next wait.
    post, peer = await server.open_stream()
    await post.write(b"a")
    flush = post._flush
    assert flush is not None and not flush.cancelled()  # the end of the pass would send what is held
    await post.end(b"b", [])
    assert flush.cancelled() and post._flush is None
    assert chunks_of(peer.arrived(b"0\r\n\r\n")) == [PRELUDE, b"a", b"b"]


@pytest.mark.anyio
async def test_the_flush_callback_keeps_none_of_the_apps_context(server: Server) -> None:
    # Cancelled, it may stay on the loop's queue for a few invocations: a copy of the app's context there
    # would keep those invocations (their events) alive.
    token = APP_VAR.set(b"an event of 6 MB")
    try:
        post, _ = await server.open_stream()
        flush = post._flush
        assert flush is not None
        assert APP_VAR not in flush._context  # type: ignore[attr-defined]
        await post.end(b"", [])
    finally:
        APP_VAR.reset(token)


@pytest.mark.anyio
async def test_a_callback_at_the_end_of_the_pass_runs_after_the_flush_of_the_held_bytes(
    server: Server,
) -> None:
    post, peer = await server.open_stream()
    seen: list[bool] = []
    assert post.when_pass_ends(lambda: seen.append(post.connection.pending))
    assert not post.when_pass_ends(print)  # one caller: its responder
    await post.write(b"a")
    await post.write(b"b")  # held
    await asyncio.sleep(0)  # the pass ends
    assert seen == [False]  # called, with nothing left waiting in the queue
    assert not post.when_pass_ends(print)  # that pass is over
    await post.end(b"", [])
    assert chunks_of(peer.arrived(b"0\r\n\r\n")) == [PRELUDE, b"a", b"b"]


@pytest.mark.anyio
async def test_a_response_over_in_its_first_pass_drops_the_callback(server: Server) -> None:
    post, peer = await server.open_stream()
    seen: list[int] = []
    assert post.when_pass_ends(lambda: seen.append(1))
    await post.end(b"all of it", [])
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert seen == []
    assert chunks_of(peer.arrived(b"0\r\n\r\n")) == [PRELUDE, b"all of it"]


@pytest.mark.anyio
async def test_the_flusher_pushes_what_the_first_pass_wrote_once_the_app_pauses(server: Server) -> None:
    # On the runtime's writer the padding flusher hears of the end of the first pass from the writer's
    # own flush: the event written in that pass is still padded out while the app then waits.
    post = server.client().open_stream(runtime_api.streaming_response("req-1"))
    policy = PaddingPolicy(mode="idle", latency_ms=20, threshold=1024)
    responder = PaddedStreamingResponder(post, "function-url", policy)
    peers: list[Peer] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        peers.append(Peer(server.accept()))  # connected by the prelude
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        assert responder._pass_end is None  # the writer calls back: no loop callback of the responder's
        # Paused: the padding, a comment line after the event, comes while the app still waits.
        await asyncio.to_thread(peers[0].arrived, b"\r\n:")
        await send({"type": "http.response.body", "body": b""})

    await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(app)
    chunks = chunks_of(peers[0].arrived(b"0\r\n\r\n"))
    assert chunks[1] == b"data: 1\n\n"
    assert chunks[2].startswith(b":") and responder.stats.padding == len(chunks[2])
