"""One ASGI HTTP request/response cycle, with the failure policy (docs/failure-policy.md). Plain asyncio.

The cycle feeds the app its request, checks the order of the messages the app sends against a small
transition table (h11's habit, :data:`_TRANSITIONS`), and hands each step to a *responder*, chosen once by
:func:`make_responder`: :class:`StreamingResponder` turns them into the streaming wire format through a
shell-provided :class:`StreamWriter`; :class:`PaddedStreamingResponder` adds the padding flusher and SSE
heartbeats; :class:`BufferedResponder` collects a Mangum-compatible response dict. All three have the same
small interface (:class:`Responder`), so the cycle never asks what it drives.

This module is the hot path of every invocation, so it imports no anyio and creates no task or task group
per response: the deadline is a timer on the event loop (or, once the app has put anyio's asyncio backend
to use, an anyio cancel scope, so shielded scopes and ``current_effective_deadline()`` keep working in the
app), and
the padding flusher is a timer that is re-armed, not a task that wakes.

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
                                  ``Function.Timeout``. An app that never yields is stopped by its
                                  next ``send()``/``receive()`` after the deadline, which raise
                                  DeadlineExceeded
raises after the response ended   logged, nothing sent (background work)
================================  ==========================================================

Disconnect: Lambda never reports a client disconnect, so ``receive()`` gives the body, then blocks until
the response is complete, then returns ``http.disconnect`` for ever after.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import sys
import time
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any, Protocol

from ._errors import (
    ASGIProtocolError,
    DeadlineExceeded,
    ResponseError,
    ResponseTooLargeError,
    RuntimeAPIError,
)
from ._http import is_token, loggable, loggable_target
from ._types import ASGIApp, Headers, Integration, Message, Record, Scope
from .encoder import (
    DEFAULT_TEXT_MIME_TYPES,
    MAX_BUFFERED_RESPONSE_BYTES,
    buffered_response,
    build_prelude,
    error_trailers,
    function_error_type,
    shape_response,
    text_of,
)
from .end_record import EndRecordFormat, EndRecordWriter
from .end_record import choose as choose_end_record
from .events import Request
from .padding import (
    FLUSH_EXTENSION,
    PADDING_HEADER,
    Flusher,
    PaddingPolicy,
    PadFunction,
    is_identity,
    pad_function_for,
)
from .runtime_api import LambdaContext
from .sse import HEARTBEAT, SSEOptions, is_event_stream, terminal_error_event

logger = logging.getLogger("lambda_asgi_stream")

_PADDING_HEADER = PADDING_HEADER.encode()
_NO_SSE_OPTIONS = SSEOptions()

#: The Lambda context of the invocation the current task serves (set by the shell for the app's cycle).
current_context: ContextVar[LambdaContext] = ContextVar("lambda_asgi_stream_context")

_ERROR_BODY = b"Internal Server Error"
_TIMEOUT_BODY = b"Gateway Timeout"
_PLAIN = [(b"content-type", b"text/plain; charset=utf-8")]
_SSE_GENERIC_ERROR = "the response failed before it was complete"


class StreamWriter(Protocol):
    """Where a streamed response's bytes go: the Runtime API POST, a test transport, a recorder.

    ``write`` returns once the bytes are handed on (backpressure). ``prelude`` may hold its bytes back
    until the next write or the end of the current event-loop pass, so that a response whose body
    follows at once leaves in one system call. ``end`` writes the last bytes (maybe none) and ends the
    stream, with the error trailers when the invocation failed (an empty list for a clean end).
    """

    async def prelude(self, data: bytes) -> None: ...

    async def write(self, data: bytes) -> None: ...

    async def end(self, data: bytes, trailers: Headers) -> None: ...

    def when_pass_ends(self, callback: Callable[[], None]) -> bool:
        """Call ``callback`` at the end of the event-loop pass that wrote the prelude, if the writer waits
        for it anyway (to send what it held; a full socket may leave some of it for later); False when it
        does not (then the caller asks the loop itself). A response over in that pass may or may not get
        the call: the callback checks."""
        ...


class PlainWriter:
    """A base for a :class:`StreamWriter` built from ``write`` and ``close`` alone.

    ``prelude`` writes at once (nothing is held back) and ``end`` writes the last bytes, then closes:
    enough for recorders, test transports and writers that do their own batching.
    """

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def close(self, trailers: Headers) -> None:
        """End the stream, with error trailers when the invocation failed (empty for a clean end)."""
        raise NotImplementedError

    async def prelude(self, data: bytes) -> None:
        await self.write(data)

    async def end(self, data: bytes, trailers: Headers) -> None:
        if data:
            await self.write(data)
        await self.close(trailers)

    def when_pass_ends(self, callback: Callable[[], None]) -> bool:
        return False  # nothing is held, so nothing waits for the end of the pass


class Responder(Protocol):
    """What the cycle drives; one per response, made by :func:`make_responder`."""

    started: bool
    stats: ResponseStats
    #: whether :meth:`flush` can do anything (the cycle then offers the app the flush extension)
    pads: bool

    async def start(self, status: int, headers: Headers) -> None: ...

    async def body(self, data: bytes, more: bool) -> None:
        """Body bytes (maybe empty); ``more=False`` completes the response."""

    async def flush(self) -> None:
        """The app asked to push what is pending past Lambda's hold-back (a no-op where nothing pads)."""

    async def fail(self, exc: BaseException) -> None: ...

    def close(self) -> None:
        """The cycle is over: release timers."""


class ResponseStats(Record):
    """What one response did, for the per-invocation log line (filled in as the response goes)."""

    __slots__ = ("bytes", "chunks", "first_byte_at", "padding", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.first_byte_at: float | None = None
        self.bytes = 0
        self.chunks = 0
        self.padding = 0


class StreamingResponder:
    """Prelude at ``http.response.start``, each body message on the wire at once, trailers on failure."""

    pads = False

    def __init__(
        self,
        writer: StreamWriter,
        integration: Integration,
        end_records: frozenset[EndRecordFormat] = frozenset(),
        *,
        head: bool = False,
        exclude_headers: frozenset[str] = frozenset(),
    ) -> None:
        self.writer = writer
        self.integration = integration
        self.end_records = end_records
        self.head = head  # a response to HEAD has no content (RFC 9110 9.3.2): no end record either
        self.exclude_headers = exclude_headers  # lower-case names never sent (Mangum's option)
        self.started = False
        self.stats = ResponseStats()

    async def start(self, status: int, headers: Headers) -> None:
        # End record (end_record.py): chosen by the x-lambda-end-record header (consumed) or the variable;
        # an opted-in response's writer counts and hashes the body. Otherwise nothing is copied or hashed.
        fmt, headers = choose_end_record(headers, self.end_records)
        if fmt is not None and not self.head:
            self.writer = EndRecordWriter(self.writer, fmt)
        await self.writer.prelude(build_prelude(status, headers, self.integration, self.exclude_headers))
        self._started(status)

    def _started(self, status: int) -> None:
        self.started = True
        self.stats.status = status
        self.stats.first_byte_at = time.perf_counter()

    async def body(self, data: bytes, more: bool) -> None:
        if more:
            await self.writer.write(data)
        else:
            await self.writer.end(data, [])
        if data:
            stats = self.stats
            stats.bytes += len(data)
            stats.chunks += 1

    async def flush(self) -> None:
        return None

    async def fail(self, exc: BaseException) -> None:
        if self.started:
            await self.writer.end(b"", error_trailers(exc))
            return
        status, text = (504, _TIMEOUT_BODY) if isinstance(exc, DeadlineExceeded) else (500, _ERROR_BODY)
        await self.writer.prelude(build_prelude(status, _PLAIN, self.integration))
        self._started(status)
        await self.writer.end(b"" if self.head else text, error_trailers(exc))  # HEAD: no content

    def close(self) -> None:
        return None


class PaddedStreamingResponder(StreamingResponder):
    """A :class:`StreamingResponder` plus the padding flusher (:mod:`padding`) and SSE extras (:mod:`sse`).

    One timer on the event loop, re-armed, never a task per response: once small writes have been pending
    in the service as long as the policy allows (:meth:`Flusher.push_at`: most of the latency target after
    the oldest of them, or ``idle_ms`` after the last write with no target), the timer starts one write of
    just enough padding to push them out; an SSE response silent for ``heartbeat_s`` gets a heartbeat
    comment. A write only records its time, and a timer that fires early re-arms itself for the rest of
    the wait, so a burst of writes costs no wake-ups. The timer is first armed when the event-loop pass
    that started the response ends with the response still open (until then writes are only noted: most
    responses end in that pass). A response the flusher can do nothing for (binary, JSON, no SSE
    heartbeat) is decided at ``start`` and costs nothing more.

    Apps ask for a flush with ``await lambda_asgi_stream.flush(scope)`` (the ``FLUSH_EXTENSION``) or a body
    message with ``"flush": True``.
    """

    pads = True

    def __init__(
        self,
        writer: StreamWriter,
        integration: Integration,
        policy: PaddingPolicy,
        sse: SSEOptions | None = None,
        end_records: frozenset[EndRecordFormat] = frozenset(),
        *,
        head: bool = False,
        exclude_headers: frozenset[str] = frozenset(),
        wake: WakeUp | None = None,
    ) -> None:
        super().__init__(writer, integration, end_records, head=head, exclude_headers=exclude_headers)
        self.policy = policy
        self._wake = wake  # the caller's, shared by its responses one after another (else one of our own)
        self._own_wake = wake is None
        self.sse = sse or _NO_SSE_OPTIONS
        self._now: Callable[[], float] = time.monotonic  # the loop's clock, set with _loop
        # The other fields start at their class-level values below (one responder per streamed response).

    flusher: Flusher | None = None  # an automatic one is made when the first pass ends (_catch_up)
    is_sse = False
    watched = False
    _tracked = False  # the last bytes written matter (padding, heartbeats, an SSE error event)
    _loop: asyncio.AbstractEventLoop | None = None
    _armed = False  # the timer (self._wake) is set for _fire
    _job: asyncio.Task[None] | None = None  # a padding or heartbeat write in flight
    _closed = False
    _tail = b""
    _early: list[bytes] | None = None  # body bytes written in the pass that started the response
    _first_write = 0.0  # when the first of them was written
    _context: contextvars.Context | None = None  # the app's, for the padding and heartbeat jobs
    _busy = False  # a write is in progress: the timer starts no padding write meanwhile
    _stalled = False  # padding is due but cannot be afforded until the next write
    _warned = False
    _timer_beats = False  # the timer is armed for a heartbeat (not a push)
    _beat = math.inf  # seconds of silence before an SSE heartbeat (inf: none)
    _pass_end: asyncio.Handle | None = None  # the callback at the end of that pass
    _pad_later: PadFunction | None = None  # the automatic flusher's pad function, until it is made

    async def start(self, status: int, headers: Headers) -> None:
        content_type = encoding = override = b""
        for name, value in headers:  # one pass over the raw names: no decoding
            lower = name.lower()
            if lower == b"content-type":
                content_type = value
            elif lower == b"content-encoding":
                encoding = value
            elif lower == _PADDING_HEADER:
                override = value
        pad, is_sse = _content_kind(content_type)
        if pad is None and not (is_sse or encoding or override or self.policy.pad):
            # Nothing to pad, watch or follow (JSON, binary, plain text: most API responses).
            await super().start(status, headers)
            return
        if encoding or override:  # rare: decided in full (a compressed body gets no SSE extras)
            self.flusher = self.policy.for_content(
                content_type.decode("latin-1"), encoding.decode("latin-1"), override.decode("latin-1")
            )
            is_sse = is_sse and is_identity(encoding.decode("latin-1"))
        elif self.policy.mode == "idle" and (pad is not None or self.policy.pad is not None):
            # Automatic: the flusher is made when the first pass ends with the response still open
            # (_catch_up), and most responses end in it.
            self._pad_later = self.policy.pad or pad
        else:
            self.flusher = self.policy.flusher(pad)
        self.is_sse = is_sse
        self._beat = self.sse.heartbeat_s if is_sse and self.sse.heartbeat_s > 0 else math.inf
        automatic = self._pad_later is not None or (self.flusher is not None and self.flusher.automatic)
        self.watched = automatic or self._beat < math.inf
        self._tracked = self.watched or self.is_sse or self.flusher is not None
        await super().start(status, headers)
        if self.watched:
            wake = self._wake
            if wake is None:
                wake = self._wake = WakeUp(asyncio.get_running_loop())
            self._loop, self._now = wake.loop, wake.clock
            # No timer can fire before the event-loop pass that started the response ends, and most
            # responses end in it (the app never paused): so far its writes are only noted, and the
            # flusher catches up with them, and arms its timer, when the pass ends with the response
            # still open. Its jobs run in the app's context (the timer's callback runs in none).
            self._context = contextvars.copy_context()
            self._early = []
            # (The runtime's writer waits for that end anyway. A writer made before when_pass_ends was
            # part of the protocol may lack it.)
            hook = getattr(self.writer, "when_pass_ends", None)
            if hook is None or not hook(self._pass_over):
                # An empty context: cancelled, the callback may wait on the loop's queue a while, and must
                # not keep the app's context (its event) alive meanwhile.
                self._pass_end = self._loop.call_soon(self._pass_over, context=contextvars.Context())

    def _pass_over(self) -> None:
        self._pass_end = None
        if not self._closed:
            self._catch_up()
            self._arm()

    def _catch_up(self) -> None:
        """Account for the body bytes written in the pass that started the response (see :meth:`start`),
        first making the automatic flusher, which waited for this.

        All of them count as written when the first of them was, so no push is ever later than it would
        have been had each write been timed on its own (at most earlier, by as long as the pass went on
        after that first write). With no write in that pass, the app's silence counts from now.
        """
        early, self._early = self._early, None
        if early is not None and self._pad_later is not None:
            self.flusher = self.policy.flusher(self._pad_later)
            self._pad_later = None
        if early:
            for data in early:
                self._account(data, self._first_write)
            self._last_write = self._first_write
        elif early is not None:
            self._last_write = self._now()

    async def body(self, data: bytes, more: bool) -> None:
        # StreamingResponder.body, inlined: this runs for every body message of every streamed response
        watched = self.watched
        if watched:
            if self._job is not None:
                await self._wait_for_job()  # never interleave with a padding write
            self._busy = True
        if not more:
            self._closed = True  # nothing may follow the last chunk: not a late flush's padding either
        try:
            if more:
                await self.writer.write(data)
            else:
                await self.writer.end(data, [])
        finally:
            self._busy = False
        if data:
            stats = self.stats
            stats.bytes += len(data)
            stats.chunks += 1
            if not watched:
                if self._tracked:
                    self._account(data)
                return
            early = self._early
            if early is not None:  # the pass that started the response: see start
                if not early:
                    self._first_write = self._now()
                early.append(data)
                return
            now = self._now()
            self._account(data, now)
            self._wrote(now)

    async def _wait_for_job(self) -> None:
        while (job := self._job) is not None:
            try:
                await asyncio.shield(job)
            except asyncio.CancelledError:
                if not job.cancelled():
                    raise  # we were cancelled, not the job

    def _account(self, data: bytes, now: float = 0.0) -> None:
        # The last bytes written, kept by the flusher when there is one (its padding must follow them).
        flusher = self.flusher
        if flusher is not None:
            flusher.wrote(data, now)
        elif data:
            self._tail = data[-16:] if len(data) >= 16 else (self._tail + data)[-16:]

    @property
    def tail(self) -> bytes:
        """The last bytes written (at most 16)."""
        if self._early:
            self._catch_up()
        return self.flusher.tail if self.flusher is not None else self._tail

    def _wrote(self, now: float) -> None:
        self._last_write = now
        self._stalled = False
        if self._job is not None or self._closed:
            return  # the job re-arms the timer when it ends
        if not self._armed or (
            # Armed for a heartbeat, padding may be due sooner now. (Armed for a push, the timer is already
            # at or before any push the new bytes could make due.)
            self._timer_beats
            and self.flusher is not None
            and self.flusher.pending
            and self._wake is not None
            and self._wake.when > self.flusher.push_at(now)
        ):
            self._arm()

    # --- the timer ---------------------------------------------------------------------------------------

    def _due(self) -> float:
        """When the timer should next look: padding due, or a heartbeat due (inf: nothing to watch)."""
        due = self._last_write + self._beat
        flusher = self.flusher
        if flusher is not None and flusher.automatic and flusher.pending and not self._stalled:
            due = min(due, flusher.push_at(self._last_write))
        return due

    def _arm(self, at: float | None = None) -> None:
        due = self._due() if at is None else at
        if due < math.inf and not self._closed:
            assert self._wake is not None
            self._wake.set(due, self._fire)
            self._armed = True
            # for a heartbeat, not a push: a write may then make a push due sooner (see _wrote)
            self._timer_beats = due == self._last_write + self._beat

    def _fire(self) -> None:
        self._armed = False
        if self._closed or self._job is not None or self._busy:
            return  # the write in progress re-arms when it ends
        assert self._loop is not None
        now = self._now()
        flusher = self.flusher
        if flusher is not None and flusher.automatic and flusher.pending and not self._stalled:
            if flusher.push_at(self._last_write) > now:  # written since: wait out the rest
                self._arm()
                return
            # Pacing: once the burst budget is spent, the push waits for the refill; what the app writes
            # meanwhile goes out with it. inf: a spent hard cap, nothing to do until the next write (once,
            # _pad logs it).
            wait = flusher.delay(now)
            if wait == 0:
                self._start_job(self._pad)
                return
            if wait < math.inf:
                assert self._wake is not None
                self._wake.set(now + wait, self._fire)
                self._armed, self._timer_beats = True, False
                return
            self._stalled = True
            if not self._warned:
                self._start_job(self._pad)
                return
        if self._last_write + self._beat <= now:
            self._start_job(self._heartbeat)
            return
        self._arm()

    def _start_job(self, write: Callable[[], Any]) -> None:
        assert self._loop is not None and self._context is not None
        # In the app's context: a log line of the job's may meet the app's logging filters, which may
        # read it (the request id). (create_task takes a context only from Python 3.11.)
        self._job = self._context.run(self._loop.create_task, self._run_job(write))

    async def _run_job(self, write: Callable[[], Any]) -> None:
        self._busy = True
        try:
            await write()
        except Exception as exc:  # a broken connection: the app's next write reports it
            logger.debug("padding stopped: %s", exc)
            self._closed = True
        finally:
            self._busy = False
            self._job = None
        if not self._closed:
            self._arm()

    async def _pad(self) -> None:
        assert self._loop is not None
        if self.flusher is None or self._closed:
            return
        data = self.flusher.padding(self._now())
        if data:
            await self.writer.write(data)
            self.stats.padding += len(data)
        elif self.flusher.pending:
            # Not a safe place to pad (an SSE line half written): wait for the app's next write rather than
            # re-arm for a time already past, which would spin the event loop until then.
            self._stalled = True
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
        assert self._loop is not None
        if self._closed:
            return
        if self.tail.endswith(b"\n"):  # only between lines: a comment never splits one
            await self.writer.write(HEARTBEAT)
            self._account(HEARTBEAT, self._now())
            await self._pad()
        self._last_write = self._now()

    # --- app requests and the end ------------------------------------------------------------------------

    async def flush(self) -> None:
        """Pad out what is pending (an explicit request from the app).

        Once the burst budget is spent this waits for the refill, as the idle timer does, so a flush is
        deferred, never dropped; the app's next write waits with it. After the response's end (or a broken
        connection) it does nothing: bytes after the last chunk would start a new request on the wire.
        """
        if self._closed or not self.started:  # (before the prelude is out there is nothing to push)
            return
        self._catch_up()
        flusher = self.flusher
        if flusher is None:
            return
        loop = self._loop or asyncio.get_running_loop()
        self._loop, self._now = loop, clock_of(loop)
        if 0 < (wait := flusher.delay(loop.time())) < math.inf:
            await asyncio.sleep(wait)
        await self._exclusively(self._pad())
        if self.watched and not (self._closed or self._armed or self._job is not None):
            self._arm()  # the timer may have fallen due during that write, and left the re-arming to it

    async def fail(self, exc: BaseException) -> None:
        self._closed = True
        await self._exclusively(self._fail(exc))

    async def _exclusively(self, write: Coroutine[Any, Any, None]) -> None:
        if self._job is not None:
            await self._wait_for_job()
        self._busy = True
        try:
            await write
        finally:
            self._busy = False

    async def _fail(self, exc: BaseException) -> None:
        if self.started and self.is_sse and self.sse.error_event and not self.head:  # HEAD: no content
            message = text_of(exc) if self.sse.error_detail else _SSE_GENERIC_ERROR
            await self.writer.write(terminal_error_event(function_error_type(exc), message, self.tail))
        await super().fail(exc)

    def close(self) -> None:
        self._closed = True  # (what the first pass wrote stays noted: a failure's SSE error event follows it)
        if self._pass_end is not None:
            self._pass_end.cancel()
            self._pass_end = None
        if self._wake is not None:
            if self._own_wake:
                self._wake.close()
            elif self._armed:
                self._wake.clear(self._fire)
            self._armed = False
        if self._job is not None:
            self._job.cancel()
            self._job = None


class BufferedResponder:
    """Collects the whole response for a buffered Lambda return value (Mangum-compatible shape)."""

    pads = False

    def __init__(
        self,
        integration: Integration,
        *,
        multi_value_headers: bool,
        text_mime_types: tuple[str, ...] = DEFAULT_TEXT_MIME_TYPES,
        exclude_headers: frozenset[str] = frozenset(),
        request: Request | None = None,
    ) -> None:
        self.integration = integration
        self.multi_value_headers = multi_value_headers
        self.text_mime_types = text_mime_types
        self.exclude_headers = exclude_headers
        self.request = request  # shapes the response when a custom event handler read the event
        self.started = False
        self.stats = ResponseStats()
        self._headers: Headers = []
        self._chunks: list[bytes] = []  # joined once at the end: no copy at all for a one-chunk body
        self._response: dict[str, Any] | None = None

    async def start(self, status: int, headers: Headers) -> None:
        self.started = True
        self.stats.status = status
        self.stats.first_byte_at = time.perf_counter()
        _, self._headers = choose_end_record(headers, frozenset())  # a whole response needs none

    async def body(self, data: bytes, more: bool) -> None:
        stats = self.stats
        if data:
            self._chunks.append(data)
            stats.bytes += len(data)
            stats.chunks += 1
            if stats.bytes > MAX_BUFFERED_RESPONSE_BYTES:
                # Stop holding a body Lambda will refuse anyway (6 MB buffered limit) instead of growing.
                raise ResponseTooLargeError(
                    f"buffered response body passed {MAX_BUFFERED_RESPONSE_BYTES} bytes; Lambda returns at "
                    "most 6 MB buffered. Stream it instead (invoke mode RESPONSE_STREAM)."
                )
        if not more:
            assert stats.status is not None
            chunks = self._chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self._chunks = []
            self._response = self._encode(stats.status, self._headers, body)

    async def flush(self) -> None:
        return None

    async def fail(self, exc: BaseException) -> None:
        # Nothing has left the function yet, so whatever the app had started is dropped and the client gets
        # a whole 500 (504 at the deadline), as Mangum answers; half a response never passes for a whole
        # one. (Streaming differs: there the status is already on the wire.)
        self._chunks = []
        status, text = (504, _TIMEOUT_BODY) if isinstance(exc, DeadlineExceeded) else (500, _ERROR_BODY)
        self.stats.status = status
        self._response = self._encode(status, _PLAIN, text)

    def close(self) -> None:
        return None

    def _encode(self, status: int, headers: Headers, body: bytes) -> dict[str, Any]:
        if self.request is not None:
            return shape_response(
                self.request,
                status,
                headers,
                body,
                text_mime_types=self.text_mime_types,
                exclude_headers=self.exclude_headers,
            )
        return buffered_response(
            status,
            headers,
            body,
            self.integration,
            multi_value_headers=self.multi_value_headers,
            text_mime_types=self.text_mime_types,
            exclude_headers=self.exclude_headers,
        )

    def result(self) -> dict[str, Any]:
        """The response dict (a whole 500/504 when the app failed)."""
        if self._response is None:
            raise ASGIProtocolError("no response was produced")
        return self._response


def make_responder(
    request: Request,
    writer: StreamWriter | None,
    padding: PaddingPolicy,
    sse: SSEOptions,
    *,
    text_mime_types: tuple[str, ...] = DEFAULT_TEXT_MIME_TYPES,
    exclude_headers: frozenset[str] = frozenset(),
    end_records: frozenset[EndRecordFormat] = frozenset(),
    wake: WakeUp | None = None,
) -> StreamingResponder | BufferedResponder:
    """The responder for one response: buffered without a writer, else streaming, padded unless off.

    ``wake``: a :class:`WakeUp` the padding flusher may share with the caller's earlier and later
    responses (one loop timer for all of them); else each padded response makes its own."""
    if writer is None:
        return BufferedResponder(
            request.integration,
            multi_value_headers=request.multi_value_headers,
            text_mime_types=text_mime_types,
            exclude_headers=exclude_headers,
            request=request,
        )
    head = request.scope.get("method") == "HEAD"
    if padding.mode == "none":
        return StreamingResponder(
            writer, request.integration, end_records, head=head, exclude_headers=exclude_headers
        )
    return PaddedStreamingResponder(
        writer,
        request.integration,
        padding,
        sse,
        end_records,
        head=head,
        exclude_headers=exclude_headers,
        wake=wake,
    )


def log_invocation(
    request: Request, result: CycleResult | None, stats: ResponseStats, started: float
) -> None:
    """The one line per invocation (``INFO``), and the app's failure with its traceback (``ERROR``).

    The line is built only when its level is enabled. Everything in it that a client chose is escaped: the
    path and query percent-encoded as uvicorn's access log writes them, the method's control characters
    as ``\\xNN``, so a request can never start a forged line of its own.
    """
    end = "lost" if result is None else result.end
    if result is not None and result.error is not None:
        end = f"{end}:{type(result.error).__name__}"
        logger.error("app failed: %s", text_of(result.error), exc_info=result.error)
    if not logger.isEnabledFor(logging.INFO):
        return
    scope = request.scope
    ttfb = (stats.first_byte_at - started) * 1000 if stats.first_byte_at is not None else math.nan
    status = stats.status if stats.status is not None else "-"
    method = loggable(str(scope.get("method")))
    target = loggable_target(scope.get("path", ""), scope.get("query_string", b""))
    elapsed = (time.perf_counter() - started) * 1000
    _info(
        f"{method} {target} {status} ttfb={ttfb:.1f}ms time={elapsed:.1f}ms bytes={stats.bytes} "
        f"chunks={stats.chunks} padding={stats.padding} end={end}"
    )


#: The format of the command line's log lines (level, logger, message), as Lambda's console shows them.
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``lambda-asgi-stream run`` installs: :data:`LOG_FORMAT` lines to a stream.

    While it is the only handler a line of ours reaches, the per-invocation line goes straight to its
    stream, in one write: no log record, no look-up of the caller's frame (that costs several times the
    write, on every invocation). Configure logging yourself and the line goes through it as usual.
    """

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def write_line(self, text: str) -> None:
        with self.lock:  # type: ignore[union-attr]
            try:
                stream = self.stream
                stream.write(text + self.terminator)
                if not getattr(stream, "line_buffering", False):  # else the newline flushed it already
                    stream.flush()
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": text}))


def _info(message: str) -> None:
    root = logging.root
    handlers = root.handlers
    if (
        len(handlers) == 1
        and type(handlers[0]) is LineHandler
        and handlers[0].level <= logging.INFO
        and not handlers[0].filters
        and not logger.handlers
        and not logger.filters
        and not root.filters
        and logger.propagate
    ):
        handlers[0].write_line("INFO lambda_asgi_stream: " + message)
    else:
        logger.info("%s", message)


# --- cancellation ------------------------------------------------------------------------------------


def _anyio_cancel_scope() -> Callable[..., Any] | None:
    """anyio's ``CancelScope`` class for the running backend, once the app has put anyio's asyncio backend
    to use; None until then (the deadline is then a plain timer).

    An app that never reached anyio's backend holds no anyio scope a timer could cut through, and loading
    the backend just for our deadline would cost the first invocation some 10 ms (Starlette imports anyio
    but many requests never touch it). ``anyio.CancelScope(...)`` looks the backend up through sniffio on
    every call; the backend's own class does the same work without it (about 6 µs a call). Falls back to
    ``anyio.CancelScope`` when the backend's class cannot be found.
    """
    anyio = sys.modules.get("anyio")
    if anyio is None or _ANYIO_ASYNCIO not in sys.modules:
        return None
    global _scope_class
    if _scope_class is None:
        try:
            _scope_class = type(anyio.CancelScope())
        except Exception:  # a backend without its own class, or no running loop
            return anyio.CancelScope  # type: ignore[no-any-return]
    return _scope_class


_scope_class: Callable[..., Any] | None = None
_ANYIO_ASYNCIO = "anyio._backends._asyncio"


def _anyio_cancelled() -> bool:
    """Whether an anyio cancel scope around us was cancelled (it shows as a deadline of -inf)."""
    anyio = sys.modules.get("anyio")
    if anyio is None:
        return False
    try:
        return bool(anyio.current_effective_deadline() == -math.inf)
    except Exception:  # not inside an anyio-compatible task
        return False


def cancel_requested() -> bool | None:
    """Whether a plain asyncio ``task.cancel()`` is pending for the current task; None when unknowable.

    anyio scopes show as ``current_effective_deadline() == -inf`` (callers check that first); a plain
    ``task.cancel()`` (``wait_for``, ``asyncio.timeout``, the runtime's SIGTERM) shows only in
    ``Task.cancelling()``, which Python 3.10 lacks (None there). A CancelledError with neither is the
    app's own doing.
    """
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return None if cancelling is None else cancelling() > 0


def _app_fault(exc: BaseException) -> Exception:
    """The app's own failure, or ``exc`` re-raised when it is a real cancellation or an interrupt.

    An app can raise ``CancelledError`` without anyone cancelling it (it awaited a future it had
    cancelled itself) or call ``sys.exit()``; either would otherwise unwind the runtime loop and end the
    process with the invocation unanswered. uvicorn catches ``BaseException`` around the app for the
    same reason. A cancellation that was asked for (SIGTERM, a test transport's abort) goes on up.
    """
    if isinstance(exc, Exception):
        return exc
    if isinstance(exc, asyncio.CancelledError):
        # Unknown (3.10) counts as asked for: swallowing a real cancellation is worse than failing one
        # invocation.
        if _anyio_cancelled() or cancel_requested() is not False:
            raise exc
        return RuntimeError(f"the app raised {type(exc).__name__} without being cancelled")
    if isinstance(exc, SystemExit):
        return RuntimeError(f"the app called sys.exit({exc.code!r})")
    raise exc


# --- the cycle -----------------------------------------------------------------------------------------

_START = "waiting for http.response.start"
_BODY = "streaming http.response.body"
_DONE = "response complete"

# (state, message type) -> the method that handles it (None: accepted and ignored). ASGI HTTP spec,
# "Response Start", "Response Body" and "Response Trailers": Lambda cannot forward response trailers and we
# never advertise them, so a trailers message after the body is dropped.
_TRANSITIONS: dict[tuple[str, Any], str | None] = {
    (_START, "http.response.start"): "_start",
    (_BODY, "http.response.body"): "_body",
    (_DONE, "http.response.trailers"): None,
}


_REFUSED = "refused"  # a (state, message type) pair not in the table


def _expected(state: str) -> str:
    allowed = sorted(kind for (at, kind), step in _TRANSITIONS.items() if at == state and step is not None)
    return " or ".join(allowed) or "nothing more"


class CycleResult(Record):
    """How the cycle ended: ``complete``, ``error`` or ``timeout``, with the error that ended it."""

    __slots__ = ("end", "error", "late_error")

    def __init__(
        self, end: str, error: BaseException | None, late_error: BaseException | None = None
    ) -> None:
        self.end = end
        self.error = error
        self.late_error = late_error


_COMPLETE = CycleResult("complete", None)  # the common result, shared (frozen) instead of built per call
_valid_names: set[bytes] = set()  # response header names already checked (apps send the same few)


class HTTPCycle:
    """Run one request through an ASGI app into a responder.

    >>> responder = BufferedResponder("function-url", multi_value_headers=False)  # doctest: +SKIP
    >>> await HTTPCycle(scope, b"", responder).run(app)                          # doctest: +SKIP
    >>> responder.result()["statusCode"]                                         # doctest: +SKIP
    200
    """

    def __init__(self, scope: Scope, body: bytes, responder: Responder) -> None:
        self.scope = scope
        self.body = body
        self.responder = responder
        self.state = _START
        self._request_sent = False
        self._send_error: BaseException | None = None
        self._transport_error: RuntimeAPIError | None = None
        # Created only if the app calls receive() again before the response ends (most never do).
        self._done: asyncio.Event | None = None
        self._finished = False
        self._deadline = math.inf  # on the event loop's clock
        self._expired = False
        self._clock: Callable[[], float] = time.monotonic
        # RFC 9110 9.3.2: a response to HEAD has no content. Frameworks (Starlette) send the GET body
        # anyway and leave it to the server to drop, as uvicorn does; here we are the server.
        self._head = scope.get("method") == "HEAD"

    async def run(
        self, app: ASGIApp, *, deadline: float | None = None, timer: DeadlineTimer | None = None
    ) -> CycleResult:
        """Run ``app``; ``deadline`` is an event-loop time (``loop.time()``) at which the app is stopped.

        ``timer``: the calling task's own :class:`DeadlineTimer`, kept from one cycle to the next (a loop
        serving invocations one after another), instead of a timer made for this cycle.
        """
        if self.responder.pads:
            self.scope.setdefault("extensions", {})[FLUSH_EXTENSION] = self.responder.flush
        try:
            app_error, timed_out = await self._call(app, deadline, timer)
        finally:
            self.responder.close()
        self._finish()
        if self._transport_error is not None:
            raise self._transport_error
        if self.state is _DONE:
            return self._after_complete(app_error, timed_out)
        error = self._failure(app_error, timed_out)
        self.state = _DONE  # nothing more from the app after this: a late send() is a protocol error
        await self.responder.fail(error)
        end = "timeout" if isinstance(error, DeadlineExceeded) else "error"
        return CycleResult(end, error)

    async def _call(
        self, app: ASGIApp, deadline: float | None, timer: DeadlineTimer | None
    ) -> tuple[Exception | None, bool]:
        if deadline is None:  # no deadline to enforce: the app alone
            try:
                await app(self.scope, self._receive, self._send)
            except BaseException as exc:
                return _app_fault(exc), self._expired
            return None, self._expired
        own = timer is None  # else the caller's, kept armed for its next cycle
        if timer is None:
            task = asyncio.current_task()
            assert task is not None
            timer = DeadlineTimer(asyncio.get_running_loop(), task)  # this cycle's alone
        self._deadline, self._clock = deadline, timer.clock
        scope_class = _anyio_cancel_scope()
        try:
            if scope_class is not None:
                return await self._call_in_anyio_scope(app, scope_class(deadline=deadline))
            return await self._call_with_timer(app, timer, deadline)
        finally:
            if own:
                timer.close()  # no timer left on the loop for a task that may be gone

    async def _call_in_anyio_scope(self, app: ASGIApp, scope: Any) -> tuple[Exception | None, bool]:
        # The app has anyio loaded: an anyio scope, so that the app's shielded scopes finish first,
        # current_effective_deadline() reports the deadline, and a swallowed cancellation is re-delivered.
        with scope:
            try:
                await app(self.scope, self._receive, self._send)
            except BaseException as exc:
                if scope.cancel_called and isinstance(exc, asyncio.CancelledError):
                    # Our deadline fired: a timeout, whichever CancelledError came out of the app (anyio's
                    # scope only absorbs its own). A cancelled outer scope still raises at the next await.
                    return None, True
                return _app_fault(exc), self._expired
        # cancel_called, not cancelled_caught: an app that swallowed the deadline's cancellation and returned
        # ran into the deadline all the same, as on the timer path.
        return None, scope.cancel_called or self._expired

    async def _call_with_timer(
        self, app: ASGIApp, timer: DeadlineTimer, deadline: float
    ) -> tuple[Exception | None, bool]:
        # Plain asyncio: a timer that cancels this task at the deadline, as asyncio.timeout() does.
        task = timer.arm(deadline)
        try:
            await app(self.scope, self._receive, self._send)
        except BaseException as exc:
            if timer.fired and isinstance(exc, asyncio.CancelledError):
                _uncancel(task)
                return None, True
            return _app_fault(exc), self._expired
        finally:
            timer.disarm()
        if timer.fired:  # the app swallowed the cancellation and returned
            _uncancel(task)
        return None, timer.fired or self._expired

    def _failure(self, app_error: Exception | None, timed_out: bool) -> BaseException:
        if timed_out:
            return DeadlineExceeded(f"the app was cancelled at the invocation deadline ({self.state})")
        if self._send_error is not None:
            return self._send_error
        if app_error is not None:
            return app_error
        return ASGIProtocolError(
            f"the app returned while {self.state}; expected "
            + ("http.response.start" if self.state is _START else "a final http.response.body")
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

    def _check_deadline(self) -> None:
        # An app that never yields (CPU work, time.sleep) is never reached by the timer or the cancel
        # scope, which act only at an await that suspends; its next send() or receive() is stopped here.
        if self._clock() >= self._deadline and self.state is not _DONE:
            self._expired = True
            raise DeadlineExceeded(f"the invocation deadline passed ({self.state})")

    async def _receive(self) -> Message:
        self._check_deadline()
        if not self._request_sent:
            self._request_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        if not self._finished:
            if self._done is None:
                self._done = asyncio.Event()
            await self._done.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        state = self.state
        step = _TRANSITIONS.get((state, kind), _REFUSED)
        if step is None:
            return
        if step is _REFUSED:
            raise self._protocol_error(f"expected {_expected(state)} ({state}), but the app sent {kind!r}")
        if self._clock() >= self._deadline:  # (_check_deadline, inlined: this runs for every message)
            self._check_deadline()
        try:
            if step == "_body":  # the body steps inline: this runs for every body message of every response
                body = message.get("body", b"")
                if type(body) is not bytes:
                    if not isinstance(body, (bytearray, memoryview)):
                        raise self._protocol_error(
                            f"http.response.body needs bytes, got {type(body).__name__}"
                        )
                    body = bytes(body)
                if self._head:
                    body = b""
                more = bool(message.get("more_body"))
                if more and message.get("flush"):
                    if body:
                        await self.responder.body(body, True)
                    await self.responder.flush()
                elif body or not more:  # an empty chunk in the middle carries nothing
                    await self.responder.body(body, more)
                if not more:
                    self.state = _DONE
                    self._finish()
            else:
                await self._start(message)
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
            # CR, LF, NUL as int needles: `b"\r" in value` would first build and drop a TypeError
            if 13 in value or 10 in value or 0 in value:
                # Header injection: uvicorn/h11 refuse the same value, so local runs and Lambda agree.
                raise self._protocol_error(f"response header {name!r} has CR, LF or NUL in its value")
        await self.responder.start(status, headers)
        self.state = _BODY  # only once the prelude is out: a refused start leaves no body behind

    def _protocol_error(self, text: str) -> ASGIProtocolError:
        error = ASGIProtocolError(text)
        self._send_error = self._send_error or error
        return error


_CONTENT_KINDS: dict[bytes, tuple[PadFunction | None, bool]] = {}
_CONTENT_KINDS_KEPT = 64  # distinct content-type values remembered (an app uses a handful)


def _content_kind(content_type: bytes) -> tuple[PadFunction | None, bool]:
    """The padding a content-type value takes (None: never padded), and whether it is an event stream.

    Remembered per raw value: a padded response asks once, and an app sends the same few values again and
    again. (A value made per response, a multipart boundary, only refills the memory now and then.)
    """
    kind = _CONTENT_KINDS.get(content_type)
    if kind is None:
        text = content_type.decode("latin-1")
        kind = (pad_function_for(text), is_event_stream(text))
        if len(_CONTENT_KINDS) >= _CONTENT_KINDS_KEPT:
            _CONTENT_KINDS.clear()
        _CONTENT_KINDS[content_type] = kind
    return kind


def clock_of(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """The loop's clock: ``time.monotonic`` itself when that is what the loop reads (asyncio's own loops),
    which spares a Python call per reading."""
    own = type(loop).time is asyncio.BaseEventLoop.time and "time" not in getattr(loop, "__dict__", {})
    return time.monotonic if own else loop.time  # (a test's fake clock patched on the loop is kept)


class WakeUp:
    """One loop timer reused for a run of callbacks whose times mostly only move later.

    :meth:`set` replaces any earlier setting; the loop timer is made again only when the new time is
    earlier than the one it is set for. A timer that fires early (its setting has moved later since) sets
    itself for the rest of the wait, and one that fires after :meth:`clear` does nothing. One per task that
    serves responses or invocations one after another (a runtime worker): one timer made and fired per
    period, instead of one made and cancelled per response.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.clock = clock_of(loop)
        self.when = math.inf  # of the current setting (inf: none)
        self._callback: Callable[[], None] | None = None
        self._handle: asyncio.TimerHandle | None = None

    def set(self, when: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` at ``when`` (a time on the loop's clock), unless set again or cleared first."""
        self.when, self._callback = when, callback
        handle = self._handle
        if handle is None or handle.when() > when:
            if handle is not None:
                handle.cancel()
            # In a context of its own: the timer outlives the invocation that set it (a deadline timer
            # stays for the whole function timeout), and a copy of that invocation's context would keep
            # its event alive as long. Its callbacks need none.
            self._handle = self.loop.call_at(when, self._fire, context=contextvars.Context())

    def clear(self, callback: Callable[[], None] | None = None) -> None:
        """Nothing to call (only if ``callback`` is the one set, when given); the loop timer may stay."""
        if callback is None or self._callback == callback:
            self.when, self._callback = math.inf, None

    def close(self) -> None:
        self.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        callback = self._callback
        if callback is None:
            return  # cleared: the next setting makes a timer again
        if self.clock() < self.when:  # set later since: wait for the rest
            self._handle = self.loop.call_at(self.when, self._fire, context=contextvars.Context())
            return
        self.when, self._callback = math.inf, None
        callback()


class DeadlineTimer:
    """Cancels a task at a deadline; one per task, re-armed for each cycle it runs (a :class:`WakeUp`).

    A loop serving invocations one after another keeps one: Lambda's deadlines only move later, so the
    timer armed for the first invocation stays armed, and when it fires for an invocation that is already
    over it sets itself for the current one. That is one loop timer per function timeout instead of one to
    make and cancel per invocation.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self._wake = WakeUp(loop)
        self.loop = loop
        self.clock = self._wake.clock  # the loop's clock (see clock_of)
        self._task = task
        self.fired = False  # the cycle in progress was cancelled at its deadline

    def arm(self, deadline: float) -> asyncio.Task[Any]:
        """Cancel the task at ``deadline`` (a time on the loop's clock), unless disarmed first."""
        self.fired = False
        self._wake.set(deadline, self._expire)
        return self._task

    def retarget(self, task: asyncio.Task[Any]) -> None:
        """Serve ``task`` from now on, between cycles: for a caller whose cycles run one after another,
        each in a task of its own (the buffered ``Adapter``)."""
        self._task = task

    def disarm(self) -> None:
        """The cycle is over: nothing to cancel (the loop timer may stay for the next one)."""
        self._wake.clear()

    def close(self) -> None:
        self._wake.close()  # (which clears the setting, as disarm does)

    def _expire(self) -> None:
        self.fired = True
        self._task.cancel()


def _uncancel(task: asyncio.Task[Any]) -> None:
    # 3.11+: take back our own cancel request, so that asyncio.timeout() and TaskGroup in the caller keep
    # counting right (what asyncio.timeout() does when it absorbs its own cancellation).
    uncancel = getattr(task, "uncancel", None)
    if uncancel is not None:
        uncancel()
