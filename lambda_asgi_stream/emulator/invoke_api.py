"""Lambda's Invoke API on the front door's port, so ``boto3.client("lambda", endpoint_url=...)`` works.

Two operations (AWS Lambda API reference; botocore's ``lambda`` service model):

* ``POST /2021-11-15/functions/{name}/response-streaming-invocations`` (``InvokeWithResponseStream``):
  ``200`` with an ``application/vnd.amazon.eventstream`` body, one ``PayloadChunk`` per piece the runtime
  writes, sent as it arrives and holding the bytes exactly as written (prelude and 8 NULs included), then
  one ``InvokeComplete``, whose ``ErrorCode``/``ErrorDetails`` are the only sign of a failed function: the
  status stays ``200`` (:mod:`~lambda_asgi_stream.eventstream`).
* ``POST /2015-03-31/functions/{name}/invocations`` (``Invoke``): ``RequestResponse`` answers the whole
  payload at the end, with ``X-Amz-Function-Error: Unhandled`` and the error object when the function
  failed; ``Event`` answers ``202`` and runs the invocation in the background; ``DryRun`` answers ``204``.

The request body is the event, passed to the function as given (not built from an HTTP request, unlike the
front door's other paths); an empty body is ``{}``. ``X-Amz-Log-Type: Tail`` returns the last 4 KB of the
sandbox's output during the invocation, base64-encoded, as ``LogResult``. Any function name is accepted:
the emulator serves one function. The invocation runs on a sandbox exactly as a front-door request does
(function timeout, sandbox kill, restarts).
"""

from __future__ import annotations

import abc
import base64
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.abc

from .._errors import ResponseTooLargeError
from .._types import Message, Receive, Scope, Send
from ..buffering import MAX_STREAMED_BYTES
from ..encoder import MAX_BUFFERED_RESPONSE_BYTES
from ..eventstream import CONTENT_TYPE, invoke_complete, payload_chunk
from ..runtime_api import encode_buffered
from .local_api import BufferedResult, InvocationEvent, InvocationFailed, StreamData, StreamEnd
from .options import error_text, say
from .response import RequestLog
from .sandbox import Sandbox

#: ``Invoke``'s asynchronous payload limit (``Event``); synchronous calls share the front door's 6 MB.
MAX_EVENT_PAYLOAD_BYTES = 1024 * 1024
EXECUTED_VERSION = "$LATEST"

logger = logging.getLogger("lambda_asgi_stream.emulator")

_STREAM_PATH = re.compile(r"/2021-11-15/functions/([^/]+)/response-streaming-invocations")
_INVOKE_PATH = re.compile(r"/2015-03-31/functions/([^/]+)/invocations")


class Responder(Protocol):
    """What the front door's invocation loop drives: one per invocation, fed the sandbox's output."""

    ended: bool  # the caller's answer is over: nothing more is sent
    cut: bool  # the answer was cut: the HTTP server must drop the connection
    client_gone: bool  # set by the front door when the caller disconnects

    async def handle(self, item: InvocationEvent) -> None: ...

    async def fail(self, error_type: str, message: str) -> None: ...

    async def finish(self) -> None: ...


#: Runs one invocation on a free sandbox: ``(event, receive, make_responder)`` -> the answer was cut.
Invoker = Callable[[bytes, Receive, Callable[[Sandbox], Responder]], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Route:
    """An Invoke API request: which operation, for which function name."""

    streaming: bool
    function: str


def route(scope: Scope) -> Route | None:
    """The Invoke API operation a request is, or None for a request to the app."""
    if scope["method"] != "POST":
        return None
    for pattern, streaming in ((_STREAM_PATH, True), (_INVOKE_PATH, False)):
        found = pattern.fullmatch(scope["path"])
        if found:
            return Route(streaming, found.group(1))
    return None


class InvokeAPI:
    """Answers the two Invoke API operations; ``invoke`` runs an invocation as the front door does."""

    def __init__(self, invoke: Invoker, tasks: anyio.abc.TaskGroup) -> None:
        self.invoke = invoke
        self.tasks = tasks

    async def serve(
        self, api: Route, scope: Scope, body: bytes, receive: Receive, send: Send, log: RequestLog
    ) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        invocation_type = headers.get("x-amz-invocation-type", "RequestResponse")
        allowed = ("RequestResponse", "DryRun") if api.streaming else ("RequestResponse", "Event", "DryRun")
        log_type = headers.get("x-amz-log-type", "None")
        payload = body or b"{}"
        problem = _invalid_request(invocation_type, allowed, log_type, payload)
        if problem is not None:
            await _service_error(send, log, 400, *problem)
            return
        if invocation_type == "DryRun":
            log.status, log.end = 204, "dry-run"
            await _respond(send, 204, [], b"")
            return
        tail = log_type == "Tail"
        label = f"{log.method} {log.path}"
        if invocation_type == "Event":
            await self._queue(payload, send, log, label)
        elif api.streaming:
            await self.invoke(
                payload, receive, lambda sandbox: StreamedInvocation(send, log, label, sandbox, tail)
            )
        else:
            await self.invoke(
                payload, receive, lambda sandbox: BufferedInvocation(send, log, label, sandbox, tail)
            )

    async def _queue(self, payload: bytes, send: Send, log: RequestLog, label: str) -> None:
        if len(payload) > MAX_EVENT_PAYLOAD_BYTES:
            size = len(payload)
            message = f"the payload is {size} bytes; asynchronous invocations take {MAX_EVENT_PAYLOAD_BYTES}"
            await _service_error(send, log, 413, "RequestTooLargeException", message)
            return
        log.status, log.end = 202, "queued"
        await _respond(send, 202, [], b"")
        # Lambda queues the event and answers at once; the function's answer goes nowhere.
        self.tasks.start_soon(self._run_event, payload, RequestLog("EVENT", log.path), label)

    async def _run_event(self, payload: bytes, log: RequestLog, label: str) -> None:
        try:
            await self.invoke(
                payload,
                _never,
                lambda sandbox: BufferedInvocation(_discard, log, f"{label} (Event)", sandbox, False),
            )
        finally:
            logger.info("%s", log.line())


async def _never() -> Message:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


async def _discard(message: Message) -> None:
    pass


def _invalid_request(
    invocation_type: str, allowed: tuple[str, ...], log_type: str, payload: bytes
) -> tuple[str, str] | None:
    if invocation_type not in allowed:
        return "InvalidParameterValueException", f"X-Amz-Invocation-Type must be one of {', '.join(allowed)}"
    if log_type not in ("None", "Tail"):
        return "InvalidParameterValueException", "X-Amz-Log-Type must be None or Tail"
    try:
        json.loads(payload)
    except ValueError as exc:
        return "InvalidRequestContentException", f"Could not parse request body into json: {exc}"
    return None


async def _service_error(send: Send, log: RequestLog, status: int, error_type: str, message: str) -> None:
    """An error of the Lambda service itself (not the function), as botocore's rest-json parser reads it."""
    log.status, log.end = status, f"error:{error_type}"
    body = json.dumps({"Type": "User", "message": message}).encode()
    await _respond(
        send, status, [("x-amzn-errortype", error_type), ("content-type", "application/json")], body
    )


async def _respond(send: Send, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if status != 204:  # a 204 carries no Content-Length (RFC 9110 8.6)
        raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _error_object(error_type: str, detail: Any) -> dict[str, Any]:
    """The error document Lambda returns for a failed function (``errorMessage``, ``errorType``, ...)."""
    found = dict(detail) if isinstance(detail, dict) else {"errorMessage": error_text(detail)}
    found.setdefault("errorType", error_type)
    return found


class _Invocation(abc.ABC):
    """What the two operations share: the caller's connection, the request's log line, the log tail."""

    def __init__(self, send: Send, log: RequestLog, label: str, sandbox: Sandbox, tail: bool) -> None:
        self._send = send
        self.log = log
        self.label = label
        self.sandbox = sandbox
        self.tail = tail
        self.ended = False
        self.cut = False
        self.client_gone = False
        self.started = False
        self.mark = sandbox.output.written  # the log tail counts from here

    async def fail(self, error_type: str, message: str) -> None:
        await self._failed(error_type, {"errorMessage": message, "errorType": error_type})

    async def finish(self) -> None:
        if not self.ended:
            await self.fail("Runtime.NoResponse", "the invocation ended without a response")

    async def handle(self, item: InvocationEvent) -> None:
        if self.ended:
            return
        if isinstance(item, StreamData):
            await self._data(item.data)
        elif isinstance(item, StreamEnd):
            if item.error is None:
                await self._succeeded()
            else:
                await self._failed(*item.error)
        elif isinstance(item, BufferedResult):
            try:
                data = encode_buffered(item.payload)  # as the runtime sent it, within the 6 MB limit
            except ResponseTooLargeError as exc:
                await self.fail(exc.error_type, str(exc))
                return
            await self._buffered(data)
        elif isinstance(item, InvocationFailed):
            await self._failed(item.error_type, item.payload)

    def log_result(self) -> str | None:
        """``LogResult``: base64 of the last 4 KB the sandbox printed during this invocation."""
        if not self.tail:
            return None
        return base64.b64encode(self.sandbox.output.since(self.mark)).decode("ascii")

    def _end(self, reason: str) -> None:
        self.ended = True
        self.log.end = "client-gone" if self.client_gone and reason == "complete" else reason

    def _report(self, error_type: str, detail: Any) -> None:
        say(f"{self.label}: {error_type}: {error_text(detail)}")

    async def _client(self, message: Message) -> None:
        # Lambda keeps running when the caller leaves: keep draining the sandbox, stop sending.
        if self.client_gone:
            return
        try:
            await self._send(message)
        except OSError:
            self.client_gone = True

    @abc.abstractmethod
    async def _data(self, data: bytes) -> None:
        """Bytes the runtime wrote."""

    @abc.abstractmethod
    async def _succeeded(self) -> None:
        """The stream ended cleanly."""

    @abc.abstractmethod
    async def _buffered(self, data: bytes) -> None:
        """The function returned a buffered document (encoded as the runtime sent it)."""

    @abc.abstractmethod
    async def _failed(self, error_type: str, detail: Any) -> None:
        """The invocation failed: ``detail`` is the error object or message."""


class StreamedInvocation(_Invocation):
    """``InvokeWithResponseStream``: each write as a ``PayloadChunk`` now, ``InvokeComplete`` at the end."""

    def __init__(self, send: Send, log: RequestLog, label: str, sandbox: Sandbox, tail: bool) -> None:
        super().__init__(send, log, label, sandbox, tail)
        self.streamed = 0

    async def _data(self, data: bytes) -> None:
        self.streamed += len(data)
        if self.streamed > MAX_STREAMED_BYTES:
            limit = f"the streamed response passed Lambda's {MAX_STREAMED_BYTES // 2**20} MB limit"
            await self.fail("Function.ResponseSizeTooLarge", limit)
            return
        await self._start()
        self.log.bytes += len(data)
        self.log.chunks += 1
        if self.log.first_byte is None:
            self.log.first_byte = time.perf_counter()
        await self._client({"type": "http.response.body", "body": payload_chunk(data), "more_body": True})

    async def _buffered(self, data: bytes) -> None:
        # A function that does not stream: Lambda sends its whole response as one chunk.
        await self._data(data)
        await self._succeeded()

    async def _succeeded(self) -> None:
        await self._complete(None, None)
        self._end("complete")

    async def _failed(self, error_type: str, detail: Any) -> None:
        self._report(error_type, detail)
        await self._complete(error_type, error_text(detail))
        self._end(f"error:{error_type}")

    async def _start(self) -> None:
        if self.started:
            return
        self.started = True
        self.log.status = 200
        headers = [
            (b"content-type", CONTENT_TYPE.encode()),
            (b"x-amz-executed-version", EXECUTED_VERSION.encode()),
        ]
        await self._client({"type": "http.response.start", "status": 200, "headers": headers})

    async def _complete(self, error_code: str | None, error_details: str | None) -> None:
        if self.ended:
            return
        await self._start()
        event = invoke_complete(error_code, error_details, self.log_result())
        await self._client({"type": "http.response.body", "body": event, "more_body": False})


class BufferedInvocation(_Invocation):
    """``Invoke`` (``RequestResponse``): the whole payload at the end, or the error object."""

    def __init__(self, send: Send, log: RequestLog, label: str, sandbox: Sandbox, tail: bool) -> None:
        super().__init__(send, log, label, sandbox, tail)
        self.body = bytearray()

    async def _data(self, data: bytes) -> None:
        # A streaming function called with Invoke: Lambda collects the stream, up to the 6 MB payload limit.
        self.body += data
        if len(self.body) > MAX_BUFFERED_RESPONSE_BYTES:
            limit = (
                "Response payload size exceeded maximum allowed payload size "
                f"({MAX_BUFFERED_RESPONSE_BYTES} bytes)."
            )
            await self.fail("Function.ResponseSizeTooLarge", limit)

    async def _succeeded(self) -> None:
        await self._answer(bytes(self.body), None)
        self._end("complete")

    async def _buffered(self, data: bytes) -> None:
        await self._answer(data, None)
        self._end("complete")

    async def _failed(self, error_type: str, detail: Any) -> None:
        self._report(error_type, detail)
        error = json.dumps(_error_object(error_type, detail), separators=(",", ":")).encode("utf-8")
        await self._answer(error, "Unhandled")
        self._end(f"error:{error_type}")

    async def _answer(self, body: bytes, function_error: str | None) -> None:
        if self.ended:
            return
        headers = [("content-type", "application/json"), ("x-amz-executed-version", EXECUTED_VERSION)]
        if function_error is not None:
            headers.append(("x-amz-function-error", function_error))
        log_result = self.log_result()
        if log_result is not None:
            headers.append(("x-amz-log-result", log_result))
        self.log.status = 200
        self.log.bytes, self.log.chunks = len(body), 1
        self.log.first_byte = time.perf_counter()
        self.started = True
        await _respond(self._client, 200, headers, body)
