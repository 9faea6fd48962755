"""http1, the runtime's purpose-built HTTP/1.1 client framing, checked against h11 as the oracle.

Every request the runtime sends is read back by an h11 server; every reply in the table (well-formed,
odd but legal, and malformed) is read by both h11 and our parser, whole, byte by byte and split at every
point: the results must agree, and what h11 rejects we reject.
"""

from __future__ import annotations

import random
from typing import Any

import h11
import pytest

from lambda_asgi_stream import RuntimeAPIError, http1, runtime_api
from lambda_asgi_stream.encoder import error_trailers

# --- requests ------------------------------------------------------------------------------------------


def _server_events(data: bytes) -> list[Any]:
    server = h11.Connection(h11.SERVER)
    server.receive_data(data)
    events = []
    while True:
        event = server.next_event()
        if event is h11.NEED_DATA:
            break
        events.append(event)
        if isinstance(event, h11.EndOfMessage):
            break
    return events


REQUESTS = [
    runtime_api.next_invocation(),
    runtime_api.restore_next(),
    runtime_api.buffered_response("8476a536-e9f4-11e8-9739-2dfe598c3fcd", {"statusCode": 200, "body": "é"}),
    runtime_api.invocation_error("id with/odd chars?", ValueError("bad\r\nline")),
    runtime_api.init_error(RuntimeError("x" * 5000)),
    runtime_api.register_extension("lambda-asgi-stream-sigterm"),
    runtime_api.extension_next("ext-id"),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.path)
def test_requests_with_a_body_read_back_by_h11(request_: runtime_api.APIRequest) -> None:
    body = request_.body or b""
    head = http1.request_head(request_.method, request_.path, "127.0.0.1:9001", request_.headers, len(body))
    events = _server_events(head + body)
    start, *data, end = events
    assert isinstance(start, h11.Request) and isinstance(end, h11.EndOfMessage)
    assert start.method == request_.method.encode() and start.target == request_.path.encode()
    sent = [(b"host", b"127.0.0.1:9001")] + [(k.lower().encode(), v.encode()) for k, v in request_.headers]
    assert [(k, v) for k, v in start.headers if k != b"content-length"] == sent
    assert b"".join(bytes(d.data) for d in data) == body


@pytest.mark.parametrize(
    ("chunks", "trailers"),
    [
        ([b"prelude\0\0\0\0\0\0\0\0", b"x" * 70000, b"\r\n0\r\n\r\n"], []),
        ([b"a"], error_trailers(RuntimeError("mid-stream"))),
        ([], error_trailers(ValueError("before any byte"))),
    ],
)
def test_a_streamed_response_read_back_by_h11(
    chunks: list[bytes], trailers: list[tuple[bytes, bytes]]
) -> None:
    request_ = runtime_api.streaming_response("8476a536-e9f4-11e8-9739-2dfe598c3fcd")
    wire = http1.request_head(request_.method, request_.path, "127.0.0.1:9001", request_.headers, None)
    for data in chunks:
        wire += b"".join(http1.chunk(data))
    wire += http1.last_chunk(trailers)
    start, *data, end = _server_events(wire)
    assert isinstance(start, h11.Request)
    assert (b"transfer-encoding", b"chunked") in list(start.headers)
    assert b"".join(bytes(d.data) for d in data) == b"".join(chunks)
    assert isinstance(end, h11.EndOfMessage)
    assert [(bytes(k), bytes(v)) for k, v in end.headers] == [(k.lower(), v) for k, v in trailers]


def test_request_heads_refuse_what_would_break_the_framing() -> None:
    for target in ("/a b", "/a\r\nX: 1", "/a\x00", "/a\x7f", "/\t", ""):
        with pytest.raises(ValueError):
            http1.request_head("GET", target, "h:1", (), 0)
    assert http1.request_line("POST", "/r/\u00e9~%20") == "POST /r/\u00e9~%20 HTTP/1.1\r\n".encode("latin-1")
    with pytest.raises(ValueError):
        http1.request_head("GET", "/", "h:1", (("X", "a\r\nInjected: 1"),), 0)
    with pytest.raises(ValueError):
        http1.last_chunk([(b"X", b"a\r\nb")])


# --- replies -------------------------------------------------------------------------------------------

OK_JSON = b'{"status":"OK"}'
REPLIES: dict[str, bytes] = {
    "accepted": b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n"
    + OK_JSON,
    "next": (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Lambda-Runtime-Aws-Request-Id: 8476a536-e9f4-11e8-9739-2dfe598c3fcd\r\n"
        b"Lambda-Runtime-Deadline-Ms: 1542409706888\r\n"
        b"Lambda-Runtime-Trace-Id: Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1\r\n"
        b"Date: Sun, 29 Nov 2026 20:00:00 GMT\r\nContent-Length: 18\r\n\r\n"
        b'{"version": "2.0"}'
    ),
    "chunked with trailers": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: yes\r\nY: 2\r\n\r\n"
    ),
    "chunked, no trailers": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
    "chunk size with trailing space": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2  \r\nok\r\n0\r\n\r\n",
    "bare LF line ends": b"HTTP/1.1 202 Accepted\nContent-Length: 2\n\nok",
    "no reason phrase": b"HTTP/1.1 202\r\nContent-Length: 0\r\n\r\n",
    "empty reason phrase": b"HTTP/1.1 202 \r\nContent-Length: 0\r\n\r\n",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\n\tc\r\nContent-Length: 1\r\n\r\nx",
    "odd whitespace and empty value": b"HTTP/1.1 200 OK\r\nA:\t v  w \t\r\nB:\r\nContent-Length: 0\r\n\r\n",
    "obs-text value": b"HTTP/1.1 200 OK\r\nX: caf\xe9\r\nContent-Length: 0\r\n\r\n",
    "204 ignores content-length": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
    "repeated equal content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok",
    "leading zeros in length": b"HTTP/1.1 200 OK\r\nContent-Length: 0002\r\n\r\nok",
    "connection close": b"HTTP/1.1 202 Accepted\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n",
    "HTTP/1.0": b"HTTP/1.0 202 Accepted\r\nContent-Length: 2\r\n\r\nok",
    "body until close": b"HTTP/1.1 200 OK\r\nX: 1\r\n\r\nall of this",
    "informational first": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
    "chunked beats content-length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"
    ),
    # malformed: h11 rejects each of these
    "bad status code": b"HTTP/1.1 2020 OK\r\nContent-Length: 0\r\n\r\n",
    "bad version": b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
    "lower-case version": b"http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "no colon": b"HTTP/1.1 200 OK\r\nBroken header\r\nContent-Length: 0\r\n\r\n",
    "space before colon": b"HTTP/1.1 200 OK\r\nX : 1\r\nContent-Length: 0\r\n\r\n",
    # a known name (cached by the replies before it) without its colon
    "no colon after a known name": b"HTTP/1.1 200 OK\r\nDate: x\r\nDate\r\nContent-Length: 0\r\n\r\n",
    "NUL in a value": b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "VT in a value": b"HTTP/1.1 200 OK\r\nX: a\x0bb\r\nContent-Length: 0\r\n\r\n",
    "CR in a value": b"HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n",
    "conflicting lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk",
    "non-digit length": b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok",
    "negative length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "gzip transfer-encoding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    "two transfer-encodings": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "bad chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
    "chunk without its CRLF": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n",
    "continuation at the start": b"HTTP/1.1 200 OK\r\n folded\r\nContent-Length: 0\r\n\r\n",
    "empty line before status": b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "bad trailer": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon here\r\n\r\n",
    "cut in the body": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    "cut in a chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    "chunk footer not CRLF": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\rX0\r\n\r\n",
    "large chunks": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1f4\r\n"
    + b"y" * 500
    + b"\r\n0\r\n\r\n",
    "large body": b"HTTP/1.1 200 OK\r\nContent-Length: 700\r\n\r\n" + b"z" * 700,
    "nothing at all": b"",
}


def _h11(data: bytes) -> tuple[str, Any]:
    """What h11 makes of a reply to a GET: ("ok", (status, headers, body, trailers, keep_alive)) or an error."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "h")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    client.receive_data(b"")  # then the connection ends (a body delimited by the end needs it)
    status, headers, body, trailers = 0, [], b"", []
    try:
        while True:
            event = client.next_event()
            if isinstance(event, h11.Response):
                status, headers = event.status_code, [(bytes(k), bytes(v)) for k, v in event.headers]
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                trailers = [(bytes(k), bytes(v)) for k, v in event.headers]
                break
            elif isinstance(event, h11.ConnectionClosed):
                return "error", "closed before the end"
    except h11.RemoteProtocolError as exc:
        return "error", str(exc)
    keep_alive = client.their_state is h11.DONE and client.our_state is h11.DONE
    return "ok", (status, headers, body, trailers, keep_alive)


def _ours(pieces: list[bytes]) -> tuple[str, Any]:
    parser = http1.ReplyParser()
    try:
        reply = None
        for piece in pieces:
            reply = parser.feed(piece)
            if reply is not None:
                break
        if reply is None:
            reply = parser.eof()
    except RuntimeAPIError as exc:
        return "error", str(exc)
    # h11 cannot know a connection stays usable before the peer closes it; a reply that ends cleanly and
    # says nothing against keep-alive is reusable for both.
    return "ok", (reply.status, reply.headers, reply.body, reply.trailers or [], reply.keep_alive)


def _normalized(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Our raw header values as h11 presents them: it lower-cases Transfer-Encoding and keeps one
    Content-Length (the framing is the same; only what is shown differs)."""
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name == b"transfer-encoding":
            value = value.lower()
        elif name == b"content-length":
            value = value.split(b",")[0].strip()
            if any(n == name for n, _ in out):
                continue
        out.append((name, value))
    return out


def _splits(data: bytes) -> list[list[bytes]]:
    whole = [[data]]
    bytewise = [[data[i : i + 1] for i in range(len(data))]]
    halves = [[data[:i], data[i:]] for i in range(1, len(data))]
    return whole + bytewise + halves


@pytest.mark.parametrize("name", list(REPLIES))
def test_replies_read_as_h11_reads_them(name: str) -> None:
    data = REPLIES[name]
    kind, expected = _h11(data)
    for pieces in _splits(data):
        got_kind, got = _ours(pieces)
        assert got_kind == kind, f"{name}: h11 says {kind} ({expected}), we say {got_kind} ({got})"
        if kind == "ok":
            status, headers, body, trailers, keep_alive = expected
            assert (got[0], _normalized(got[1]), got[2], got[3]) == (status, headers, body, trailers), name
            # Ours may only be stricter: never keep a connection h11 would close.
            assert keep_alive or not got[4], name


def test_extra_bytes_after_a_reply_end_the_connection() -> None:
    reply = http1.ReplyParser().feed(REPLIES["accepted"] + b"HTTP/1.1 200 OK\r\n")
    assert reply is not None and reply.status == 202 and not reply.keep_alive


def test_reply_header_lookup() -> None:
    reply = http1.ReplyParser().feed(REPLIES["next"])
    assert reply is not None
    assert reply.header(b"lambda-runtime-aws-request-id") == b"8476a536-e9f4-11e8-9739-2dfe598c3fcd"
    assert reply.header(b"missing") is None


# --- the quick path: whole replies of the usual shape read in one go ---------------------------------------

# Replies the quick path must take (the Runtime API's usual shapes): if it gave up on them, the runtime would
# silently pay for the general path on every invocation.
QUICK = (
    "accepted",
    "next",
    "no reason phrase",
    "empty reason phrase",
    "odd whitespace and empty value",
    "obs-text value",
    "leading zeros in length",
    "connection close",
    "large body",
)


def _general(data: bytes) -> tuple[str, Any]:
    # Fed in two pieces, the parser cannot use the quick path (it needs the whole reply in the first piece).
    return _ours([data[:1], data[1:]]) if data else _ours([data])


@pytest.mark.parametrize("name", list(REPLIES))
def test_the_quick_path_agrees_with_the_general_one(name: str) -> None:
    data = REPLIES[name]
    quick = http1.quick_reply(data)
    if name in QUICK:
        assert quick is not None, name
    if quick is not None:
        kind, general = _general(data)
        assert kind == "ok", name
        got = (quick.status, quick.headers, quick.body, quick.trailers or [], quick.keep_alive)
        assert got == general, name


def test_the_quick_path_agrees_on_damaged_replies() -> None:
    """Random damage to the Runtime API's replies: the quick path reads a reply exactly as the general
    parser (and h11) do, or leaves it to them."""
    rng = random.Random(8)
    specials = [
        b"\r",
        b"\n",
        b"\r\n",
        b":",
        b" ",
        b"\t",
        b"\x00",
        b"\x0b",
        b"\x0c",
        b"\xe9",
        b"0",
        b",",
        b"A",
    ]
    taken = 0
    for _ in range(3000):
        data = bytearray(REPLIES[rng.choice(["next", "accepted", "connection close"])])
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data) + 1)
            if rng.random() < 0.5:
                data[at:at] = rng.choice(specials)
            else:
                data[at : at + 1] = rng.choice(specials)
        damaged = bytes(data)
        quick = http1.quick_reply(damaged)
        if quick is None:
            continue
        taken += 1
        kind, general = _general(damaged)
        assert kind == "ok", damaged
        assert (quick.status, quick.headers, quick.body, [], quick.keep_alive) == general, damaged
        h11_kind, h11_reply = _h11(damaged)
        assert h11_kind == "ok", damaged
        assert (quick.status, _normalized(quick.headers), quick.body) == h11_reply[:3], damaged
    assert taken > 100  # damage the quick path still reads (in a value, say) was checked, not only refusals


def test_chunks_of_every_size_frame_as_h11_reads_them() -> None:
    # The size lines are remembered (a bounded dict): the same size twice, and past the bound, must still
    # give the right line.
    sizes = [*range(1, 1200), 1, 15, 16, 255, 256, 4096, 65535, 1 << 20]
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"POST /r HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    wire = b"".join(b"".join(http1.chunk(b"x" * size)) for size in sizes) + http1.last_chunk([])
    conn.receive_data(wire)
    received = []
    while (event := conn.next_event()) is not h11.NEED_DATA:
        if isinstance(event, h11.Data):
            received.append(len(event.data))
        if isinstance(event, h11.EndOfMessage):
            break
    assert sum(received) == sum(sizes) and isinstance(event, h11.EndOfMessage)
    assert all(http1.chunk(b"y" * size)[0] == b"%x\r\n" % size for size in sizes)
    assert len(http1._size_lines) <= http1._SIZE_LINES_KEPT
