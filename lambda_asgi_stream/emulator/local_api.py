"""A Lambda Runtime API server on loopback (anyio + h11), for ``invoke`` and the local emulator.

It speaks the same protocol Lambda's RAPID does (docs/wire-format.md): ``next`` long-polls for an
invocation, ``.../response`` takes a buffered JSON body or a chunked streaming body with error trailers,
``.../error`` and ``/runtime/init/error`` take error reports. It is built on h11 rather than an ASGI
server because ASGI cannot see request trailers, and the trailers are how a streamed invocation fails.

Each streamed chunk is handed to the caller as it arrives (no buffering of the body), and the server does
not read more from the runtime until the caller has taken the previous chunk, so a slow consumer slows the
runtime down the way Lambda's bandwidth limit does.

Not on the Lambda cold path: the runtime loop never imports this module.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import anyio
import anyio.abc
import anyio.lowlevel
import h11
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .. import runtime_api
from .._types import Headers
from ..encoder import read_error_trailers
from .h11_io import drain_body, header, json_or_text, next_event, read_body, reply

logger = logging.getLogger("lambda_asgi_stream.local")

_PREFIX = f"/{runtime_api.API_VERSION}/runtime"


@dataclass(frozen=True, slots=True)
class StreamData:
    """Bytes of a streamed response body (prelude included: decode with ``PreludeDecoder``)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The streamed response ended; ``error`` is (type, detail) when trailers reported a failure."""

    trailers: Headers
    error: tuple[str, Any] | None


@dataclass(frozen=True, slots=True)
class BufferedResult:
    """A buffered (non-streaming) response: the JSON document the function returned."""

    payload: Any
    content_type: str


@dataclass(frozen=True, slots=True)
class InvocationFailed:
    """The runtime reported the invocation on ``.../error``."""

    error_type: str
    payload: Any


InvocationEvent = StreamData | StreamEnd | BufferedResult | InvocationFailed


@dataclass
class _Pending:
    request_id: str
    event: bytes
    deadline_ms: int
    send: MemoryObjectSendStream[InvocationEvent]
    receive: MemoryObjectReceiveStream[InvocationEvent]
    timeout_s: float = 900.0
    on_taken: Callable[[], None] | None = None
    taken_at: float | None = None
    done: bool = False
    extra_headers: list[tuple[str, str]] = field(default_factory=list)


class LocalRuntimeAPI:
    """Serve the Runtime API on a listener; feed it invocations with :meth:`invoke`.

    >>> api = LocalRuntimeAPI()                                       # doctest: +SKIP
    >>> async with anyio.create_task_group() as tg:                   # doctest: +SKIP
    ...     address = await tg.start(api.serve, "127.0.0.1", 0)
    ...     async for item in api.invoke(b'{"version": "2.0", ...}'):
    ...         print(item)
    """

    def __init__(self, function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:local") -> None:
        self.function_arn = function_arn
        # A plain deque, not a memory stream: a ``next`` poller whose runtime went away must be able to
        # stop waiting without the chance of taking (and losing) an invocation.
        self._queue: deque[_Pending] = deque()
        self._queued: anyio.Event | None = None
        self._by_id: dict[str, _Pending] = {}
        self.init_errors: list[InvocationFailed] = []
        self.init_error_event: anyio.Event | None = None
        self.next_calls = 0  # ``next`` requests received (a runtime that never polls failed its init)

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and serve until cancelled; reports ``host:port`` through ``task_status``."""
        self.init_error_event = anyio.Event()
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listener:
            sockname = listener.extra(anyio.abc.SocketAttribute.local_address)
            task_status.started(f"{sockname[0]}:{sockname[1]}")
            await listener.serve(self._connection)

    async def invoke(
        self,
        event: bytes,
        *,
        timeout_s: float = 900.0,
        request_id: str | None = None,
        on_taken: Callable[[], None] | None = None,
    ) -> AsyncIterator[InvocationEvent]:
        """Queue one invocation and yield what the runtime sends back, as it arrives.

        The deadline (``timeout_s``) runs from the moment a runtime takes the invocation, as Lambda's
        function timeout does; ``on_taken`` is called at that moment.
        """
        send, receive = anyio.create_memory_object_stream[InvocationEvent](0)
        pending = _Pending(
            request_id=request_id or str(uuid.uuid4()),
            event=event,
            deadline_ms=0,
            send=send,
            receive=receive,
            timeout_s=timeout_s,
            on_taken=on_taken,
        )
        self._by_id[pending.request_id] = pending
        self._queue.append(pending)
        if self._queued is not None:
            self._queued.set()
        await anyio.lowlevel.checkpoint()
        try:
            async with receive:
                async for item in receive:
                    yield item
                    if not isinstance(item, StreamData):
                        return
        finally:
            pending.done = True  # nobody listens any more: never hand it out, drop what comes back
            self._by_id.pop(pending.request_id, None)

    # --- the server side --------------------------------------------------------------------------

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            try:
                while True:
                    request = await next_event(conn, stream)
                    if not isinstance(request, h11.Request):
                        return
                    await self._route(conn, stream, request)
                    if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                h11.ProtocolError,
                OSError,
            ) as exc:
                logger.debug("runtime connection ended: %s", exc)

    async def _route(self, conn: h11.Connection, stream: anyio.abc.SocketStream, req: h11.Request) -> None:
        target = req.target.decode("latin-1")
        method = req.method.decode("latin-1")
        if method == "GET" and target == f"{_PREFIX}/invocation/next":
            await drain_body(conn, stream)
            self.next_calls += 1
            await self._next(conn, stream)
            return
        if method == "POST" and target == f"{_PREFIX}/init/error":
            body = await read_body(conn, stream)
            self.init_errors.append(
                InvocationFailed(header(req, "lambda-runtime-function-error-type"), json_or_text(body))
            )
            if self.init_error_event is not None:
                self.init_error_event.set()
            await reply(conn, stream, 202, {"status": "OK"})
            return
        if method == "POST" and target == "/2020-01-01/extension/register":
            # The runtime registers a no-op extension so that Lambda sends it SIGTERM (the runtime loop); here
            # the sandbox gets SIGTERM anyway, so registering is all there is to it.
            await drain_body(conn, stream)
            name = header(req, "lambda-extension-name")
            await reply(conn, stream, 200, {}, [("Lambda-Extension-Identifier", f"local-{name}")])
            return
        if method == "GET" and target == "/2020-01-01/extension/event/next":
            await drain_body(conn, stream)
            await anyio.sleep_forever()  # no events were asked for: the long poll never returns
        parts = target.split("/")
        # /2018-06-01/runtime/invocation/{id}/{response|error}
        if method == "POST" and len(parts) == 6 and parts[3] == "invocation":
            pending = self._by_id.get(unquote(parts[4]))
            if pending is None:
                await drain_body(conn, stream)
                await reply(
                    conn,
                    stream,
                    400,
                    {"errorMessage": "unknown request id", "errorType": "InvalidRequestID"},
                )
                return
            if parts[5] == "response":
                await self._response(conn, stream, req, pending)
                return
            if parts[5] == "error":
                body = await read_body(conn, stream)
                failed = InvocationFailed(
                    header(req, "lambda-runtime-function-error-type"), json_or_text(body)
                )
                await _deliver(pending, failed)
                await reply(conn, stream, 202, {"status": "OK"})
                return
        await drain_body(conn, stream)
        await reply(conn, stream, 404, {"errorMessage": f"no route for {method} {target}"})

    async def abort(self, error_type: str, message: str, *, taken_only: bool = False) -> int:
        """Fail every unfinished invocation (the sandbox died, timed out, or failed its init).

        Returns how many were failed. With ``taken_only``, invocations still queued are left for the next
        runtime to take.
        """
        failed = 0
        for pending in list(self._by_id.values()):
            if pending.done or (taken_only and pending.taken_at is None):
                continue
            if await _deliver(pending, InvocationFailed(error_type, {"errorMessage": message})):
                failed += 1
        return failed

    def in_flight(self) -> int:
        """Invocations queued or being served."""
        return sum(1 for p in self._by_id.values() if not p.done)

    async def _take(self, conn: h11.Connection, stream: anyio.abc.SocketStream) -> _Pending | None:
        """Wait for an invocation; None when the polling runtime goes away first (it died).

        Without the watch, the poll of a runtime that died while idle would take the next invocation and
        lose it on the closed connection.
        """
        gone = False
        taken: _Pending | None = None
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                nonlocal gone
                while True:  # a runtime sends nothing while it waits; EOF means it is gone
                    try:
                        data = await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        data = b""
                    conn.receive_data(data)
                    if not data:
                        gone = True
                        group.cancel_scope.cancel()
                        return

            group.start_soon(watch)
            while True:
                while self._queue and self._queue[0].done:  # failed while queued: never hand it out
                    self._queue.popleft()
                if self._queue:
                    taken = self._queue.popleft()
                    break
                if self._queued is None or self._queued.is_set():
                    self._queued = anyio.Event()
                await self._queued.wait()
            group.cancel_scope.cancel()
        if gone and taken is not None:
            self._queue.appendleft(taken)
            if self._queued is not None:
                self._queued.set()
            return None
        return taken

    async def _next(self, conn: h11.Connection, stream: anyio.abc.SocketStream) -> None:
        pending = await self._take(conn, stream)
        if pending is None:
            raise anyio.EndOfStream
        pending.taken_at = time.perf_counter()
        pending.deadline_ms = int((time.time() + pending.timeout_s) * 1000)
        if pending.on_taken is not None:
            pending.on_taken()
        headers = [
            ("Content-Type", "application/json"),
            ("Lambda-Runtime-Aws-Request-Id", pending.request_id),
            ("Lambda-Runtime-Deadline-Ms", str(pending.deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn", self.function_arn),
            (
                "Lambda-Runtime-Trace-Id",
                f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
            ),
            ("Content-Length", str(len(pending.event))),
            *pending.extra_headers,
        ]
        await stream.send(conn.send(h11.Response(status_code=200, headers=headers)))
        await stream.send(conn.send(h11.Data(data=pending.event)))
        await stream.send(conn.send(h11.EndOfMessage()))

    async def _response(
        self,
        conn: h11.Connection,
        stream: anyio.abc.SocketStream,
        req: h11.Request,
        pending: _Pending,
    ) -> None:
        mode = header(req, "lambda-runtime-function-response-mode")
        if mode and mode != "streaming":
            await drain_body(conn, stream)
            await reply(conn, stream, 400, {"errorType": "Runtime.InvalidResponseModeHeader"})
            await _deliver(pending, InvocationFailed("Runtime.InvalidResponseModeHeader", None))
            return
        if mode != "streaming":
            body = await read_body(conn, stream)
            result = BufferedResult(json_or_text(body), header(req, "content-type"))
            await _deliver(pending, result)
            await reply(conn, stream, 202, {"status": "OK"})
            return
        consumer_gone = False
        while True:
            try:
                event = await next_event(conn, stream)
            except (anyio.EndOfStream, anyio.BrokenResourceError, h11.ProtocolError, OSError):
                # Lambda records a stream that ends without its terminator as Runtime.TruncatedResponse
                # (docs/wire-format.md); the invoker must hear of it, not wait for ever.
                message = "the runtime's connection closed before the end of the response"
                await _deliver(
                    pending, StreamEnd([], ("Runtime.TruncatedResponse", {"errorMessage": message}))
                )
                raise
            if isinstance(event, h11.Data):
                if not consumer_gone:
                    consumer_gone = not await _deliver(pending, StreamData(bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                trailers = list(event.headers)
                await _deliver(pending, StreamEnd(trailers, read_error_trailers(trailers)))
                break
            else:
                raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} in a response body")
        await reply(conn, stream, 202, {"status": "OK"})


async def _deliver(pending: _Pending, item: InvocationEvent) -> bool:
    """Hand an item to the invoker; False when it stopped listening (the bytes are then dropped)."""
    if pending.done:
        return False
    final = not isinstance(item, StreamData)
    if final:
        pending.done = True
    try:
        await pending.send.send(item)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return False
    finally:
        if final:
            pending.send.close()
    return True
