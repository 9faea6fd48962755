"""A fake Lambda Runtime API for ``invocation_cost.py``: a separate process, raw asyncio, loopback only.

    python bench/_fake_api.py      # prints {"port": N} on stdout, then takes commands on stdin

It plays what Lambda's Runtime API does for one sandbox (docs: runtimes-api, runtimes-extensions-api;
the repo's docs/wire-format.md), over HTTP/1.1 with keep-alive:

* ``GET /2018-06-01/runtime/invocation/next``: the session's event, with the headers Lambda sends
  (``Lambda-Runtime-Aws-Request-Id``, ``-Deadline-Ms`` 30 s ahead, ``-Invoked-Function-Arn``,
  ``-Trace-Id``, ``Content-Type: application/json``). As on Lambda, no two events are the same bytes:
  the parts of the event in :data:`PER_REQUEST` (its request id and its ``X-Amzn-Trace-Id`` header, as
  ``invocation_cost.event_bytes`` writes them) and the trace id header are new for every invocation, so
  that a runtime's caches of event values meet what they meet on Lambda.
* ``POST .../{id}/response``: buffered (``Content-Length``, a JSON document) or streamed (chunked, the
  prelude, 8 NULs, the body, trailers, ``Lambda-Runtime-Function-Response-Mode: streaming``). Checked:
  the id is the one handed out, status 200, the body bytes are exactly the expected ones, no error
  trailer. Answered 202.
* ``POST .../{id}/error`` and ``POST /runtime/init/error``: counted as failures, answered 202.
* ``POST /2020-01-01/extension/register``: 200 with a ``Lambda-Extension-Identifier`` header;
  ``GET /2020-01-01/extension/event/next``: held (no events are ever sent).

Commands (one JSON object per line on stdin; answers and reports as JSON lines on stdout):

* ``{"op": "session", "mode": "buffered"|"stream", "event": str, "expect": base64, "warmup": W,
  "count": N, "settle_ms": float, "measure_cpu": bool}``: arm a session; answers ``{"ok": true}``.
* ``{"op": "pid", "pid": P}``: the runtime process whose CPU is sampled.
* ``{"op": "end"}``: drop every connection, forget the session; answers with its failure count.

Reports: when the runtime's ``next`` arrives after W completed invocations, and again after W + N, the
runtime's CPU is read from /proc (after ``settle_ms``, so that it is idle in its long poll); after the
second reading ``{"event": "done", ...}`` is printed and that ``next`` is held forever. The report also
carries ``perf_counter()`` timestamps (CLOCK_MONOTONIC, comparable across processes) of the first
``next`` and of the first complete response, for the cold-start figures.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import re
import sys
import time
from typing import Any

from _cpu import cpu_sample

API = b"/2018-06-01/runtime"
NEXT = API + b"/invocation/next"
INVOCATION = API + b"/invocation/"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:bench"
ACCEPTED = (
    b'HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"status":"OK"}\n'
)
MAX_FAILURE_TEXTS = 10
# Per-request parts of the session's event (see invocation_cost.event_bytes), each replaced by an
# invocation's own hex digits of the same length: the tail of requestContext.requestId and the random
# part of the X-Amzn-Trace-Id header.
PER_REQUEST = (b"93e812345678", b"abcdef012345678912345678")


def extension_registered(number: int, function: str) -> bytes:
    """The reply to ``POST /2020-01-01/extension/register``: 200 with the extension's identifier."""
    body = json.dumps({"functionName": function, "functionVersion": "$LATEST", "handler": "x"}).encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Lambda-Extension-Identifier: %08d-%s\r\nContent-Length: %d\r\n\r\n%s"
        % (number, function.encode(), len(body), body)
    )


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class Session:
    def __init__(self, cmd: dict[str, Any]) -> None:
        self.streaming = cmd["mode"] == "stream"
        self.event = cmd["event"].encode()
        # The event split at its per-request parts: (head, part, tail) pieces, joined per invocation.
        self.event_pieces = _split_at(self.event, PER_REQUEST)
        self.expect = base64.b64decode(cmd["expect"])
        self.warmup = int(cmd["warmup"])
        self.count = int(cmd["count"])
        self.settle_s = float(cmd.get("settle_ms", 2.0)) / 1000
        self.measure_cpu = bool(cmd.get("measure_cpu", True))
        self.phase = 0  # 0: before the first CPU sample, 1: between the two, 2: finished
        self.pid: int | None = None
        self.served = 0  # events handed out
        self.done = 0  # responses accepted (good or bad)
        self.failures = 0
        self.failure_texts: list[str] = []
        self.outstanding: str | None = None
        self.first_next: float | None = None
        self.first_response: float | None = None
        self.cpu: list[dict[str, float]] = []
        self.wall: list[float] = []

    def fail(self, text: str) -> None:
        self.failures += 1
        if len(self.failure_texts) < MAX_FAILURE_TEXTS:
            self.failure_texts.append(text)


def _split_at(event: bytes, parts: tuple[bytes, ...]) -> list[bytes]:
    """``event`` as [text, part, text, part, ..., text]: every occurrence of any of ``parts``."""
    return re.split(b"(" + b"|".join(map(re.escape, parts)) + b")", event)


class Server:
    def __init__(self) -> None:
        self.session: Session | None = None
        self.connections: set[Connection] = set()
        self.extension_ids = 0

    # --- the runtime side ---------------------------------------------------------------------------

    def on_next(self, conn: Connection) -> None:
        s = self.session
        if s is None or s.phase == 2:
            return  # held: nothing to hand out
        now = time.perf_counter()
        if s.first_next is None:
            s.first_next = now
        if s.outstanding is not None:
            s.fail(f"next while {s.outstanding} is still unanswered")
        if s.done == s.warmup and s.phase == 0:
            self._later(s, conn, last=False)
        elif s.done == s.warmup + s.count and s.phase == 1:
            self._later(s, conn, last=True)
        else:
            self._hand_out(s, conn)

    def _later(self, s: Session, conn: Connection, *, last: bool) -> None:
        def sample() -> None:
            if self.session is not s:
                return
            s.phase += 1
            if not s.measure_cpu:
                pass
            elif s.pid is None:
                s.fail("no pid given before the CPU sample")
            else:
                try:
                    c = cpu_sample(s.pid)
                    s.cpu.append(dataclasses.asdict(c))
                except OSError as exc:
                    s.fail(f"cannot read the runtime's CPU: {exc}")
            s.wall.append(time.perf_counter())
            if last:
                emit(self._report(s))
            else:
                self._hand_out(s, conn)

        if s.settle_s <= 0:
            sample()
        else:
            asyncio.get_running_loop().call_later(s.settle_s, sample)

    def _report(self, s: Session) -> dict[str, Any]:
        return {
            "event": "done",
            "served": s.served,
            "done": s.done,
            "failures": s.failures,
            "failure_texts": s.failure_texts,
            "cpu": s.cpu,
            "wall": s.wall,
            "first_next": s.first_next,
            "first_response": s.first_response,
        }

    def _hand_out(self, s: Session, conn: Connection) -> None:
        s.served += 1
        request_id = f"8476a536-e9f4-11e8-9739-{s.served:012d}"
        s.outstanding = request_id
        deadline_ms = int(time.time() * 1000) + 30_000
        unique = b"%024x" % s.served
        event = b"".join(unique[-len(p) :] if i % 2 else p for i, p in enumerate(s.event_pieces))
        head = (
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: application/json\r\n"
            f"Lambda-Runtime-Aws-Request-Id: {request_id}\r\n"
            f"Lambda-Runtime-Deadline-Ms: {deadline_ms}\r\n"
            f"Lambda-Runtime-Invoked-Function-Arn: {ARN}\r\n"
            f"Lambda-Runtime-Trace-Id: Root=1-5759e988-{unique.decode()};Parent=53995c3f42cd8ad8;"
            "Sampled=0\r\n"
            f"Content-Length: {len(event)}\r\n\r\n"
        )
        conn.write(head.encode() + event)

    def on_response(self, conn: Connection, request: Request) -> None:
        s = self.session
        conn.write(ACCEPTED)
        if s is None:
            return
        request_id = request.target[len(INVOCATION) : -len(b"/response")].decode()
        if request_id != s.outstanding:
            s.fail(f"response for {request_id}, expected {s.outstanding}")
        s.outstanding = None
        s.done += 1
        if s.first_response is None:
            s.first_response = time.perf_counter()
        problem = check_stream(s, request) if s.streaming else check_buffered(s, request)
        if problem:
            s.fail(f"invocation {s.done}: {problem}")

    def on_error(self, conn: Connection, request: Request) -> None:
        conn.write(ACCEPTED)
        s = self.session
        if s is not None:
            if request.target.startswith(INVOCATION):
                s.outstanding = None
                s.done += 1
            s.fail(f"{request.target.decode()}: {request.body[:300]!r}")

    def on_register(self, conn: Connection) -> None:
        self.extension_ids += 1
        conn.write(extension_registered(self.extension_ids, "bench"))

    def dispatch(self, conn: Connection, request: Request) -> None:
        method, target = request.method, request.target
        if method == b"GET" and target == NEXT:
            self.on_next(conn)
        elif method == b"POST" and target.startswith(INVOCATION) and target.endswith(b"/response"):
            self.on_response(conn, request)
        elif method == b"POST" and (target.endswith(b"/error")):
            self.on_error(conn, request)
        elif method == b"POST" and target == b"/2020-01-01/extension/register":
            self.on_register(conn)
        elif method == b"GET" and target == b"/2020-01-01/extension/event/next":
            pass  # held: the bench's sandbox never shuts down through the extension
        else:
            conn.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            if self.session is not None:
                self.session.fail(f"unexpected {method.decode()} {target.decode()}")

    # --- the control side --------------------------------------------------------------------------

    def command(self, cmd: dict[str, Any]) -> None:
        op = cmd["op"]
        if op == "session":
            self.session = Session(cmd)
            emit({"ok": True})
        elif op == "pid":
            if self.session is not None:
                self.session.pid = int(cmd["pid"])
        elif op == "end":
            s, self.session = self.session, None
            for conn in list(self.connections):
                conn.transport.abort()
            self.connections.clear()
            emit(
                {
                    "ok": True,
                    "failures": s.failures if s else 0,
                    "failure_texts": s.failure_texts if s else [],
                }
            )
        else:
            emit({"ok": False, "error": f"unknown op {op!r}"})


def check_buffered(s: Session, request: Request) -> str:
    if request.headers.get(b"lambda-runtime-function-response-mode", b"").lower() == b"streaming":
        return "a streamed response where a buffered one was expected"
    if request.chunked:
        return "a chunked body for a buffered response"
    try:
        doc = json.loads(request.body)
        status = doc["statusCode"]
        body = doc.get("body") or ""
        data = base64.b64decode(body) if doc.get("isBase64Encoded") else body.encode()
    except (ValueError, KeyError, TypeError) as exc:
        return f"unreadable buffered response ({exc}): {request.body[:200]!r}"
    if status != 200:
        return f"status {status}"
    if data != s.expect:
        return f"body {data[:80]!r}... ({len(data)} B), expected {s.expect[:80]!r}... ({len(s.expect)} B)"
    return ""


def check_stream(s: Session, request: Request) -> str:
    if request.headers.get(b"lambda-runtime-function-response-mode", b"").lower() != b"streaming":
        return "no Lambda-Runtime-Function-Response-Mode: streaming header"
    if not request.chunked:
        return "a streamed response that is not chunked"
    if b"lambda-runtime-function-error-type" in request.trailers:
        return f"error trailers {request.trailers}"
    body = request.body
    end = body.find(b"\0" * 8)
    if end < 0:
        return "no 8-NUL delimiter after the prelude"
    try:
        status = json.loads(body[:end])["statusCode"]
    except (ValueError, KeyError, TypeError) as exc:
        return f"unreadable prelude ({exc}): {body[:200]!r}"
    if status != 200:
        return f"status {status}"
    data = body[end + 8 :]
    if data != s.expect:
        return f"body {data[:80]!r}... ({len(data)} B), expected {s.expect[:80]!r}... ({len(s.expect)} B)"
    return ""


class Request:
    __slots__ = ("body", "chunked", "headers", "method", "target", "trailers")

    def __init__(self, method: bytes, target: bytes, headers: dict[bytes, bytes]) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = b""
        self.chunked = False
        self.trailers: dict[bytes, bytes] = {}


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: an incremental parser for requests with Content-Length or chunked bodies."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buf = bytearray()
        self.state = "head"
        self.need = 0
        self.body = bytearray()
        self.request: Request | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            self._parse()
        except ValueError as exc:
            if self.server.session is not None:
                self.server.session.fail(f"unparseable request: {exc}")
            self.transport.abort()

    def _parse(self) -> None:
        buf = self.buf
        while True:
            if self.state == "head":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(buf[:end]).split(b"\r\n")
                del buf[: end + 4]
                method, target, _version = lines[0].split(b" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                self.request = Request(method, target, headers)
                if headers.get(b"expect", b"").lower() == b"100-continue":
                    self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                    self.request.chunked = True
                    self.body = bytearray()
                    self.state = "size"
                else:
                    self.need = int(headers.get(b"content-length", b"0"))
                    self.state = "length"
            elif self.state == "length":
                if len(buf) < self.need:
                    return
                assert self.request is not None
                self.request.body = bytes(buf[: self.need])
                del buf[: self.need]
                self._done()
            elif self.state == "size":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(buf[:end]).split(b";")[0], 16)
                del buf[: end + 2]
                if size == 0:
                    self.state = "trailers"
                else:
                    self.need = size
                    self.state = "data"
            elif self.state == "data":
                if len(buf) < self.need + 2:
                    return
                if buf[self.need : self.need + 2] != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
                self.body += buf[: self.need]
                del buf[: self.need + 2]
                self.state = "size"
            elif self.state == "trailers":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                line = bytes(buf[:end])
                del buf[: end + 2]
                assert self.request is not None
                if not line:
                    self.request.body = bytes(self.body)
                    self._done()
                else:
                    name, _, value = line.partition(b":")
                    self.request.trailers[name.strip().lower()] = value.strip()

    def _done(self) -> None:
        request, self.request = self.request, None
        self.state = "head"
        assert request is not None
        self.server.dispatch(self, request)


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = Server()
    listener = await loop.create_server(lambda: Connection(server), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    emit({"port": port})
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        server.command(json.loads(line))
    listener.close()


if __name__ == "__main__":
    asyncio.run(main())
