"""A fake Lambda Runtime API on 127.0.0.1, independent of the package's own h11 code.

A threaded server on blocking sockets: one thread accepts, one thread per TCP connection. It serves queued
invocations from ``GET .../invocation/next``, records the raw bytes of every request it receives (request
line, headers, chunk framing, trailers) and parses them with its own strict HTTP/1.1 parser (CRLF only,
no chunk extensions, no zero-length data chunk, no ``Content-Length`` beside ``Transfer-Encoding``), so a
framing mistake by the client shows up as an entry in :attr:`FakeRuntimeAPI.errors`.

Ending the loop: once the queue is empty and every invocation handed out has been answered, ``next`` is
answered ``410 Gone`` (Go's ``invoke_loop_test.go`` habit); the loop treats that as a fatal Runtime API
fault and stops. With ``when_empty="hold"`` the ``next`` is held open instead (a real long poll), for a
process that is stopped by SIGTERM.

Everything blocks for at most :data:`TIMEOUT` seconds, so no test can hang.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

API = "/2018-06-01/runtime"
DRAINED_STATUS = 410
TIMEOUT = 10.0
DELIMITER = b"\x00" * 8
GOLDEN_REQUEST_ID = "8476a536-e9f4-11e8-9739-2dfe598c3f01"

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_REQUEST_LINE = re.compile(rb"([A-Z]+) (/\S*) HTTP/1\.1")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,8}")
_ANSWERS = ("response", "error")
_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found", 410: "Gone", 500: "Error"}


class ProtocolViolation(Exception):
    """The client sent bytes that are not strict HTTP/1.1."""


class _Reader:
    """Buffered reads from a byte source; every consumed byte is appended to ``record``."""

    def __init__(self, recv: Callable[[], bytes]) -> None:
        self._recv = recv
        self._buffer = bytearray()
        self.record = bytearray()

    def _fill(self) -> None:
        data = self._recv()
        if not data:
            raise EOFError("connection closed")
        self._buffer += data

    def at_eof(self) -> bool:
        if self._buffer:
            return False
        try:
            self._fill()
        except EOFError:
            return True
        return False

    def line(self, limit: int = 64 * 1024) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                break
            if len(self._buffer) > limit:
                raise ProtocolViolation("line too long")
            self._fill()
        raw = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        self.record += raw
        if not raw.endswith(b"\r\n") or b"\r" in raw[:-2]:
            raise ProtocolViolation(f"line not ended by a single CRLF: {raw[:80]!r}")
        return raw[:-2]

    def exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill()
        raw = bytes(self._buffer[:n])
        del self._buffer[:n]
        self.record += raw
        return raw

    def leftover(self) -> bytes:
        return bytes(self._buffer)


@dataclass
class RawRequest:
    """One request as received, and as our strict parser understood it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    raw: bytes = b""
    chunked: bool = False
    chunks: list[bytes] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False
    connection: int = 0

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def header(self, name: str) -> str | None:
        found = self.values(name)
        if len(found) > 1:
            raise AssertionError(f"header {name} sent {len(found)} times: {found}")
        return found[0] if found else None

    def trailer(self, name: str) -> str | None:
        found = [v for k, v in self.trailers if k.lower() == name.lower()]
        assert len(found) <= 1, f"trailer {name} sent {len(found)} times"
        return found[0] if found else None

    def declared_trailers(self) -> set[str]:
        """Names in the ``Trailer`` header lines (one line per name, or comma-joined)."""
        return {n.strip().lower() for v in self.values("trailer") for n in v.split(",") if n.strip()}

    def payload_so_far(self) -> bytes:
        return b"".join(self.chunks)


def _parse_field(line: bytes) -> tuple[str, str]:
    if line[:1] in (b" ", b"\t"):
        raise ProtocolViolation(f"obsolete line folding: {line!r}")
    name, sep, value = line.partition(b":")
    if not sep or not _TOKEN.fullmatch(name):
        raise ProtocolViolation(f"bad header line: {line!r}")
    return name.decode("ascii"), value.strip(b" \t").decode("latin-1")


def read_request(
    reader: _Reader,
    *,
    on_head: Callable[[RawRequest], None] = lambda r: None,
    on_chunk: Callable[[RawRequest, bytes], None] = lambda r, d: None,
) -> RawRequest:
    """Read one request strictly; ``on_head`` and ``on_chunk`` are called as its parts arrive."""
    reader.record = bytearray()
    match = _REQUEST_LINE.fullmatch(reader.line())
    if match is None:
        raise ProtocolViolation(f"bad request line: {bytes(reader.record)[:100]!r}")
    headers = []
    while True:
        line = reader.line()
        if not line:
            break
        headers.append(_parse_field(line))
    request = RawRequest(match.group(1).decode(), match.group(2).decode("ascii"), headers)
    encodings = request.values("transfer-encoding")
    lengths = request.values("content-length")
    if encodings and lengths:
        raise ProtocolViolation("both Transfer-Encoding and Content-Length")
    on_head(request)
    if encodings:
        if [e.lower() for e in encodings] != ["chunked"]:
            raise ProtocolViolation(f"unexpected Transfer-Encoding {encodings}")
        request.chunked = True
        while True:
            size_line = reader.line()
            if not _CHUNK_SIZE.fullmatch(size_line):
                raise ProtocolViolation(f"bad chunk size line {size_line!r} (no extensions, no spaces)")
            size = int(size_line, 16)
            if size == 0:
                break
            data = reader.exact(size)
            if reader.exact(2) != b"\r\n":
                raise ProtocolViolation("chunk data not followed by CRLF")
            request.chunks.append(data)
            on_chunk(request, data)
        while True:
            line = reader.line()
            if not line:
                break
            request.trailers.append(_parse_field(line))
        request.body = request.payload_so_far()
    elif lengths:
        if len(lengths) != 1 or not lengths[0].isdigit():
            raise ProtocolViolation(f"bad Content-Length {lengths}")
        request.body = reader.exact(int(lengths[0]))
    request.raw = bytes(reader.record)
    request.complete = True
    return request


def parse_raw(data: bytes) -> RawRequest:
    """Parse a complete captured request (a golden ``.request.raw`` file) with the same strict parser."""
    chunks = [data]
    reader = _Reader(lambda: chunks.pop() if chunks else b"")
    request = read_request(reader)
    if reader.leftover():
        raise ProtocolViolation(f"bytes after the request: {reader.leftover()[:50]!r}")
    return request


# --- reading a streamed response body --------------------------------------------------------------


@dataclass
class Streamed:
    """A streaming ``/response`` POST, decoded: prelude, payload, error trailers."""

    prelude: dict[str, Any] | None
    payload: bytes
    error_type: str | None
    error: dict[str, Any] | None


def decode_streamed(request: RawRequest) -> Streamed:
    """Split the de-chunked body at the first 8 NULs (JSON never holds a raw NUL) and decode trailers."""
    body = request.body
    prelude: dict[str, Any] | None = None
    payload = body
    if request.header("content-type") == "application/vnd.awslambda.http-integration-response" and body:
        end = body.find(DELIMITER)
        assert end > 0, f"no 8-NUL delimiter in {body[:100]!r}"
        prelude = json.loads(body[:end].decode("utf-8"))
        assert isinstance(prelude, dict), prelude
        payload = body[end + len(DELIMITER) :]
    error_type = request.trailer("Lambda-Runtime-Function-Error-Type")
    encoded = request.trailer("Lambda-Runtime-Function-Error-Body")
    error = None
    if encoded is not None:
        error = json.loads(base64.b64decode(encoded, validate=True))
        assert isinstance(error, dict), error
    return Streamed(prelude, payload, error_type, error)


# --- the server -------------------------------------------------------------------------------------


@dataclass
class Invocation:
    """One queued invocation: the event and the headers ``next`` delivers it with."""

    event: bytes
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    deadline_ms: int | None = None  # None: 60 s after it is handed out
    function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:fake"
    trace_id: str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"  # "": none
    extra_headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Answer:
    """How a finished invocation was answered: ``response`` or ``error``, with the request."""

    kind: str
    request: RawRequest


class FakeRuntimeAPI:
    """The far side of the runtime loop. Use as a context manager; see the module docstring."""

    def __init__(
        self, *, when_empty: str = "end", close_connections: bool = False, drop_after_answer: bool = False
    ) -> None:
        assert when_empty in ("end", "hold")
        self.when_empty = when_empty
        self.close_connections = close_connections  # every reply says `Connection: close`, then closes
        self.drop_after_answer = drop_after_answer  # close after answering /response or /error, unannounced
        self.next_failures = 0
        self.refuse_next_after: int | None = None  # once this many were delivered, answer `next` with 400
        self.response_status: dict[str, int] = {}
        self.cut_after_chunks: dict[str, int] = {}
        self.requests: list[RawRequest] = []
        self.log: list[tuple[Any, ...]] = []
        self.errors: list[str] = []
        self.answers: dict[str, Answer] = {}
        self.init_errors: list[RawRequest] = []
        self.delivered: list[str] = []
        self.extensions: list[str] = []  # names registered through the Extensions API
        self._queue: deque[Invocation] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- test side ---

    def __enter__(self) -> FakeRuntimeAPI:
        thread = threading.Thread(target=self._accept_loop, name="fake-runtime-api", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(TIMEOUT)
        self._listener.close()

    def add(self, event: bytes | dict[str, Any] | list[Any] | str, **kwargs: Any) -> Invocation:
        """Queue an invocation; a dict, list or str event is JSON-encoded."""
        raw = event if isinstance(event, bytes) else json.dumps(event).encode()
        invocation = Invocation(raw, **kwargs)
        with self._cond:
            self._queue.append(invocation)
            self._cond.notify_all()
        return invocation

    def note(self, *entry: Any) -> None:
        """Append an entry to the shared, ordered log (apps use it to record what they did, and when)."""
        with self._cond:
            self.log.append(entry)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        """Block until ``predicate()`` holds (checked under the server's lock); TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise TimeoutError("the fake Runtime API never reached the awaited state")

    def wait_for_payload(self, request_id: str, data: bytes, timeout: float = TIMEOUT) -> None:
        """Block until the streamed response of ``request_id`` has delivered ``data`` (de-chunked)."""

        def arrived() -> bool:
            posts = self._posts_for(request_id)
            return bool(posts) and data in posts[-1].payload_so_far()

        self.wait_for(arrived, timeout)

    def _posts_for(self, request_id: str) -> list[RawRequest]:
        path = f"{API}/invocation/{request_id}/response"
        return [r for r in self.requests if r.target == path]

    def response(self, invocation: Invocation) -> RawRequest:
        answer = self.answers.get(invocation.request_id)
        assert answer is not None, f"invocation {invocation.request_id} was never answered"
        assert answer.kind == "response", f"invocation answered on /{answer.kind}"
        return answer.request

    def error(self, invocation: Invocation) -> RawRequest:
        answer = self.answers.get(invocation.request_id)
        assert answer is not None, f"invocation {invocation.request_id} was never answered"
        assert answer.kind == "error", f"invocation answered on /{answer.kind}"
        return answer.request

    def nexts(self) -> list[RawRequest]:
        return [r for r in self.requests if r.target == f"{API}/invocation/next"]

    def index(self, entry: tuple[Any, ...]) -> int:
        """Position of the first log entry that starts with ``entry``."""
        for i, logged in enumerate(self.log):
            if logged[: len(entry)] == entry:
                return i
        raise AssertionError(f"{entry} not in the log: {self.log}")

    # --- server side ---

    def _accept_loop(self) -> None:
        count = 0
        while not self._stopped:
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            count += 1
            sock.settimeout(TIMEOUT)
            self._sockets.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock, count), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock: socket.socket, cid: int) -> None:
        reader = _Reader(lambda: sock.recv(256 * 1024))
        self.note("connect", cid)
        try:
            while not reader.at_eof():
                request = read_request(
                    reader,
                    on_head=lambda r: self._on_head(r, cid),
                    on_chunk=lambda r, d: self._on_chunk(r, d, sock),
                )
                reader.record = bytearray()
                self.note("end", cid, request.method, request.target)
                if not self._route(sock, request) or self.close_connections:
                    break
        except ProtocolViolation as exc:
            self._fail(f"connection {cid}: {exc}")
        except _Cut:
            pass
        except (EOFError, OSError) as exc:
            self.note("dropped", cid, repr(exc))
            if reader.record and not self._stopped:  # the client gave up in the middle of a request
                self._fail(f"connection {cid}: request cut short ({exc!r}): {bytes(reader.record)[:80]!r}")
        finally:
            self.note("close", cid)
            with contextlib.suppress(OSError):
                sock.close()

    def _fail(self, message: str) -> None:
        with self._cond:
            self.errors.append(message)
            self._cond.notify_all()

    def _on_head(self, request: RawRequest, cid: int) -> None:
        request.connection = cid
        with self._cond:
            self.requests.append(request)
            self.log.append(("head", cid, request.method, request.target))
            self._cond.notify_all()

    def _on_chunk(self, request: RawRequest, data: bytes, sock: socket.socket) -> None:
        parts = request.target.split("/")
        request_id = unquote(parts[4]) if len(parts) > 4 else ""
        with self._cond:
            self.log.append(("chunk", request.target, data))
            limit = self.cut_after_chunks.get(request_id)
            if limit is not None and len(request.chunks) >= limit:
                self.answers[request_id] = Answer("cut", request)
                self.log.append(("cut", request_id))
            self._cond.notify_all()
        if limit is not None and len(request.chunks) >= limit:
            sock.shutdown(socket.SHUT_RDWR)
            raise _Cut

    def _route(self, sock: socket.socket, request: RawRequest) -> bool:
        method, target = request.method, request.target
        if method == "GET" and target == f"{API}/invocation/next":
            return self._next(sock, request)
        if method == "GET" and target == f"{API}/restore/next":
            self.note("restore")
            return self._reply(sock, 200, {})
        if method == "POST" and target == f"{API}/init/error":
            with self._cond:
                self.init_errors.append(request)
            return self._reply(sock, 202, {"status": "OK"})
        if method == "POST" and target == "/2020-01-01/extension/register":
            return self._register_extension(sock, request)
        if method == "GET" and target == "/2020-01-01/extension/event/next":
            return self._extension_next(request)
        parts = target.split("/")
        if method == "POST" and len(parts) == 6 and parts[3] == "invocation" and parts[5] in _ANSWERS:
            return self._answer(sock, request, parts[4], parts[5])
        self._fail(f"unexpected request {method} {target}")
        return self._reply(sock, 404, {"errorMessage": "no such route"})

    def _register_extension(self, sock: socket.socket, request: RawRequest) -> bool:
        # Extensions API: a name header and the events to receive; an internal extension that only wants
        # SIGTERM asks for none (runtimes-extensions-api docs; aws-lambda-go lambda/sigterm.go).
        name = dict((k.lower(), v) for k, v in request.headers).get("lambda-extension-name", "")
        if not name:
            self._fail("extension register without Lambda-Extension-Name")
        if json.loads(request.body or b"null") != {"events": []}:
            self._fail(f"extension register asked for events: {request.body!r}")
        with self._cond:
            self.extensions.append(name)
            self.log.append(("extension", name))
            self._cond.notify_all()
        return self._send(sock, 200, [("Lambda-Extension-Identifier", f"ext-{name}")], b"{}")

    def _extension_next(self, request: RawRequest) -> bool:
        # With no events registered this long poll never returns; hold it until the test ends.
        extension_id = dict((k.lower(), v) for k, v in request.headers).get("lambda-extension-identifier")
        if extension_id not in {f"ext-{name}" for name in self.extensions}:
            self._fail(f"extension next with unknown identifier {extension_id!r}")
        with self._cond:
            while not self._stopped:
                self._cond.wait(0.5)
        return False

    def _answer(self, sock: socket.socket, request: RawRequest, quoted_id: str, kind: str) -> bool:
        request_id = unquote(quoted_id)
        with self._cond:
            if request_id not in self.delivered:
                self.errors.append(f"answer for unknown request id {request_id!r}")
                status = 400
            elif request_id in self.answers:
                self.errors.append(f"second answer for {request_id!r}")
                status = 400
            else:
                self.answers[request_id] = Answer(kind, request)
                status = self.response_status.get(request_id, 202)
            self.log.append(("answered", request_id, kind))
            self._cond.notify_all()
        sent = self._reply(sock, status, {"status": "OK"} if status == 202 else {"errorMessage": "refused"})
        return sent and not self.drop_after_answer

    def _next(self, sock: socket.socket, request: RawRequest) -> bool:
        if request.body or request.chunked:
            self._fail("next sent a body")
        with self._cond:
            if self.next_failures > 0:
                self.next_failures -= 1
                self.log.append(("next", 500))
                failure = True
            else:
                failure = False
        if failure:
            return self._reply(sock, 500, {"errorMessage": "fake failure", "errorType": "ServiceException"})
        with self._cond:
            refuse = self.refuse_next_after is not None and len(self.delivered) >= self.refuse_next_after
            if refuse:
                self.log.append(("next", 400))
                self._cond.notify_all()
        if refuse:
            return self._reply(sock, 400, {"errorMessage": "fake refusal", "errorType": "InvalidRequest"})
        give_up = time.monotonic() + TIMEOUT
        with self._cond:
            while True:
                if self._queue:
                    invocation = self._queue.popleft()
                    self.delivered.append(invocation.request_id)
                    self.log.append(("next", 200, invocation.request_id))
                    break
                if self._stopped:
                    return False
                settled = all(rid in self.answers for rid in self.delivered)
                if self.when_empty == "end" and settled:
                    self.log.append(("next", DRAINED_STATUS))
                    invocation = None
                    break
                left = give_up - time.monotonic()
                if self.when_empty == "end" and left <= 0:
                    self.errors.append("gave up waiting for the answers of delivered invocations")
                    self.log.append(("next", DRAINED_STATUS))
                    invocation = None
                    break
                self._cond.wait(max(0.0, min(left, 0.5)) if self.when_empty == "end" else 0.5)
        if invocation is None:
            return self._reply(sock, DRAINED_STATUS, {"errorMessage": "no more invocations (test over)"})
        deadline = invocation.deadline_ms
        if deadline is None:
            deadline = int(time.time() * 1000) + 60_000
        headers = [
            ("Lambda-Runtime-Aws-Request-Id", invocation.request_id),
            ("Lambda-Runtime-Deadline-Ms", str(deadline)),
            ("Lambda-Runtime-Invoked-Function-Arn", invocation.function_arn),
            ("Lambda-Runtime-Trace-Id", invocation.trace_id),
            *invocation.extra_headers,
        ]
        headers = [(k, v) for k, v in headers if v]  # like RAPID: a header only when it has a value
        return self._send(sock, 200, headers, invocation.event)

    def _reply(self, sock: socket.socket, status: int, payload: Any) -> bool:
        return self._send(sock, status, [], json.dumps(payload).encode())

    def _send(self, sock: socket.socket, status: int, headers: list[tuple[str, str]], body: bytes) -> bool:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in [("Content-Type", "application/json"), *headers]]
        lines.append(f"Content-Length: {len(body)}")
        if self.close_connections:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            sock.sendall(head + body)
        except OSError:
            return False
        return True


class _Cut(Exception):
    """The fake dropped the connection on purpose (``cut_after_chunks``)."""


@contextlib.contextmanager
def fake_api(**kwargs: Any) -> Iterator[FakeRuntimeAPI]:
    with FakeRuntimeAPI(**kwargs) as api:
        yield api
