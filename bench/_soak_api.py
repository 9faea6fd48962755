"""A strict fake Lambda Runtime API for ``soak.py``: its own process, raw asyncio, loopback only.

    python bench/_soak_api.py PLAN.jsonl REPORT.json [EVERY [CLOSE_SHARE]]

``PLAN.jsonl`` holds one invocation a line: ``{"id": ..., "event": str, "deadline_ms": ms ahead}``. Each
``GET .../invocation/next`` gets the next one, in order, whatever connection asks (with
``AWS_LAMBDA_MAX_CONCURRENCY`` the runtime long-polls ``next`` on several connections at once; each is
answered as soon as there is an invocation for it). Once the plan is handed out, ``next`` is held open
for ever, as Lambda does when no event comes; the runtime is then stopped with SIGTERM by ``soak.py``.

It is strict about HTTP/1.1 (RFC 9112): CRLF line ends only, token header names, no obs-fold, a
``Host``, ``Content-Length`` or ``Transfer-Encoding: chunked`` (never both), chunk sizes in hex without
extensions, no empty data chunk before the last one, trailers only among those declared in ``Trailer``.
A framing fault ends the connection and is recorded. It also checks what Lambda checks of a streamed
response: ``Lambda-Runtime-Function-Response-Mode: streaming`` and the prelude content type, the
prelude JSON and its 8 NULs.

Every answer (``POST .../{id}/response`` or ``.../{id}/error``, to any id, even one never handed out or
already answered) is kept as a digest: the status, the ``x-soak-nonce`` and ``x-soak-req`` response
headers, the body's length and SHA-256 (for ``text/event-stream``, after dropping ``:`` comment lines,
which are padding and heartbeats), the error type and message (from ``/error``'s header and JSON, or
from the stream's error trailers), when it completed against the invocation's deadline. ``soak.py``
compares those with what each invocation asked for. The answer to the runtime is always 202.

``CLOSE_SHARE`` (default 0): that share of replies (``next`` and answers alike) says ``Connection:
close`` and the connection is closed after it, as the custom-runtime docs allow after a streamed
response: the runtime must open a new connection and lose nothing.

stdout: ``{"port": N}``, then ``{"event": "progress", "answered": N}`` every ``--every`` answers, then
``{"event": "done", ...}`` once every invocation of the plan has an answer. stdin: ``report`` writes
REPORT.json (the digests and counters) and answers ``{"event": "reported"}``; end of stdin exits.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import random
import re
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from _fake_api import INVOCATION, NEXT, emit, extension_registered

ARN = "arn:aws:lambda:us-east-1:123456789012:function:soak"
PRELUDE_TYPE = b"application/vnd.awslambda.http-integration-response"
ERROR_TYPE = b"lambda-runtime-function-error-type"
ERROR_BODY = b"lambda-runtime-function-error-body"
ACCEPTED = (
    b'HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"status":"OK"}\n'
)
ACCEPTED_CLOSE = ACCEPTED.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_REQUEST_LINE = re.compile(rb"([A-Z]+) (/[!-~]*) HTTP/1\.1")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,8}")
_LINE = re.compile(rb"[^\n]*\n|[^\n]+\Z")
MAX_HEAD = 64 * 1024


class Violation(Exception):
    """Bytes that are not strict HTTP/1.1."""


class Request:
    __slots__ = ("body", "chunked", "declared", "headers", "method", "target", "trailers")

    def __init__(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = b""
        self.chunked = False
        self.trailers: list[tuple[bytes, bytes]] = []
        self.declared = {
            name.strip().lower()
            for k, v in headers
            if k == b"trailer"
            for name in v.split(b",")
            if name.strip()
        }

    def header(self, name: bytes) -> bytes | None:
        found = [v for k, v in self.headers if k == name]
        if len(found) > 1:
            raise Violation(f"header {name!r} sent {len(found)} times")
        return found[0] if found else None


def _field(line: bytes) -> tuple[bytes, bytes]:
    if line[:1] in (b" ", b"\t"):
        raise Violation(f"obs-fold line {line[:80]!r}")
    name, sep, value = line.partition(b":")
    if not sep or not _TOKEN.fullmatch(name):
        raise Violation(f"bad field line {line[:80]!r}")
    value = value.strip(b" \t")
    if any((c < 0x20 and c != 0x09) or c == 0x7F for c in value):
        raise Violation(f"control character in field {name!r}")
    return name.lower(), value


class Invocation:
    __slots__ = ("deadline_ms", "event", "handed_at", "id")

    def __init__(self, spec: dict[str, Any]) -> None:
        self.id: str = spec["id"]
        self.event: bytes = spec["event"].encode()
        self.deadline_ms: int = int(spec["deadline_ms"])
        self.handed_at = 0.0


class Server:
    def __init__(self, plan: list[dict[str, Any]], every: int, close_share: float = 0.0) -> None:
        self.close_share = close_share
        self.rng = random.Random(1129)
        self.closes = 0
        self.plan = deque(Invocation(spec) for spec in plan)
        self.total = len(self.plan)
        self.every = every
        self.waiting: deque[Connection] = deque()  # connections whose `next` is held
        self.out: dict[str, Invocation] = {}  # handed out, by id
        self.deadlines: dict[str, int] = {}
        self.answered: set[str] = set()
        self.answers: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.nexts = 0
        self.max_waiting = 0
        self.connections = 0
        self.extension_ids = 0
        self.padding_bytes = 0
        self.done_sent = False

    def on_next(self, conn: Connection) -> None:
        self.nexts += 1
        self.waiting.append(conn)
        self.max_waiting = max(self.max_waiting, len(self.waiting))
        self._hand_out()

    def _hand_out(self) -> None:
        while self.plan and self.waiting:
            conn = self.waiting.popleft()
            if conn.transport.is_closing():
                continue
            inv = self.plan.popleft()
            deadline = int(time.time() * 1000) + inv.deadline_ms
            self.out[inv.id] = inv
            self.deadlines[inv.id] = deadline
            inv.handed_at = time.monotonic()
            close = self._closing()
            head = (
                "HTTP/1.1 200 OK\r\n"
                + ("Connection: close\r\n" if close else "")
                + "Content-Type: application/json\r\n"
                f"Lambda-Runtime-Aws-Request-Id: {inv.id}\r\n"
                f"Lambda-Runtime-Deadline-Ms: {deadline}\r\n"
                f"Lambda-Runtime-Invoked-Function-Arn: {ARN}\r\n"
                "Lambda-Runtime-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0\r\n"
                f"Content-Length: {len(inv.event)}\r\n\r\n"
            )
            conn.write(head.encode() + inv.event)
            if close:
                conn.transport.close()
            inv.event = b""  # handed out: keep no copy

    def _closing(self) -> bool:
        """Whether this reply says ``Connection: close`` (and the connection is then closed)."""
        close = self.close_share > 0 and self.rng.random() < self.close_share
        self.closes += close
        return close

    def on_answer(self, conn: Connection, request: Request, request_id: str, action: str) -> None:
        if self._closing():
            conn.write(ACCEPTED_CLOSE)
            conn.transport.close()
        else:
            conn.write(ACCEPTED)
        now_ms = time.time() * 1000
        digest: dict[str, Any] = {"id": request_id, "action": action, "conn": conn.number, "problems": []}
        inv = self.out.get(request_id)
        if inv is None:
            digest["problems"].append("an id never handed out")
        else:
            digest["late_ms"] = max(0.0, now_ms - self.deadlines[request_id])
            digest["elapsed_ms"] = (time.monotonic() - inv.handed_at) * 1000
        try:
            if action == "error":
                _read_error(request, digest)
            elif (request.header(b"lambda-runtime-function-response-mode") or b"").lower() == b"streaming":
                self.padding_bytes += _read_stream(request, digest)
            else:
                _read_buffered(request, digest)
        except Violation as exc:
            digest["problems"].append(str(exc))
        self.answers.append(digest)
        if inv is not None:
            self.answered.add(request_id)
        if len(self.answers) % self.every == 0:
            emit({"event": "progress", "answered": len(self.answers)})
        if not self.done_sent and not self.plan and len(self.answered) == self.total:
            self.done_sent = True
            emit({"event": "done", "answers": len(self.answers)})

    def on_register(self, conn: Connection) -> None:
        self.extension_ids += 1
        conn.write(extension_registered(self.extension_ids, "soak"))

    def dispatch(self, conn: Connection, request: Request) -> None:
        method, target = request.method, request.target
        if method == b"GET" and target == NEXT:
            self.on_next(conn)
        elif method == b"POST" and target.startswith(INVOCATION) and target.count(b"/") == 5:
            request_id, _, action = target[len(INVOCATION) :].decode().partition("/")
            if action in ("response", "error"):
                self.on_answer(conn, request, request_id, action)
                return
            self._unexpected(conn, request)
        elif method == b"POST" and target == b"/2020-01-01/extension/register":
            self.on_register(conn)
        elif method == b"GET" and target == b"/2020-01-01/extension/event/next":
            pass  # held: no extension events; SIGTERM ends the runtime
        else:
            self._unexpected(conn, request)

    def _unexpected(self, conn: Connection, request: Request) -> None:
        conn.write(NOT_FOUND)
        self.violations.append(f"unexpected {request.method.decode()} {request.target.decode()}")

    def report(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "handed_out": len(self.out),
            "answers": self.answers,
            "violations": self.violations,
            "nexts": self.nexts,
            "max_waiting_nexts": self.max_waiting,
            "connections": self.connections,
            "extension_registrations": self.extension_ids,
            "padding_bytes": self.padding_bytes,
            "closes": self.closes,
        }


# --- what an answer carried --------------------------------------------------------------------------


def _error_doc(raw: bytes, digest: dict[str, Any]) -> None:
    try:
        doc = json.loads(raw)
        digest["error_message"] = doc["errorMessage"]
        digest["error_doc_type"] = doc["errorType"]
        if not isinstance(doc.get("stackTrace"), list):
            digest["problems"].append("error document without a stackTrace list")
    except (ValueError, KeyError, TypeError) as exc:
        digest["problems"].append(f"unreadable error document ({exc}): {raw[:200]!r}")


def _read_error(request: Request, digest: dict[str, Any]) -> None:
    digest["kind"] = "error"
    digest["error_type"] = (request.header(ERROR_TYPE) or b"").decode("latin-1")
    _error_doc(request.body, digest)
    if len(request.body) > 64 * 1024:
        digest["problems"].append(f"error document of {len(request.body)} bytes")


def _body_digest(body: bytes, ctype: str, digest: dict[str, Any]) -> int:
    padding = 0
    if ctype.startswith("text/event-stream"):
        kept = []
        for match in _LINE.finditer(body):
            line = match.group()
            if line.startswith(b":"):
                padding += len(line)
            else:
                kept.append(line)
        body = b"".join(kept)
    digest["body_len"] = len(body)
    digest["body_sha"] = hashlib.sha256(body).hexdigest()
    digest["body_head"] = body[:60].decode("latin-1")
    digest["padding"] = padding
    return padding


def _read_stream(request: Request, digest: dict[str, Any]) -> int:
    digest["kind"] = "stream"
    if not request.chunked:
        raise Violation("a streamed response that is not chunked")
    if request.header(b"content-type") != PRELUDE_TYPE:
        raise Violation(f"streamed response content-type {request.header(b'content-type')!r}")
    body = request.body
    end = body.find(b"\0" * 8)
    if end < 0:
        raise Violation("no 8-NUL delimiter after the prelude")
    try:
        prelude = json.loads(body[:end])
        headers = {str(k).lower(): str(v) for k, v in (prelude.get("headers") or {}).items()}
        digest["status"] = int(prelude["statusCode"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Violation(f"unreadable prelude ({exc}): {body[:200]!r}") from None
    digest["nonce"] = headers.get("x-soak-nonce")
    digest["req_sha"] = headers.get("x-soak-req")
    trailers = dict(request.trailers)
    error_type = trailers.get(ERROR_TYPE)
    if error_type is not None:
        digest["error_type"] = error_type.decode("latin-1")
        try:
            _error_doc(base64.b64decode(trailers.get(ERROR_BODY, b""), validate=True), digest)
        except binascii.Error as exc:
            digest["problems"].append(f"error body trailer not base64: {exc}")
    return _body_digest(body[end + 8 :], headers.get("content-type", ""), digest)


def _read_buffered(request: Request, digest: dict[str, Any]) -> None:
    digest["kind"] = "buffered"
    if request.chunked:
        raise Violation("a chunked body for a buffered response")
    try:
        doc = json.loads(request.body)
        if "status" in doc:  # Lambda@Edge
            status = int(doc["status"])
            headers = {k.lower(): v[0]["value"] for k, v in (doc.get("headers") or {}).items() if v}
            text = doc.get("body") or ""
            data = base64.b64decode(text) if doc.get("bodyEncoding") == "base64" else text.encode()
        else:
            status = int(doc["statusCode"])
            headers = {k.lower(): v for k, v in (doc.get("headers") or {}).items()}
            for k, v in (doc.get("multiValueHeaders") or {}).items():
                headers.setdefault(k.lower(), v[0] if isinstance(v, list) and v else v)
            text = doc.get("body") or ""
            data = base64.b64decode(text) if doc.get("isBase64Encoded") else text.encode()
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise Violation(f"unreadable buffered response ({exc}): {request.body[:200]!r}") from None
    digest["status"] = status
    digest["nonce"] = headers.get("x-soak-nonce")
    digest["req_sha"] = headers.get("x-soak-req")
    _body_digest(data, str(headers.get("content-type", "")), digest)


# --- HTTP/1.1 ----------------------------------------------------------------------------------------


class Connection(asyncio.Protocol):
    """One connection: a strict incremental parser of requests with Content-Length or chunked bodies."""

    def __init__(self, server: Server) -> None:
        self.server = server
        server.connections += 1
        self.number = server.connections
        self.buf = bytearray()
        self.state = "head"
        self.need = 0
        self.parts: list[bytes] = []
        self.request: Request | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.request is not None:
            self.server.violations.append(
                f"connection {self.number} closed mid-request {self.request.target.decode()}"
            )

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            self._parse()
        except Violation as exc:
            self.server.violations.append(f"connection {self.number}: {exc}")
            self.request = None
            self.transport.abort()

    def _line(self) -> bytes | None:
        end = self.buf.find(b"\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                raise Violation("line too long")
            return None
        if end == 0 or self.buf[end - 1] != 0x0D or b"\r" in self.buf[: end - 1]:
            raise Violation(f"line not ended by a single CRLF: {bytes(self.buf[: end + 1])[:80]!r}")
        line = bytes(self.buf[: end - 1])
        del self.buf[: end + 1]
        return line

    def _parse(self) -> None:
        while True:
            if self.state == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > MAX_HEAD:
                        raise Violation("request head too long")
                    return
                head = bytes(self.buf[: end + 2])
                del self.buf[: end + 4]
                self._head(head)
            elif self.state == "length":
                if len(self.buf) < self.need:
                    return
                assert self.request is not None
                self.request.body = bytes(self.buf[: self.need])
                del self.buf[: self.need]
                self._done()
            elif self.state == "size":
                line = self._line()
                if line is None:
                    return
                if not _CHUNK_SIZE.fullmatch(line):
                    raise Violation(f"bad chunk size line {line[:40]!r} (extensions are not expected)")
                size = int(line, 16)
                if size == 0:
                    self.state = "trailers"
                else:
                    self.need = size
                    self.state = "data"
            elif self.state == "data":
                if len(self.buf) < self.need + 2:
                    return
                if self.buf[self.need : self.need + 2] != b"\r\n":
                    raise Violation("chunk data not followed by CRLF")
                self.parts.append(bytes(self.buf[: self.need]))
                del self.buf[: self.need + 2]
                self.state = "size"
            elif self.state == "trailers":
                line = self._line()
                if line is None:
                    return
                assert self.request is not None
                if not line:
                    self.request.body = b"".join(self.parts)
                    self.parts = []
                    self._done()
                    continue
                name, value = _field(line)
                if name not in self.request.declared:
                    raise Violation(f"trailer {name!r} not declared in Trailer")
                self.request.trailers.append((name, value))

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")[:-1]
        if any(b"\n" in line or b"\r" in line for line in lines):
            raise Violation("bare CR or LF in the request head")
        match = _REQUEST_LINE.fullmatch(lines[0])
        if match is None:
            raise Violation(f"bad request line {lines[0][:100]!r}")
        request = Request(match.group(1), match.group(2), [_field(line) for line in lines[1:]])
        if request.header(b"host") is None:
            raise Violation("no Host header")
        te, cl = request.header(b"transfer-encoding"), request.header(b"content-length")
        if te is not None and cl is not None:
            raise Violation("both Transfer-Encoding and Content-Length")
        self.request = request
        if te is not None:
            if te.lower() != b"chunked":
                raise Violation(f"Transfer-Encoding {te!r}")
            request.chunked = True
            self.parts = []
            self.state = "size"
        else:
            if cl is not None and not cl.isdigit():
                raise Violation(f"Content-Length {cl!r}")
            if cl is None and request.method == b"POST":
                raise Violation("a POST without Content-Length or chunked body")
            self.need = int(cl or b"0")
            self.state = "length"

    def _done(self) -> None:
        request, self.request = self.request, None
        self.state = "head"
        assert request is not None
        self.server.dispatch(self, request)


async def main() -> None:
    plan_path, report_path = sys.argv[1], sys.argv[2]
    every = int(sys.argv[3]) if len(sys.argv) > 3 else 250
    close_share = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    plan = [json.loads(line) for line in Path(plan_path).read_text("utf-8").splitlines()]  # noqa: ASYNC240
    loop = asyncio.get_running_loop()
    server = Server(plan, every, close_share)
    del plan
    listener = await loop.create_server(lambda: Connection(server), "127.0.0.1", 0)
    emit({"port": listener.sockets[0].getsockname()[1]})
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"report":
            Path(report_path).write_text(json.dumps(server.report()), "utf-8")  # noqa: ASYNC240
            emit({"event": "reported"})
    listener.close()


if __name__ == "__main__":
    asyncio.run(main())
