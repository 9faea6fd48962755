"""One ASGI HTTP request/response cycle, with the failure policy of the design (design.md 2).

The cycle feeds the app its request, checks the order of the messages the app sends against a small table
(h11's habit), and hands each step to a *responder*: :class:`StreamingResponder` turns them into the
streaming wire format through a shell-provided :class:`StreamWriter`; :class:`BufferedResponder` collects
a Mangum-compatible response dict. The strategy is picked once, by the caller.

Failure policy (what the client and Lambda see):

================================  ==========================================================
the app ...                       result
================================  ==========================================================
raises before the response start  500 prelude + short body, then error trailers (so Lambda counts
                                  the invocation as failed)
raises after the response start   body ends where it was, then error trailers
returns without finishing         same as a raise; the message says what was expected
sends messages out of order       ``send()`` raises ASGIProtocolError; then same as a raise
runs into the deadline            cancelled; 504 prelude if nothing was sent; trailers
                                  ``Function.Timeout``
raises after the response ended   logged, nothing sent (background work, lessons 3.17)
================================  ==========================================================

Disconnect (design.md 2): Lambda never reports a client disconnect, so ``receive()`` gives the body, then
blocks until the response is complete, then returns ``http.disconnect`` for ever after.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from ._errors import (
    ASGIProtocolError,
    DeadlineExceeded,
    ResponseError,
    ResponseTooLargeError,
    RuntimeAPIError,
)
from ._http import is_token
from ._types import ASGIApp, Headers, Integration, Message, Scope
from .encoder import (
    DEFAULT_TEXT_MIME_TYPES,
    MAX_BUFFERED_RESPONSE_BYTES,
    buffered_response,
    build_prelude,
    error_trailers,
    function_error_type,
)
from .padding import FLUSH_EXTENSION, PADDING_HEADER, Flusher, PaddingPolicy
from .sse import HEARTBEAT, SSEOptions, is_event_stream, terminal_error_event

logger = logging.getLogger("lambda_asgi_stream")

_ERROR_BODY = b"Internal Server Error"
_TIMEOUT_BODY = b"Gateway Timeout"
_PLAIN = [(b"content-type", b"text/plain; charset=utf-8")]


class StreamWriter(Protocol):
    """Where a streamed response's bytes go: the Runtime API POST, a test transport, a recorder.

    ``write`` returns once the bytes are handed on (backpressure); ``close`` ends the stream, with the
    error trailers when the invocation failed (an empty list for a clean end).
    """

    async def write(self, data: bytes) -> None: ...

    async def close(self, trailers: Headers) -> None: ...


class Responder(Protocol):
    started: bool

    async def start(self, status: int, headers: Headers) -> None: ...

    async def body(self, data: bytes) -> None: ...

    async def complete(self) -> None: ...

    async def fail(self, exc: BaseException) -> None: ...


@dataclass(slots=True)
class ResponseStats:
    """What one response did, for the per-invocation log line."""

    status: int | None = None
    first_byte_at: float | None = None
    bytes: int = 0
    chunks: int = 0
    padding: int = 0


class StreamingResponder:
    """Prelude at ``http.response.start``, each body message on the wire at once, trailers on failure."""

    def __init__(self, writer: StreamWriter, integration: Integration) -> None:
        self.writer = writer
        self.integration = integration
        self.started = False
        self.stats = ResponseStats()

    async def start(self, status: int, headers: Headers) -> None:
        prelude = build_prelude(status, headers, self.integration)
        await self.writer.write(prelude)
        self.started = True
        self.stats.status = status
        self.stats.first_byte_at = time.perf_counter()

    async def body(self, data: bytes) -> None:
        await self.writer.write(data)
        self.stats.bytes += len(data)
        self.stats.chunks += 1

    async def complete(self) -> None:
        await self.writer.close([])

    async def fail(self, exc: BaseException) -> None:
        if not self.started:
            timeout = isinstance(exc, DeadlineExceeded)
            status, text = (504, _TIMEOUT_BODY) if timeout else (500, _ERROR_BODY)
            await self.writer.write(build_prelude(status, _PLAIN, self.integration) + text)
            self.started = True
            self.stats.status = status
            self.stats.first_byte_at = time.perf_counter()
        await self.writer.close(error_trailers(exc))


class PaddedStreamingResponder(StreamingResponder):
    """A :class:`StreamingResponder` plus the padding flusher (:mod:`padding`) and SSE extras (:mod:`sse`).

    A watcher task runs beside the app. Once the app has gone idle for ``idle_ms`` with small writes
    still pending in the service, it writes just enough padding to push them out; an SSE response silent
    for ``heartbeat_s`` gets a heartbeat comment. Apps can ask for a flush:
    ``await scope["extensions"]["lambda_asgi_stream.flush"]()``, or a body message with ``"flush": True``.

    The app's writes stay cheap: a write records its time and wakes the watcher only when the watcher
    is waiting for one, and the watcher debounces by timestamps, so a burst of writes costs no task
    switches. A response the watcher has nothing to do for (binary, JSON, padding off and no SSE
    heartbeat) is decided at ``start`` and writes with no lock at all.
    """

    def __init__(
        self,
        writer: StreamWriter,
        integration: Integration,
        policy: PaddingPolicy,
        sse: SSEOptions | None = None,
    ) -> None:
        super().__init__(writer, integration)
        self.policy = policy
        self.sse = sse or SSEOptions()
        self.flusher: Flusher | None = None
        self.is_sse = False
        self.watched = False
        # fast_acquire: an uncontended acquire does not yield to the event loop (anyio 4.5); the write
        # under the lock yields anyway, so cancellation still gets its checkpoint.
        self._lock = anyio.Lock(fast_acquire=True)
        self._closed = False
        self._started = anyio.Event()
        self._wake: anyio.Event | None = None  # set while the watcher waits for the next write
        self._last_write = 0.0
        self._tail = b""
        self._writes = 0
        self._warned = False

    async def start(self, status: int, headers: Headers) -> None:
        decoded = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in headers]
        self.flusher = self.policy.for_response(decoded)
        self.is_sse = any(k == "content-type" and is_event_stream(v) for k, v in decoded)
        automatic = self.flusher is not None and self.flusher.automatic
        self.watched = automatic or (self.is_sse and self.sse.heartbeat_s > 0)
        wanted = [(k, v) for k, v in headers if k.lower() != PADDING_HEADER.encode()]
        async with self._lock:
            await super().start(status, wanted)
            self._last_write = time.monotonic()
        self._started.set()

    async def body(self, data: bytes) -> None:
        if not self.watched:
            await super().body(data)
            self._wrote(data)
            return
        async with self._lock:
            await super().body(data)
            self._wrote(data)

    def _wrote(self, data: bytes) -> None:
        self._writes += 1
        self._last_write = time.monotonic()
        self._tail = data[-16:] if len(data) >= 16 else (self._tail + data)[-16:]
        if self.flusher is not None:
            self.flusher.wrote(data)
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    async def flush(self) -> None:
        """Pad out what is pending (an explicit request from the app).

        Once the burst budget is spent this waits for the refill, like the idle watcher does, so a flush
        is deferred, never dropped; the app's next write waits with it.
        """
        if self.flusher is not None and 0 < (wait := self.flusher.delay(time.monotonic())) < math.inf:
            await anyio.sleep(wait)
        async with self._lock:
            await self._pad()

    async def complete(self) -> None:
        async with self._lock:
            self._closed = True
            await super().complete()
        self._started.set()  # a watcher still waiting for a start has nothing left to watch

    async def fail(self, exc: BaseException) -> None:
        async with self._lock:
            self._closed = True
            if self.started and self.is_sse and self.sse.error_event:
                event = terminal_error_event(function_error_type(exc), str(exc), self._tail)
                await self.writer.write(event)
            await super().fail(exc)
        self._started.set()

    async def _pad(self) -> None:
        if self.flusher is None or self._closed:
            return
        data = self.flusher.padding(time.monotonic())
        if data:
            await self.writer.write(data)
            self._tail = data[-16:]
            self.stats.padding += len(data)
        if self.flusher.throttled and not self._warned:
            self._warned = True
            if self.flusher.exhausted:
                logger.warning(
                    "padding budget spent (%d bytes): small writes may now be held back",
                    self.flusher.padding_bytes,
                )
            else:
                logger.info(
                    "padding burst of %d bytes spent: pushes now paced at %d bytes/s",
                    self.policy.budget,
                    self.policy.rate,
                )

    async def _heartbeat(self) -> None:
        if self._closed or not self._tail.endswith(b"\n"):
            return
        await self.writer.write(HEARTBEAT)
        self._wrote(HEARTBEAT)
        await self._pad()

    async def background(self) -> None:
        """The watcher; runs beside the app for the whole cycle."""
        await self._started.wait()
        if not self.watched or self._closed:
            return
        flusher = self.flusher if self.flusher is not None and self.flusher.automatic else None
        idle = self.policy.idle_ms / 1000
        beat = self.sse.heartbeat_s if self.is_sse and self.sse.heartbeat_s > 0 else math.inf
        seen = 0  # writes made before this task first ran are still to be looked at
        try:
            while not self._closed:
                if self._writes == seen:  # nothing new: wait for a write, or for heartbeat time
                    wake = self._wake = anyio.Event()
                    with anyio.move_on_after(self._last_write + beat - time.monotonic()) as silent:
                        await wake.wait()
                    if silent.cancelled_caught:
                        async with self._lock:
                            await self._heartbeat()
                        seen = self._writes
                        continue
                seen = self._writes
                if flusher is None:
                    continue
                # Debounce by timestamps (writes never wake us here): padding is due once no write came
                # for `idle` seconds.
                while (wait := self._last_write + idle - time.monotonic()) > 0:  # noqa: ASYNC110
                    await anyio.sleep(wait)
                # Pacing: once the burst budget is spent, the push waits for the refill; what the app
                # writes meanwhile goes out with it (inf: a spent hard cap, _pad says so once).
                if 0 < (wait := flusher.delay(time.monotonic())) < math.inf:
                    await anyio.sleep(wait)
                seen = self._writes
                async with self._lock:
                    await self._pad()
        except Exception as exc:  # a broken connection: the app's next write reports it
            logger.debug("padding stopped: %s", exc)


class BufferedResponder:
    """Collects the whole response for a buffered Lambda return value (Mangum-compatible shape)."""

    def __init__(
        self,
        integration: Integration,
        *,
        multi_value_headers: bool,
        text_mime_types: tuple[str, ...] = DEFAULT_TEXT_MIME_TYPES,
    ) -> None:
        self.integration = integration
        self.multi_value_headers = multi_value_headers
        self.text_mime_types = text_mime_types
        self.started = False
        self.stats = ResponseStats()
        self._headers: Headers = []
        self._chunks: list[bytes] = []  # joined once at the end: no copy at all for a one-chunk body
        self._response: dict[str, Any] | None = None
        self._failure: BaseException | None = None

    async def start(self, status: int, headers: Headers) -> None:
        self.started = True
        self.stats.status = status
        self.stats.first_byte_at = time.perf_counter()
        self._headers = headers

    async def body(self, data: bytes) -> None:
        stats = self.stats
        self._chunks.append(data)
        stats.bytes += len(data)
        stats.chunks += 1
        if stats.bytes > MAX_BUFFERED_RESPONSE_BYTES:
            # Stop holding a body Lambda will refuse anyway (6 MB buffered limit) instead of growing.
            raise ResponseTooLargeError(
                f"buffered response body passed {MAX_BUFFERED_RESPONSE_BYTES} bytes; Lambda returns at "
                "most 6 MB buffered. Stream it instead (invoke mode RESPONSE_STREAM)."
            )

    async def complete(self) -> None:
        assert self.stats.status is not None
        body = b"".join(self._chunks)
        self._chunks = []
        self._response = self._encode(self.stats.status, self._headers, body)

    async def fail(self, exc: BaseException) -> None:
        if self.started:
            # Half a buffered response must never pass for a whole one: fail the invocation instead.
            self._failure = exc
            return
        status, text = (504, _TIMEOUT_BODY) if isinstance(exc, DeadlineExceeded) else (500, _ERROR_BODY)
        self.stats.status = status
        self._response = self._encode(status, _PLAIN, text)

    def _encode(self, status: int, headers: Headers, body: bytes) -> dict[str, Any]:
        return buffered_response(
            status,
            headers,
            body,
            self.integration,
            multi_value_headers=self.multi_value_headers,
            text_mime_types=self.text_mime_types,
        )

    def result(self) -> dict[str, Any]:
        """The response dict; raises the app's error when the response was cut after it started."""
        if self._failure is not None:
            raise self._failure
        if self._response is None:
            raise ASGIProtocolError("no response was produced")
        return self._response


_valid_names: set[bytes] = set()  # names already checked (apps send the same few every time)


def _app_fault(exc: BaseException) -> Exception:
    """The app's own failure, or ``exc`` re-raised when it is a real cancellation or an interrupt.

    An app can raise ``CancelledError`` without anyone cancelling it (it awaited a future it had
    cancelled itself) or call ``sys.exit()``; either would otherwise unwind the runtime loop and end the
    process with the invocation unanswered. uvicorn catches ``BaseException`` around the app for the
    same reason. A cancellation that was asked for (our deadline, SIGTERM) shows as a cancelled scope,
    ``current_effective_deadline() == -inf`` (anyio docs), and goes on up.
    """
    if isinstance(exc, Exception):
        return exc
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        # Unknown (3.10, not asyncio) counts as asked for: swallowing a real cancellation is worse than
        # failing one invocation.
        if anyio.current_effective_deadline() == -math.inf or cancel_requested() is not False:
            raise exc
        return RuntimeError(f"the app raised {type(exc).__name__} without being cancelled")
    if isinstance(exc, SystemExit):
        return RuntimeError(f"the app called sys.exit({exc.code!r})")
    raise exc


def cancel_requested() -> bool | None:
    """Whether a plain asyncio ``task.cancel()`` is pending for the current task; None when unknowable.

    anyio scopes show as ``current_effective_deadline() == -inf`` (callers check that first); a plain
    ``task.cancel()`` (``wait_for``, ``asyncio.timeout``, a server shutting down) shows only in
    ``Task.cancelling()``, which Python 3.10 lacks (None there, and off asyncio). A CancelledError with
    neither is the app's own doing.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not on asyncio
        return None
    cancelling = getattr(task, "cancelling", None)
    return None if cancelling is None else cancelling() > 0


class _State(enum.Enum):
    START = "waiting for http.response.start"
    BODY = "streaming http.response.body"
    DONE = "response complete"


# What the app may send in each state (ASGI HTTP spec, "Response Start" and "Response Body").
_ALLOWED: dict[_State, frozenset[str]] = {
    _State.START: frozenset({"http.response.start"}),
    _State.BODY: frozenset({"http.response.body"}),
    _State.DONE: frozenset(),
}


@dataclass(frozen=True, slots=True)
class CycleResult:
    """How the cycle ended: ``complete``, ``error`` or ``timeout``, with the error that ended it."""

    end: str
    error: BaseException | None
    late_error: BaseException | None = None


_COMPLETE = CycleResult("complete", None)  # the common result, shared (frozen) instead of built per call


class HTTPCycle:
    """Run one request through an ASGI app into a responder.

    >>> responder = BufferedResponder("function-url", multi_value_headers=False)  # doctest: +SKIP
    >>> await HTTPCycle(scope, b"", responder).run(app)                          # doctest: +SKIP
    >>> responder.result()["statusCode"]                                         # doctest: +SKIP
    200
    """

    def __init__(
        self,
        scope: Scope,
        body: bytes,
        responder: Responder,
        *,
        cancel_scope: type[anyio.CancelScope] = anyio.CancelScope,
    ) -> None:
        self.scope = scope
        self.body = body
        self.responder = responder
        # The deadline's scope class. ``anyio.CancelScope`` finds the running backend's class on every
        # call (sniffio); a caller that knows its backend may pass that class, as the Adapter does.
        self._cancel_scope = cancel_scope
        self.state = _State.START
        self._request_sent = False
        self._send_error: BaseException | None = None
        self._transport_error: RuntimeAPIError | None = None
        # Created only if the app calls receive() again before the response ends (most never do).
        self._done: anyio.Event | None = None
        self._finished = False
        # RFC 9110 9.3.2: a response to HEAD has no content. Frameworks (Starlette) send the GET body
        # anyway and leave it to the server to drop, as uvicorn does; here we are the server.
        self._head = scope.get("method") == "HEAD"

    async def run(self, app: ASGIApp, *, deadline: float | None = None) -> CycleResult:
        """Run ``app``; ``deadline`` is an ``anyio.current_time()`` after which the app is cancelled."""
        background = getattr(self.responder, "background", None)
        if background is None:
            app_error, timed_out = await self._call(app, deadline)
        else:
            async with anyio.create_task_group() as group:
                group.start_soon(background)
                app_error, timed_out = await self._call(app, deadline)
                group.cancel_scope.cancel()
        self._finish()
        if self._transport_error is not None:
            raise self._transport_error
        if self.state is _State.DONE:
            return self._after_complete(app_error, timed_out)
        error = self._failure(app_error, timed_out)
        await self.responder.fail(error)
        end = "timeout" if isinstance(error, DeadlineExceeded) else "error"
        return CycleResult(end, error)

    async def _call(self, app: ASGIApp, deadline: float | None) -> tuple[Exception | None, bool]:
        flush = getattr(self.responder, "flush", None)
        if flush is not None:
            self.scope.setdefault("extensions", {})[FLUSH_EXTENSION] = flush
        if deadline is None:  # no cancel scope to enter and leave: the buffered Adapter's common case
            try:
                await app(self.scope, self._receive, self._send)
            except BaseException as exc:
                return _app_fault(exc), False
            return None, False
        with self._cancel_scope(deadline=deadline) as scope:
            try:
                await app(self.scope, self._receive, self._send)
            except BaseException as exc:
                if scope.cancel_called and isinstance(exc, anyio.get_cancelled_exc_class()):
                    # Our deadline fired: a timeout, whichever CancelledError came out of the app (anyio's
                    # scope only absorbs its own). A cancelled outer scope still raises at the next await.
                    return None, True
                return _app_fault(exc), False
        return None, scope.cancelled_caught

    def _failure(self, app_error: Exception | None, timed_out: bool) -> BaseException:
        if timed_out:
            return DeadlineExceeded(f"the app was cancelled at the invocation deadline ({self.state.value})")
        if self._send_error is not None:
            return self._send_error
        if app_error is not None:
            return app_error
        return ASGIProtocolError(
            f"the app returned while {self.state.value}; expected "
            + ("http.response.start" if self.state is _State.START else "a final http.response.body")
            + " (more_body=False)"
        )

    def _after_complete(self, app_error: Exception | None, timed_out: bool) -> CycleResult:
        late = app_error or (
            DeadlineExceeded("background work cancelled at the deadline") if timed_out else None
        )
        if late is None:
            return _COMPLETE
        logger.error("error after the response was complete (not sent)", exc_info=late)
        return CycleResult("complete", None, late)

    def _finish(self) -> None:
        """The response is over (or the app returned): receive() now answers http.disconnect."""
        self._finished = True
        if self._done is not None:
            self._done.set()

    async def _receive(self) -> Message:
        if not self._request_sent:
            self._request_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        if not self._finished:
            if self._done is None:
                self._done = anyio.Event()
            await self._done.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        state = self.state
        # The two messages a state allows, checked directly; _ALLOWED spells the rule out for the errors.
        if kind == "http.response.body" and state is _State.BODY:
            step = self._body
        elif kind == "http.response.start" and state is _State.START:
            step = self._start
        elif state is _State.DONE and kind == "http.response.trailers":
            return  # Lambda has no way to forward response trailers; we never advertise them.
        else:
            raise self._protocol_error(
                f"expected {' or '.join(sorted(_ALLOWED[state])) or 'nothing more'} "
                f"({state.value}), but the app sent {kind!r}"
            )
        try:
            await step(message)
        except RuntimeAPIError as exc:
            self._transport_error = exc
            raise
        except ResponseError as exc:
            self._send_error = self._send_error or exc
            raise

    async def _start(self, message: Message) -> None:
        status = message.get("status")
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise self._protocol_error(f"http.response.start needs an int status, got {status!r}")
        try:
            headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
        except (TypeError, ValueError) as exc:
            raise self._protocol_error(f"http.response.start headers must be byte pairs: {exc}") from exc
        for name, value in headers:
            if name not in _valid_names:
                if not is_token(name):
                    raise self._protocol_error(f"invalid response header name {name!r} (RFC 9110 5.1)")
                if len(_valid_names) < 256:
                    _valid_names.add(name)
            if b"\r" in value or b"\n" in value or b"\x00" in value:
                # Header injection: uvicorn/h11 refuse the same value, so local runs and Lambda agree.
                raise self._protocol_error(f"response header {name!r} has CR, LF or NUL in its value")
        await self.responder.start(status, headers)
        self.state = _State.BODY  # only once the prelude is out: a refused start leaves no body behind

    async def _body(self, message: Message) -> None:
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise self._protocol_error(f"http.response.body needs bytes, got {type(body).__name__}")
        if body and not self._head:
            await self.responder.body(bytes(body))
        if message.get("flush") and hasattr(self.responder, "flush"):
            await self.responder.flush()
        if not message.get("more_body", False):
            await self.responder.complete()
            self.state = _State.DONE
            self._finish()

    def _protocol_error(self, text: str) -> ASGIProtocolError:
        error = ASGIProtocolError(text)
        self._send_error = self._send_error or error
        return error
