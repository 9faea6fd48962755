"""Shell: the invocation loop over the Lambda Runtime API, on plain asyncio. This is the Lambda cold path.

A boring loop (the Go runtime's ``invoke_loop.go``): ``next``, handle, report; repeat. Each worker owns
one keep-alive HTTP/1.1 connection to ``AWS_LAMBDA_RUNTIME_API``, framed by :mod:`http1` (a small
purpose-built client: the Runtime API is one fixed, trusted peer on loopback; ``http.client`` cannot send
trailers). Nothing here imports anyio or h11, so the cold path costs little beyond ``import asyncio``;
apps keep using anyio freely.

Writing: each write leaves in one ``sendmsg`` call (request head or chunk header, the app's bytes, CRLF,
with no copy) straight on a non-blocking socket; the prelude is held until the body's first bytes or the
end of the event-loop pass, so a short response is one system call, and small writes that follow the
first body bytes in that pass leave together at its end (:class:`StreamingPost`). When the kernel buffer
is full we wait for the socket to be writable, so ``await send()`` in the app returns only once its bytes
are handed to the kernel, or at most 16 KiB of them held for the rest of the pass (backpressure). Per
invocation the loop creates no task and no task group: the app runs in the worker's own task.

The connection is kept alive between calls, as AWS's Node client does. The custom-runtime docs say to
close it after a streamed response; a ``Connection: close`` from the server is honoured, and a connection
the server dropped is detected before reuse and replaced, so both readings are safe.

Failures: Runtime API faults (refused, reset, 5xx) on ``next`` are retried with bounded backoff, then the
loop exits non-zero so Lambda replaces the sandbox. A broken response POST is logged; the loop goes on.
An event that is not HTTP goes to ``.../error`` and the loop goes on. A failed app import or lifespan
startup goes to ``/runtime/init/error`` and the process exits. See docs/failure-policy.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import select
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from itertools import islice
from typing import Any

from . import hooks, http1, runtime_api
from ._errors import (
    EventError,
    LambdaAsgiStreamError,
    MalformedEventError,
    RuntimeAPIError,
    RuntimeAPIStatusError,
    StartupError,
)
from ._http import loggable
from ._types import ASGIApp, Headers
from .config import ENV_PROBE_TOKEN, Config
from .cycle import (
    BufferedResponder,
    CycleResult,
    DeadlineTimer,
    HTTPCycle,
    ResponseStats,
    WakeUp,
    cancel_requested,
    current_context,
    log_invocation,
    make_responder,
)
from .encoder import text_of
from .events import Request, parse_event
from .http1 import Reply
from .lifespan import Lifespan, LifespanOn, make_lifespan
from .runtime_api import APIRequest, Invocation, LambdaContext

__all__ = ["LambdaRuntime", "Reply", "RuntimeClient", "StreamingPost", "current_context", "report_init_error"]

logger = logging.getLogger("lambda_asgi_stream")

_RECV_SIZE = 64 * 1024
_NEXT_ATTEMPTS = 6  # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s of backoff, then give up
_BACKOFF_START = 0.1
_EXTENSION_NAME = "lambda-asgi-stream-sigterm"
_PEEK_AFTER_S = 0.5


class _Stopped(BaseException):
    """A stop signal arrived while a worker was blocked waiting for Lambda (BaseException: nothing in
    between may swallow it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _StaleConnection(RuntimeAPIError):
    """A kept-alive connection turned out closed before the server read our request."""


class _Connection:
    """One HTTP/1.1 connection to the Runtime API on a non-blocking socket."""

    def __init__(self, address: str) -> None:
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise RuntimeAPIError(f"AWS_LAMBDA_RUNTIME_API must be host:port, not {address!r}")
        self.address = address
        self.host = host.strip("[]")
        self.port = int(port)
        self.sock: socket.socket | None = None
        self.reusable = False  # an exchange completed cleanly and the server keeps the connection
        self._pending: deque[bytes | memoryview] = deque()
        self._drainers: list[asyncio.Future[None]] = []  # writers waiting for the socket to take bytes
        self._poller: Any = None  # select.poll() on the socket, for blocking waits
        self.waiting = False  # blocked in read_reply_blocking (a signal handler then raises out of it)
        self.stop_requested = 0  # a stop signal's number, for a wait about to block
        self.reused = False  # the exchange in progress runs on a connection kept from an earlier one
        self._used_at = 0.0  # when the last reply was read
        # the loop the socket was connected on (asyncio.get_running_loop() costs a getpid() system call)
        self.loop: asyncio.AbstractEventLoop | None = None

    def take(self, *, check_peer: bool = True) -> bool:
        """Start an exchange on the kept connection; False when there is none to reuse (then :meth:`open`).

        ``check_peer=False`` skips the look for a close the server already sent (one system call): for
        requests that may simply be sent again when the reused connection turns out to be gone
        (:class:`_StaleConnection`). The look is skipped too for a connection that carried a reply less
        than :data:`_PEEK_AFTER_S` ago: a server drops an idle connection after an idle time, not at once.
        """
        if (
            self.sock is not None
            and self.reusable
            and not (check_peer and time.monotonic() - self._used_at > _PEEK_AFTER_S and self._peer_closed())
        ):
            self.reusable = False  # an exchange starts
            self.reused = True
            return True
        return False

    async def open(self) -> None:
        """A new connection in place of the current one."""
        self.reused = False
        self.close()
        try:
            self.sock = await self._connect()
        except OSError as exc:
            raise RuntimeAPIError(f"cannot connect to the Runtime API at {self.address}: {exc}") from exc
        self._pending.clear()

    async def _connect(self) -> socket.socket:
        # A numeric address (Lambda's 127.0.0.1:9001) resolves without a lookup; a name resolves from
        # /etc/hosts. Either is quick, and asyncio's resolver would start a thread pool on the cold path.
        family, kind, proto, _, addr = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            # Small chunks (an SSE token) must not wait for Nagle's algorithm (.NET's client: NoDelay).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.loop = asyncio.get_running_loop()
            await self.loop.sock_connect(sock, addr)
        except BaseException:
            sock.close()
            raise
        return sock

    def _peer_closed(self) -> bool:
        assert self.sock is not None
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        self.reusable = False
        self._poller = None
        if self.sock is not None:
            if self._drainers:  # wake them: their next write finds the connection closed and says so
                with contextlib.suppress(RuntimeError):
                    asyncio.get_running_loop().remove_writer(self.sock.fileno())
                self._wake_drainers()
            self.sock.close()
            self.sock = None

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop: the one the socket was connected on while it is usable, without the
        ``getpid()`` system call of ``asyncio.get_running_loop()``."""
        loop = self.loop
        return loop if loop is not None and not loop.is_closed() else asyncio.get_running_loop()

    @property
    def pending(self) -> bool:
        """Bytes wait in the queue, not yet written."""
        return bool(self._pending)

    def queue(self, pieces: Iterable[bytes | memoryview]) -> None:
        """Add bytes to go out with the next :meth:`send` (or :meth:`send_now`)."""
        self._pending.extend(pieces)

    async def send(self, pieces: tuple[bytes, ...]) -> None:
        """Write all pieces with as few ``sendmsg`` calls as the kernel allows.

        Bytes not yet written stay queued when the caller is cancelled, and go out first on the next call,
        so a deadline never leaves a half-written chunk on the wire.
        """
        if not self.write(pieces):
            await self.drain()

    def write(self, pieces: tuple[bytes, ...]) -> bool:
        """Write ``pieces`` after what is queued, without waiting; True when all of it went (what did not
        stays queued: :meth:`drain`). A few pieces, as one chunk or request makes (far under
        :data:`_IOV_MAX`): a long queue is :meth:`queue`'s, and leaves in batches."""
        pending = self._pending
        if pending or self.sock is None or not pieces:
            pending.extend(pieces)
            return self.send_now()
        try:  # the common case, a write with nothing queued before it: no queue at all
            sent = self.sock.sendmsg(pieces)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise self._write_failed(exc) from exc
        if sent == sum(map(len, pieces)):
            return True
        pending.extend(pieces)
        _advance(pending, sent)
        return False

    def take_back(self, piece: bytes) -> bool:
        """Remove ``piece`` from the end of the queue if none of it has been written yet."""
        if self._pending and self._pending[-1] is piece:
            self._pending.pop()
            return True
        return False

    def send_now(self) -> bool:
        """Write what is queued without waiting; True when all of it went."""
        sock, pending = self.sock, self._pending
        if sock is None:  # closed by an earlier failure (a padding write, say): report it as one
            raise RuntimeAPIError("the connection to the Runtime API is closed")
        try:
            while pending:
                # At most _IOV_MAX buffers a call: the first pass of a response may hold thousands of tiny
                # chunks (three pieces each), and more buffers than that fail the whole call (EMSGSIZE).
                batch = pending if len(pending) <= _IOV_MAX else list(islice(pending, _IOV_MAX))
                try:
                    sent = sock.sendmsg(batch)
                except BlockingIOError:
                    return False
                if batch is pending and sent == sum(map(len, pending)):
                    pending.clear()  # the common case: the kernel took it all
                else:
                    _advance(pending, sent)
        except OSError as exc:
            raise self._write_failed(exc) from exc
        return True

    def _write_failed(self, exc: OSError) -> RuntimeAPIError:
        stale = self.reused and isinstance(exc, (BrokenPipeError, ConnectionResetError))
        self.close()
        error = _StaleConnection if stale else RuntimeAPIError
        return error(f"writing to the Runtime API failed: {exc}")

    async def drain(self) -> None:
        """Wait until the socket takes what is queued.

        Two writers may wait at once (a padding write cancelled while it waited, and the failure report
        that follows it): there is one writer registration for the socket, and each waiter has its own
        future, so that one leaving never takes the other's wake-up away.
        """
        loop = asyncio.get_running_loop()
        while True:
            sock = self._socket()
            writable = loop.create_future()
            if not self._drainers:
                loop.add_writer(sock.fileno(), self._wake_drainers)
            self._drainers.append(writable)
            try:
                await writable
            finally:
                self._drainers.remove(writable)
                if not self._drainers and self.sock is sock:
                    loop.remove_writer(sock.fileno())
            if self.send_now():
                return

    def _wake_drainers(self) -> None:
        for waiter in self._drainers:
            _resolve(waiter)

    async def read_reply(self, *, head_request: bool = False) -> Reply:
        """The reply to the request just sent, waiting on the event loop."""
        sock = self._socket()
        parser = None
        loop = asyncio.get_running_loop()
        received = 0
        try:
            while True:
                data = await loop.sock_recv(sock, _RECV_SIZE)
                received += len(data)
                if parser is None:
                    reply = http1.quick_reply(data) if data and not head_request else None
                    if reply is not None:  # the whole reply in the first read, in the usual shape
                        return self._done(reply)
                    parser = http1.ReplyParser(head_request=head_request, quick=False)
                reply = parser.feed(data) if data else parser.eof()
                if reply is not None:
                    return self._done(reply)
        except (OSError, RuntimeAPIError) as exc:
            raise self._read_failed(exc, received) from exc

    def read_reply_blocking(self, *, head_request: bool = False) -> Reply:
        """The reply to the request just sent, blocking the thread (and so the event loop) until it comes.

        For the single-worker loop only, where nothing else waits for the loop meanwhile: Lambda freezes
        the sandbox while the runtime waits for ``next`` anyway, and AWS's own runtime clients block here
        too. It skips the event loop's per-wait work (a future, two ``epoll_ctl`` calls, a loop pass). A
        signal handler may raise out of the wait.
        """
        sock = self._socket()
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(sock.fileno(), select.POLLIN)
        parser = None
        received = 0
        self.waiting = True
        try:
            if self.stop_requested:  # a stop signal came just before the wait: its handler could not raise
                raise _Stopped(self.stop_requested)
            while True:
                self._poller.poll()
                try:
                    data = sock.recv(_RECV_SIZE)
                except BlockingIOError:
                    continue
                received += len(data)
                if parser is None:
                    reply = http1.quick_reply(data) if data and not head_request else None
                    if reply is not None:  # the whole reply in the first read, in the usual shape
                        return self._done(reply)
                    parser = http1.ReplyParser(head_request=head_request, quick=False)
                reply = parser.feed(data) if data else parser.eof()
                if reply is not None:
                    return self._done(reply)
        except (OSError, RuntimeAPIError) as exc:
            raise self._read_failed(exc, received) from exc
        except BaseException:
            self.close()  # a reply half read (or a signal during the wait): this connection is done
            raise
        finally:
            self.waiting = False

    def _read_failed(self, exc: BaseException, received: int) -> RuntimeAPIError:
        self.close()
        if self.reused and not received and not isinstance(exc, RuntimeAPIStatusError):
            # Closed or reset before a single byte of reply, on a connection kept from an earlier exchange:
            # the server had dropped it (an idle timeout, or a close after a streamed response).
            return _StaleConnection(f"the Runtime API had closed the kept connection: {exc}")
        if isinstance(exc, RuntimeAPIError):
            return exc
        return RuntimeAPIError(f"reading from the Runtime API failed: {exc}")

    def _socket(self) -> socket.socket:
        if self.sock is None:
            raise RuntimeAPIError("the connection to the Runtime API is closed")
        return self.sock

    def _done(self, reply: Reply) -> Reply:
        self._used_at = time.monotonic()
        if reply.keep_alive:
            self.reusable = True
        else:
            self.close()
        return reply


#: Cancelled callbacks (a streamed response's flush that had nothing left to send) kept on the loop's
#: ready queue by skipped passes; one more and a pass is run anyway to discard them (see _pass_would_idle).
#: A streamed response that ends in its first pass leaves one (the writer's flush; the padding flusher's
#: end-of-pass call rides on it): a pass every 17 such invocations.
_CANCELLED_KEPT = 16
# When a pass rebuilds the timer heap to drop its cancelled timers (asyncio.base_events, same values
# since 3.7): more than this many timers, more than this share of them cancelled.
_HEAP_REBUILT_OVER = getattr(asyncio.base_events, "_MIN_SCHEDULED_TIMER_HANDLES", 100)
_HEAP_REBUILT_SHARE = getattr(asyncio.base_events, "_MIN_CANCELLED_TIMER_HANDLES_FRACTION", 0.5)


def _pass_would_idle(loop: asyncio.AbstractEventLoop | None, quiet_fd: int = -1) -> bool:
    """Whether a pass of ``loop`` now would run nothing at all, so that it may be skipped before a wait.

    Only for asyncio's own selector loop, whose state is read directly (private attributes, the same in
    3.10 to 3.14): no stop requested, no signal handler of its own, no file descriptor watched but its
    self-pipe and ``quiet_fd`` (an app's open upstream connection keeps the pass), no callback ready but
    cancelled ones, no timer due and no cancelled timer the pass would drop. A pass would collect a due
    timer or a ready socket (their callbacks then run in that same pass, after the worker's step: its
    wait and the next invocation), so either one keeps it. Any other loop (uvloop), or any doubt, and the
    pass runs. What comes during the wait (a timer falling due, a thread's ``call_soon_threadsafe``) is
    seen by the next check, as the pass would have seen it only then too.

    ``quiet_fd``: a socket of ours whose readiness needs no pass before the wait (the SIGTERM extension's
    long poll, answered only when Lambda stops the sandbox, when SIGTERM ends the wait anyway).
    """
    if type(loop) is not asyncio.SelectorEventLoop:
        return False
    state: Any = loop
    try:
        if state._stopping or state._signal_handlers:
            return False
        watched = state._selector.get_map()
        if len(watched) != 1 and not (len(watched) == 2 and quiet_fd >= 0 and quiet_fd in watched):
            return False
        ready = state._ready
        if len(ready) > _CANCELLED_KEPT:
            return False  # only a pass takes cancelled callbacks off the queue: let one run now and then
        for handle in ready:
            if not handle._cancelled:
                return False
        scheduled = state._scheduled  # a heap: the first timer is the earliest
        if not scheduled:
            return True
        # A pass drops cancelled timers (from the front of the heap, or all of them once they are most of a
        # long heap: skipped, they and the contexts they hold would pile up) and moves due ones (when < now +
        # clock resolution) to the ready queue.
        first = scheduled[0]
        if first._cancelled or first._when < state.time() + state._clock_resolution:
            return False
        count = len(scheduled)
        return not (count > _HEAP_REBUILT_OVER and state._timer_cancelled_count > count * _HEAP_REBUILT_SHARE)
    except Exception:  # a loop unlike the one we know, the queue changed meanwhile (a signal, a thread)
        return False  # (in doubt, the pass runs)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


#: The most buffers one ``sendmsg`` call takes: Linux's UIO_MAXIOV (sendmsg(2): more is EMSGSIZE), which
#: is also IOV_MAX on macOS.
_IOV_MAX = 1024


def _advance(pending: deque[bytes | memoryview], sent: int) -> None:
    while sent:
        first = pending[0]
        if sent >= len(first):
            sent -= len(first)
            pending.popleft()
        else:
            pending[0] = memoryview(first)[sent:]
            sent = 0


class RuntimeClient:
    """The Runtime API calls one worker makes, over its own connection."""

    def __init__(self, address: str, *, blocking: bool = False) -> None:
        self.connection = _Connection(address)
        #: wait for replies by blocking the thread (see :meth:`_Connection.read_reply_blocking`)
        self.blocking = blocking and hasattr(select, "poll")
        #: a response or an error went out for the current invocation (Lambda takes one answer per request id)
        self.answered = False
        self._fields: dict[tuple[tuple[str, str], ...], bytes] = {}  # header lines per kind of call
        # whole heads of body-less calls made again and again (next), by what makes them (no hashing of
        # the request value itself)
        self._heads: dict[tuple[str, str, tuple[tuple[str, str], ...]], bytes] = {}

    def head(self, request: APIRequest, body_length: int | None) -> bytes:
        fields = self._fields.get(request.headers)
        if fields is None:
            fields = http1.header_fields(self.connection.address, request.headers)
            if len(self._fields) < 16:
                self._fields[request.headers] = fields
        line = http1.request_line(request.method, request.path)
        return line + fields + http1.length_field(request.method, body_length)

    async def call(self, request: APIRequest) -> Reply:
        """Send a request with a complete body and read the reply; check the expected status."""
        await self.send(request)
        return await self.reply(request)

    async def send(self, request: APIRequest) -> None:
        """The first half of :meth:`call`: the request is on the wire when this returns."""
        conn = self.connection
        if not conn.take(check_peer=request.method != "GET"):
            await conn.open()
        body = request.body or b""
        key = (request.method, request.path, request.headers)
        head = self._heads.get(key) if not body else None
        if head is None:
            head = self.head(request, len(body))
            if not body and len(self._heads) < 8:
                self._heads[key] = head
        if not conn.write((head, body) if body else (head,)):
            await conn.drain()

    async def reply(self, request: APIRequest) -> Reply:
        """The second half of :meth:`call`: the reply, checked against the status ``request`` expects.

        A GET whose kept connection turns out to be gone before any reply is sent again, once, on a new
        connection: the server never read it (for a POST nothing is sent twice; its caller reports it).
        """
        head_request = request.method == "HEAD"
        conn = self.connection
        for attempt in (1, 2):
            try:
                if self.blocking:
                    reply = conn.read_reply_blocking(head_request=head_request)
                else:
                    reply = await conn.read_reply(head_request=head_request)
                break
            except _StaleConnection:
                if request.method != "GET" or attempt == 2:
                    raise
                await self.send(request)
        if reply.status != request.expected_status:
            raise RuntimeAPIStatusError(request.method, request.path, reply.status, reply.body)
        return reply

    async def next_invocation(self, quiet_fd: int = -1) -> Invocation:
        """Long-poll ``next``; retry Runtime API faults with bounded backoff, then raise.

        ``quiet_fd``: a socket whose readiness needs no loop pass before the wait (see _pass_would_idle).
        """
        delay = _BACKOFF_START
        for attempt in range(1, _NEXT_ATTEMPTS + 1):
            try:
                await self.send(_NEXT)
                if self.blocking and not _pass_would_idle(self.connection.loop, quiet_fd):
                    # One pass of the event loop before the wait, so that tasks the last invocation left
                    # ready (a fire-and-forget upload) take their next step before the sandbox freezes. It
                    # is skipped when it would run and collect nothing (the usual case): it costs a poll.
                    await asyncio.sleep(0)
                reply = await self.reply(_NEXT)
                self.answered = False
                return Invocation.from_next(reply.headers, reply.body, lowered=True)
            except RuntimeAPIStatusError as exc:
                if exc.status < 500 or attempt == _NEXT_ATTEMPTS:
                    raise
                error: RuntimeAPIError = exc
            except RuntimeAPIError as exc:
                if attempt == _NEXT_ATTEMPTS:
                    raise
                error = exc
            logger.warning("Runtime API next failed (attempt %d): %s; retrying", attempt, error)
            self.connection.close()
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def open_stream(self, request: APIRequest) -> StreamingPost:
        return StreamingPost(self, request, self.head(request, None))

    def close(self) -> None:
        self.connection.close()


_NEXT = runtime_api.next_invocation()

#: At most this many body bytes wait for the end of the pass that started a response (see
#: :class:`StreamingPost`): the low end of the sizes at which Lambda was seen to forward a write at once
#: (16 KB; others saw 100 KB), so a write it would forward at once never waits here.
HOLD_LIMIT = 16 * 1024


class StreamingPost:
    """The chunked ``POST .../response``: a :class:`~lambda_asgi_stream.cycle.StreamWriter`.

    The request head goes out with the first bytes (so an event that turns out unusable can still be
    reported on ``.../error``); each ``write`` is one chunk; ``end`` sends the last bytes, the last chunk
    and the trailers; :meth:`finish` reads Lambda's answer (202).

    The event-loop pass that starts the response is sent in as few system calls as it safely can: the
    prelude waits for the first body bytes or the end of the pass, whichever comes first; the first body
    bytes leave at once, with it; the small writes that follow them in that same pass (a burst of SSE
    events, the rest of a short page) wait for the end of the pass, the end of the response or a write
    that would take them past :data:`HOLD_LIMIT`, and leave together, each still its own chunk (what a
    full socket does not take then goes as soon as it is writable). Every later pass writes at once.
    Lambda holds writes that small itself until more bytes come, so a client can tell only when something
    keeps the loop from ending the pass: the app blocking it right after such a burst, or another worker's
    synchronous work.
    """

    def __init__(self, client: RuntimeClient, request: APIRequest, head: bytes) -> None:
        self.client = client
        self.connection = client.connection
        self.request = request
        self._head: bytes | None = head
        self._opening: asyncio.Future[None] | None = None  # set while a caller connects (_open)
        # The prelude's pass has not ended: what waits is flushed then, by this callback on the loop.
        self._flush: asyncio.Handle | None = None
        self._holding = False  # the first body bytes of that pass went out: hold the rest of its writes
        self._held_size = 0  # body bytes waiting for that flush
        self._at_pass_end: Callable[[], None] | None = None  # the caller's, called after that flush
        self._drainer: asyncio.Task[None] | None = None  # sends what that flush could not
        self.closed = False

    async def _open(self) -> None:
        # The head leaves only once the connection is there: cancelled while it connects (the deadline),
        # it stays for the failure report. One caller connects at a time (another is a send from a task
        # the app left running, and the failure report after it): the others wait, then look again.
        while (head := self._head) is not None:
            if self._opening is not None:
                await asyncio.shield(self._opening)
                continue
            if not self.connection.take():
                self._opening = self.connection.event_loop().create_future()
                try:
                    await self.connection.open()
                finally:
                    opening, self._opening = self._opening, None
                    opening.set_result(None)
            self._head = None
            self.client.answered = True
            self.connection.queue((head,))

    async def prelude(self, data: bytes) -> None:
        if self._head is not None:
            await self._open()
        self.connection.queue(http1.chunk(data))
        if self._flush is None:
            # In a context of its own: cancelled by end(), it may wait on the loop's queue for a few
            # invocations, and a copy of the app's context would keep this one (its event) alive as long.
            self._flush = self.connection.event_loop().call_soon(
                self._send_held, context=contextvars.Context()
            )

    def when_pass_ends(self, callback: Callable[[], None]) -> bool:
        if self._flush is None or self._at_pass_end is not None:
            return False
        self._at_pass_end = callback
        return True

    def _send_held(self) -> None:
        # The pass that started the response is over: the app paused (a slow first token, the next
        # upstream read), so the prelude, or the end of a burst, goes now. (Called at most once per response.)
        self._flush = None
        self._holding = False
        callback, self._at_pass_end = self._at_pass_end, None
        try:
            self._send_what_is_held()
        finally:
            if callback is not None:
                callback()

    def _send_what_is_held(self) -> None:
        connection = self.connection
        if connection.sock is None or self.closed:
            return
        with contextlib.suppress(RuntimeAPIError):  # the next write reports a broken connection
            if connection.send_now():
                return
            # The socket is full: the rest goes as soon as it takes more, not with the app's next write,
            # which may be seconds away (an SSE stream waiting for its next token).
            self._drainer = connection.event_loop().create_task(_drain_quietly(connection))

    async def write(self, data: bytes) -> None:
        # A zero-size chunk would end the body (RFC 9112 7.1). And once the last chunk is on its way
        # (``end`` waits for a slow socket, and the deadline cut it short), nothing may follow it, not a
        # failure's SSE error event either: the server would read it as the start of a new request.
        if not data or self.closed:
            return
        if self._head is not None:
            await self._open()
        connection = self.connection
        if self._holding and self._held_size + len(data) <= HOLD_LIMIT:
            # Nothing else waits in the queue (the first body write emptied it), so the memory held is
            # bounded, and a write past the limit takes all of it out and meets the socket's backpressure.
            connection.queue(http1.chunk(data))
            self._held_size += len(data)
            return
        if not connection.write(http1.chunk(data)):
            await connection.drain()
        self._holding = self._flush is not None  # not if the pass ended while we waited for the socket
        self._held_size = 0

    async def end(self, data: bytes, trailers: Headers) -> None:
        if self.closed:
            # The body's last chunk is queued already (the app had finished; only the socket was slow): a
            # second one would start a new request on the wire. Let the first one out; Lambda sees the
            # whole response.
            await self.connection.send(())
            return
        if self._head is not None:
            await self._open()
        connection = self.connection
        last = http1.last_chunk(trailers)
        connection.queue((*http1.chunk(data), last) if data else (last,))
        if connection.send_now():  # the common case: all of it in one system call
            self.closed = True
            if self._flush is not None:
                # Nothing is left for it to send, nor for the caller to do at the end of the pass (the
                # response is over). Cancelled, it no longer counts as ready work, so the worker can skip
                # the loop pass before its next wait (_pass_would_idle).
                self._flush.cancel()
                self._flush = self._at_pass_end = None
            return
        # Backpressure. The last chunk waits until the data is out: if we are cancelled meanwhile (the
        # deadline), the failure's own last chunk, with its error trailers, is the only one on the wire.
        if connection.take_back(last):
            await connection.send(())
            connection.queue((last,))
        self.closed = True
        await connection.send(())

    async def finish(self) -> Reply:
        return await self.client.reply(self.request)


class LambdaRuntime:
    """Serve an ASGI app from the Lambda Runtime API until SIGTERM or a fatal Runtime API fault.

    >>> asyncio.run(LambdaRuntime(app, Config.from_env()).serve())  # doctest: +SKIP
    """

    def __init__(
        self,
        app: ASGIApp,
        config: Config,
        *,
        handle_signals: bool = True,
        blocking_waits: bool | None = None,
    ) -> None:
        if not config.runtime_api:
            raise RuntimeAPIError("AWS_LAMBDA_RUNTIME_API is not set: run this inside Lambda, or use serve")
        # Hook: probe requests of `lambda-asgi-stream probe` (probe_endpoint.py) when the probe token is set;
        # without it the app is served as it is, and the probe's code is not even imported (cold path).
        if os.environ.get(ENV_PROBE_TOKEN):
            from . import probe_endpoint

            app = probe_endpoint.wrap(app)
        self.app = app
        self.config = config
        self.handle_signals = handle_signals
        # One worker waits for Lambda's replies by blocking (cheaper, and what AWS's own clients do) when the
        # runtime owns the process (its signals): a blocked wait cannot be cancelled from the event loop, so
        # a program that embeds the loop and cancels serve() gets event-loop waits by default, as does one
        # that serves the Runtime API from this same loop (the `invoke` command).
        if blocking_waits is None:
            blocking_waits = config.max_concurrency == 1 and handle_signals
        self.blocking_waits = blocking_waits
        self.lifespan: Lifespan = make_lifespan(app, config.lifespan)
        self._fatal: BaseException | None = None
        self._warned_buffered_only = False
        self._context_env = LambdaContext.environment()
        self._workers: list[asyncio.Task[None]] = []
        # We are cancelling the workers ourselves (SIGTERM, serve() cancelled): their CancelledError is a
        # shutdown, not the app's (Python 3.10 has no Task.cancelling() to tell the two apart).
        self._stopping = False
        self._clients: list[RuntimeClient] = []
        self.invocations = 0
        self._quiet_fd = -1  # the SIGTERM extension's long poll, while it waits (see _pass_would_idle)

    async def serve(self) -> None:
        try:
            await self.lifespan.startup()
        except StartupError as exc:
            await report_init_error(self.config.runtime_api, exc)
            raise
        try:
            await self._serve_invocations()
        finally:
            await _run_to_completion(self.lifespan.shutdown())
        if self._fatal is not None:
            raise self._fatal

    async def _serve_invocations(self) -> None:
        loop = asyncio.get_running_loop()
        helpers: list[asyncio.Task[None]] = []
        workers = self._workers
        previous = self._catch_signals(loop) if self.handle_signals else {}
        try:
            if self._lifespan_active():
                registered = loop.create_future()
                helpers.append(loop.create_task(self._enable_sigterm(registered)))
                await registered  # registered before the first `next` (init)
            if self.config.snap_start:
                await self._wait_for_restore()
            workers.extend(loop.create_task(self._worker()) for _ in range(self.config.max_concurrency))
            # asyncio.wait, not gather: when serve() itself is cancelled, the workers must learn that it is
            # a shutdown (self._stopping) before their cancellation reaches them.
            await asyncio.wait(workers)
            for task in workers:
                if not task.cancelled() and (fault := task.exception()) is not None:
                    raise fault  # a fault of ours outside any invocation: never a silent exit 0
        finally:
            self._stopping = True
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for task in (*workers, *helpers):
                task.cancel()
            await asyncio.gather(*workers, *helpers, return_exceptions=True)

    def _catch_signals(self, loop: asyncio.AbstractEventLoop) -> dict[int, Any]:
        """SIGTERM (Lambda's shutdown) and SIGINT stop the workers; returns the handlers they replace.

        Plain ``signal.signal`` handlers rather than the event loop's, because a worker blocked in a wait
        for Lambda's reply does not run the loop: there the handler raises out of the wait.
        """

        def on_signal(signum: int, frame: object) -> None:
            for client in self._clients:
                client.connection.stop_requested = signum  # seen by a wait that is about to block
            if any(client.connection.waiting for client in self._clients):
                raise _Stopped(signum)
            loop.call_soon_threadsafe(self._stop, signum)

        return {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}

    def _stop(self, signum: int) -> None:
        logger.info("received %s: shutting down", signal.Signals(signum).name)
        self._stopping = True
        for task in self._workers:
            task.cancel()

    def _lifespan_active(self) -> bool:
        return isinstance(self.lifespan, LifespanOn) and self.lifespan.supported

    async def _enable_sigterm(self, registered: asyncio.Future[None]) -> None:
        """Register a no-op internal extension, so that Lambda sends SIGTERM before it stops the sandbox.

        Without a registered extension Lambda ends the process with SIGKILL, and the app's lifespan
        shutdown never runs (aws-lambda-go ``lambda/sigterm.go`` does the same; AWS docs, "Extensions
        API", shutdown phase). Only done when the app has a lifespan. The shutdown phase is short (about
        300 ms for internal extensions), so shutdown handlers should be quick. A refusal only costs the
        shutdown, never the invocations.
        """
        client = RuntimeClient(self.config.runtime_api)
        try:
            try:
                reply = await client.call(runtime_api.register_extension(_EXTENSION_NAME))
                extension_id = (reply.header(b"lambda-extension-identifier") or b"").decode("latin-1")
                # Lambda's init ends once the runtime and every extension have asked for their next event:
                # ours asks before the runtime's first `next`.
                poll = runtime_api.extension_next(extension_id)
                await client.send(poll)
                if client.connection.sock is not None:  # no pass before a wait needs its reply
                    self._quiet_fd = client.connection.sock.fileno()
            except RuntimeAPIError as exc:
                logger.warning("lifespan shutdown may not run: could not register for SIGTERM (%s)", exc)
                return
            finally:
                _resolve(registered)
            with contextlib.suppress(RuntimeAPIError):  # a long poll that ends only with the sandbox
                await client.reply(poll)
        finally:
            self._quiet_fd = -1  # before the number can be reused
            client.close()

    async def _wait_for_restore(self) -> None:
        client = RuntimeClient(self.config.runtime_api)
        try:
            await client.call(runtime_api.restore_next())
        finally:
            client.close()

    async def _worker(self) -> None:
        client = RuntimeClient(self.config.runtime_api, blocking=self.blocking_waits)
        self._clients.append(client)
        task = asyncio.current_task()
        assert task is not None
        # This worker's timers, for all its invocations: the deadline's, and the padding flusher's.
        timer = DeadlineTimer(asyncio.get_running_loop(), task)
        wake = WakeUp(timer.loop)
        try:
            while True:
                invocation = await client.next_invocation(self._quiet_fd)
                await self._handle_safely(client, invocation, timer, wake)
        except _Stopped as stop:
            logger.info("received %s: shutting down", signal.Signals(stop.signum).name)
        except RuntimeAPIError as exc:
            # Only this worker stops. The others may be streaming a response right now, or be about to
            # receive an invocation Lambda has already handed out: cancelling them would turn one
            # connection's fault into lost or truncated invocations. If the Runtime API is really gone,
            # each of them meets the same fault on its own next call, and the loop ends with the last one.
            logger.error("Runtime API unusable, exiting so Lambda replaces the sandbox: %s", exc)
            self._fatal = self._fatal or exc
        except Exception:
            # A fault of ours outside any invocation. serve() raises it once every worker has ended; said
            # now, because with several workers the others may go on for a long time.
            logger.exception("a worker stopped on an internal error")
            raise
        finally:
            self._clients.remove(client)
            client.close()
            timer.close()
            wake.close()

    async def _handle_safely(
        self, client: RuntimeClient, invocation: Invocation, timer: DeadlineTimer, wake: WakeUp
    ) -> None:
        """``handle``, with a last line of defence: one invocation's fault never ends the loop."""
        try:
            await self.handle(client, invocation, timer, wake)
        except RuntimeAPIError:
            raise
        except asyncio.CancelledError as exc:
            # We cancel our workers only when stopping (SIGTERM, serve() cancelled), and then say so first;
            # a CancelledError otherwise came out of the app (3.11+ also shows ours in Task.cancelling())
            # and costs this invocation, not the worker.
            if self._stopping or cancel_requested():
                raise
            logger.error("invocation %s: stray %s from the app", invocation.request_id, type(exc).__name__)
            failure: Exception = RuntimeError("the app raised CancelledError without being cancelled")
        except Exception as exc:
            logger.exception(
                "invocation %s: internal error, reporting it and going on", invocation.request_id
            )
            failure = exc
        else:
            return
        client.close()  # the connection may hold half a request; Lambda sees that stream cut
        if client.answered:
            # The response had begun: a second answer for the same request id would be refused, or worse,
            # taken. Lambda records the cut stream as the invocation's failure.
            logger.error("invocation %s: its response was cut (%s)", invocation.request_id, text_of(failure))
            return
        await _post_quietly(client, runtime_api.invocation_error(invocation.request_id, failure))

    async def handle(
        self,
        client: RuntimeClient,
        invocation: Invocation,
        timer: DeadlineTimer | None = None,
        wake: WakeUp | None = None,
    ) -> None:
        """Serve one invocation and report its outcome. Never raises for the app's or the event's faults.

        ``timer`` and ``wake``: the calling worker's deadline timer and padding timer, kept across its
        invocations (else made per call).
        """
        started = time.perf_counter()
        self.invocations += 1
        context = LambdaContext(invocation, self._context_env)
        token = current_context.set(context)
        try:
            try:
                request = _parse(invocation, context, self.config.base_path)
            except EventError as exc:
                # The message may name the event's keys, chosen by whoever invoked: one line, escaped.
                logger.error("invocation %s: unusable event: %s", invocation.request_id, loggable(str(exc)))
                await _post_quietly(client, runtime_api.invocation_error(invocation.request_id, exc))
                return
            self._set_trace_id(invocation)
            scope = dict(request.scope)
            scope["state"] = dict(self.lifespan.state)
            deadline = self._deadline(invocation, timer)
            if self._streams(request):
                result, stats = await self._stream(client, invocation, request, scope, deadline, timer, wake)
            else:
                result, stats = await self._buffer(client, invocation, request, scope, deadline, timer)
            log_invocation(request, result, stats, started)
            if hooks.registered():
                await hooks.run_hooks(self._hooks_deadline(invocation))
        finally:
            current_context.reset(token)

    async def _stream(
        self,
        client: RuntimeClient,
        invocation: Invocation,
        request: Request,
        scope: dict[str, Any],
        deadline: float | None,
        timer: DeadlineTimer | None,
        wake: WakeUp | None = None,
    ) -> tuple[CycleResult | None, ResponseStats]:
        post = client.open_stream(runtime_api.streaming_response(invocation.request_id))
        responder = make_responder(
            request,
            post,
            self.config.padding,
            self.config.sse,
            exclude_headers=self.config.exclude_headers,
            end_records=self.config.end_record,
            wake=wake,
        )
        try:
            result = await HTTPCycle(scope, request.body, responder).run(
                self.app, deadline=deadline, timer=timer
            )
            await post.finish()
        except (RuntimeAPIError, OSError) as exc:
            # The bytes are gone and Lambda records Runtime.TruncatedResponse; say so loudly, go on.
            logger.error("invocation %s: response stream to Lambda broke: %s", invocation.request_id, exc)
            client.close()
            return None, responder.stats
        return result, responder.stats

    async def _buffer(
        self,
        client: RuntimeClient,
        invocation: Invocation,
        request: Request,
        scope: dict[str, Any],
        deadline: float | None,
        timer: DeadlineTimer | None,
    ) -> tuple[CycleResult | None, ResponseStats]:
        responder = make_responder(
            request, None, self.config.padding, self.config.sse, exclude_headers=self.config.exclude_headers
        )
        assert isinstance(responder, BufferedResponder)
        result = await HTTPCycle(scope, request.body, responder).run(self.app, deadline=deadline, timer=timer)
        try:
            call = runtime_api.buffered_response(invocation.request_id, responder.result())
        except Exception as exc:
            logger.error("invocation %s failed: %s", invocation.request_id, exc)
            call = runtime_api.invocation_error(invocation.request_id, exc)
        await _post_quietly(client, call)
        return result, responder.stats

    def _streams(self, request: Request) -> bool:
        # A streamed reply would reach a buffered-only invoker (ALB, HTTP API) as the raw prelude bytes:
        # answer those events buffered whatever the mode, and say so once.
        if self.config.invoke_mode != "RESPONSE_STREAM":
            return False
        if not request.streamable and not self._warned_buffered_only:
            self._warned_buffered_only = True
            logger.warning(
                "%s events cannot be streamed; answering them buffered (set %s=BUFFERED to silence this)",
                # a REST-shaped event that cannot stream is an HTTP API's payload 1.0
                "http-api" if request.integration == "rest" else request.integration,
                "LAMBDA_ASGI_STREAM_INVOKE_MODE",
            )
        return request.streamable

    def _set_trace_id(self, invocation: Invocation) -> None:
        # Lambda's runtimes publish the trace id in the environment (docs/wire-format.md); with several
        # concurrent invocations one variable cannot be right, so then it lives only in the context.
        if self.config.max_concurrency != 1:
            return
        if invocation.trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = invocation.trace_id
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)

    def _hooks_deadline(self, invocation: Invocation) -> float | None:
        # The same budget as the app's: Lambda's deadline minus the margin, on the monotonic clock.
        if not invocation.deadline_ms:
            return None
        return time.monotonic() + max(0, invocation.remaining_ms() - self.config.timeout_margin_ms) / 1000

    def _deadline(self, invocation: Invocation, timer: DeadlineTimer | None = None) -> float | None:
        """When the app is stopped, on the event loop's clock: Lambda's deadline minus the margin."""
        if not invocation.deadline_ms:
            return None
        budget_ms = invocation.remaining_ms() - self.config.timeout_margin_ms
        now = timer.clock() if timer is not None else asyncio.get_running_loop().time()
        return now + max(0, budget_ms) / 1000


async def _drain_quietly(connection: _Connection) -> None:
    with contextlib.suppress(RuntimeAPIError):  # the connection broke: the next write or end() says so
        await connection.drain()


async def _run_to_completion(coro: Coroutine[Any, Any, None]) -> None:
    """Await ``coro`` to its end even if we are cancelled meanwhile (then re-raise the cancellation)."""
    task = asyncio.ensure_future(coro)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    task.result()


def _parse(invocation: Invocation, context: LambdaContext, base_path: str) -> Request:
    raw = invocation.event
    try:
        # What json.loads does with bytes, without its encoding sniffing for the usual case: a JSON object
        # in UTF-8 (its first byte "{", its second not NUL, which would mean UTF-16).
        event = json.loads(
            raw.decode("utf-8", "surrogatepass") if raw[:1] == b"{" and raw[1:2] != b"\x00" else raw
        )
    except ValueError as exc:
        raise MalformedEventError("<event>", f"not valid JSON ({exc})") from exc
    except RecursionError as exc:
        # Arrays or objects nested past the interpreter's recursion limit (json's scanner counts its depth):
        # the event is unusable, not the runtime broken.
        raise MalformedEventError("<event>", "JSON nested too deeply to read") from exc
    try:
        return parse_event(event, context, base_path=base_path)
    except EventError:
        raise
    except Exception as exc:  # a parser gap must cost this event, never the loop
        logger.exception("invocation %s: the event could not be read", invocation.request_id)
        raise MalformedEventError("<event>", f"could not be read ({type(exc).__name__}: {exc})") from exc


async def _post_quietly(client: RuntimeClient, request: APIRequest) -> None:
    client.answered = True
    try:
        await client.call(request)
    except RuntimeAPIStatusError as exc:
        logger.error("Runtime API refused %s: %s", request.path, exc)
    except RuntimeAPIError as exc:
        logger.error("Runtime API call %s failed: %s", request.path, exc)
        client.close()


async def report_init_error(address: str, exc: BaseException) -> None:
    """Tell Lambda the init phase failed (``/runtime/init/error``); never raises."""
    if not address:
        return
    client = RuntimeClient(address)
    try:
        await client.call(runtime_api.init_error(exc))
    except LambdaAsgiStreamError as post_exc:
        logger.error("could not report the init error to the Runtime API: %s", post_exc)
    finally:
        client.close()
