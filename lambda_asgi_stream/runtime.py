"""Shell: the invocation loop over the Lambda Runtime API (anyio + h11). This is the Lambda cold path.

A boring loop (the Go runtime's ``invoke_loop.go``): ``next``, handle, report; repeat. Each worker owns
one HTTP/1.1 connection to ``AWS_LAMBDA_RUNTIME_API``, framed by h11, which writes chunked bodies and
trailers (``http.client`` cannot send trailers; protocol.md 2.4).

Writing: each chunk leaves in one ``sendmsg`` call (h11's chunk header, the app's bytes, CRLF, with no
copy), straight on a non-blocking socket. When the kernel buffer is full we wait for the socket to be
writable, so ``await send()`` in the app returns only once its bytes are handed to the kernel
(backpressure; lessons.md 3.4). asyncio's streams would cost three writes and a drain per chunk.

The connection is kept alive between calls, as AWS's Node client does (golden captures show
``Connection: keep-alive``). The custom-runtime docs say to close it after a streamed response
(protocol.md 2.1); h11 honours a ``Connection: close`` from the server, and a connection the server
dropped is detected before reuse and replaced, so both readings are safe.

Failures: Runtime API faults (refused, reset, 5xx) on ``next`` are retried with bounded backoff, then the
loop exits non-zero so Lambda replaces the sandbox. A broken response POST is logged; the loop goes on.
An event that is not HTTP goes to ``.../error`` and the loop goes on. A failed app import or lifespan
startup goes to ``/runtime/init/error`` and the process exits.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass

import anyio
import anyio.abc
import h11

from . import runtime_api
from ._errors import (
    EventError,
    LambdaAsgiStreamError,
    MalformedEventError,
    RuntimeAPIError,
    RuntimeAPIStatusError,
    StartupError,
)
from ._types import ASGIApp, Headers
from .config import Config
from .cycle import (
    BufferedResponder,
    CycleResult,
    HTTPCycle,
    PaddedStreamingResponder,
    ResponseStats,
    StreamingResponder,
    cancel_requested,
)
from .events import Request, parse_event
from .lifespan import Lifespan, LifespanOn, make_lifespan
from .runtime_api import APIRequest, Invocation, LambdaContext

logger = logging.getLogger("lambda_asgi_stream")

#: The Lambda context of the invocation the current task serves (set for the app's whole cycle).
current_context: ContextVar[LambdaContext] = ContextVar("lambda_asgi_stream_context")

_RECV_SIZE = 256 * 1024
_NEXT_ATTEMPTS = 6  # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s of backoff, then give up
_BACKOFF_START = 0.1
_EXTENSION_NAME = "lambda-asgi-stream-sigterm"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Headers
    body: bytes


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
        self.h11 = h11.Connection(h11.CLIENT)
        self._pending: deque[bytes | memoryview] = deque()

    async def ensure(self) -> None:
        """Have an open, idle connection: reuse the current one unless the server dropped it."""
        if self.sock is not None and self.h11.our_state is h11.IDLE and not self._peer_closed():
            return
        self.close()
        try:
            self.sock = await self._connect()
        except OSError as exc:
            raise RuntimeAPIError(f"cannot connect to the Runtime API at {self.address}: {exc}") from exc
        self.h11 = h11.Connection(h11.CLIENT)
        self._pending.clear()

    async def _connect(self) -> socket.socket:
        infos = await anyio.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            # Small chunks (an SSE token) must not wait for Nagle's algorithm (.NET's client: NoDelay).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex(addr)
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, os.strerror(err))
            if err:
                await anyio.wait_writable(sock)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
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
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def start(self, request: APIRequest) -> list[bytes]:
        headers = [("Host", self.address), *request.headers]
        if request.body is not None and request.method == "POST":
            headers.append(("Content-Length", str(len(request.body))))
        return [self.h11.send(h11.Request(method=request.method, target=request.path, headers=headers))]

    def frame(self, event: h11.Data | h11.EndOfMessage) -> list[bytes]:
        return list(self.h11.send_with_data_passthrough(event))  # type: ignore[arg-type]

    async def send(self, pieces: Iterable[bytes | memoryview]) -> None:
        """Write all pieces with as few ``sendmsg`` calls as the kernel allows.

        Bytes not yet written stay queued when the caller is cancelled, and go out first on the next call,
        so a deadline never leaves a half-written chunk on the wire.
        """
        self._pending.extend(pieces)
        await self.flush()

    async def flush(self) -> None:
        sock = self.sock
        if sock is None:  # closed by an earlier failure (a padding write, say): report it as one
            raise RuntimeAPIError("the connection to the Runtime API is closed")
        pending = self._pending
        try:
            while pending:
                try:
                    sent = sock.sendmsg(pending)
                except BlockingIOError:
                    await anyio.wait_writable(sock)
                    continue
                _advance(pending, sent)
        except OSError as exc:
            self.close()
            raise RuntimeAPIError(f"writing to the Runtime API failed: {exc}") from exc

    async def read_reply(self) -> Reply:
        status, headers, body = 0, [], bytearray()
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Response):
                status, headers = event.status_code, list(event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        else:
            self.close()
        return Reply(status, headers, bytes(body))

    async def _next_event(self) -> object:
        sock = self.sock
        if sock is None:
            raise RuntimeAPIError("the connection to the Runtime API is closed")
        try:
            while True:
                event = self.h11.next_event()
                if event is not h11.NEED_DATA:
                    if isinstance(event, h11.ConnectionClosed):
                        raise RuntimeAPIError("the Runtime API closed the connection mid-reply")
                    return event
                try:
                    data = sock.recv(_RECV_SIZE)
                except BlockingIOError:
                    await anyio.wait_readable(sock)
                    continue
                self.h11.receive_data(data)
        except (OSError, h11.ProtocolError) as exc:
            self.close()
            if isinstance(exc, RuntimeAPIError):
                raise
            raise RuntimeAPIError(f"reading from the Runtime API failed: {exc}") from exc


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

    def __init__(self, address: str) -> None:
        self.connection = _Connection(address)

    async def call(self, request: APIRequest) -> Reply:
        """Send a request with a complete body and read the reply; check the expected status."""
        conn = self.connection
        await conn.ensure()
        body = request.body or b""
        pieces = conn.start(request)
        if body:
            pieces += conn.frame(h11.Data(data=body))
        pieces += conn.frame(h11.EndOfMessage())
        await conn.send(pieces)
        reply = await conn.read_reply()
        if reply.status != request.expected_status:
            raise RuntimeAPIStatusError(request.method, request.path, reply.status, reply.body)
        return reply

    async def next_invocation(self) -> Invocation:
        """Long-poll ``next``; retry Runtime API faults with bounded backoff, then raise."""
        delay = _BACKOFF_START
        for attempt in range(1, _NEXT_ATTEMPTS + 1):
            try:
                reply = await self.call(runtime_api.next_invocation())
                return Invocation.from_next(reply.headers, reply.body)
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
            await anyio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def open_stream(self, request: APIRequest) -> StreamingPost:
        return StreamingPost(self.connection, request)

    def close(self) -> None:
        self.connection.close()


class StreamingPost:
    """The chunked ``POST .../response``: a :class:`~lambda_asgi_stream.cycle.StreamWriter`.

    The request head goes out with the first bytes (so an event that turns out unusable can still be
    reported on ``.../error``); each ``write`` is one chunk; ``close`` sends the last chunk and the
    trailers; :meth:`finish` reads Lambda's answer (202).
    """

    def __init__(self, connection: _Connection, request: APIRequest) -> None:
        self.connection = connection
        self.request = request
        self._head_sent = False
        self.closed = False

    async def _head(self) -> list[bytes]:
        if self._head_sent:
            return []
        await self.connection.ensure()
        self._head_sent = True
        return self.connection.start(self.request)

    async def write(self, data: bytes) -> None:
        if not data:  # a zero-size chunk would end the body (RFC 9112 7.1)
            return
        pieces = [] if self._head_sent else await self._head()
        # The chunk frame is written here rather than by h11 (which only tracks that the body is open and
        # writes the same three pieces): on the hot path of a stream that saves ~5 us per chunk.
        pieces += (b"%x\r\n" % len(data), data, b"\r\n")
        await self.connection.send(pieces)

    async def close(self, trailers: Headers) -> None:
        pieces = await self._head()
        pieces += self.connection.frame(h11.EndOfMessage(headers=trailers))
        await self.connection.send(pieces)
        self.closed = True

    async def finish(self) -> Reply:
        reply = await self.connection.read_reply()
        if reply.status != self.request.expected_status:
            raise RuntimeAPIStatusError(self.request.method, self.request.path, reply.status, reply.body)
        return reply


class LambdaRuntime:
    """Serve an ASGI app from the Lambda Runtime API until SIGTERM or a fatal Runtime API fault.

    >>> anyio.run(LambdaRuntime(app, Config.from_env()).serve)  # doctest: +SKIP
    """

    def __init__(self, app: ASGIApp, config: Config, *, handle_signals: bool = True) -> None:
        if not config.runtime_api:
            raise RuntimeAPIError("AWS_LAMBDA_RUNTIME_API is not set: run this inside Lambda, or use serve")
        self.app = app
        self.config = config
        self.handle_signals = handle_signals
        self.lifespan: Lifespan = make_lifespan(app, config.lifespan)
        self._fatal: BaseException | None = None
        self._warned_buffered_only = False
        self.invocations = 0

    async def serve(self) -> None:
        startup_error: StartupError | None = None
        async with anyio.create_task_group() as lifespan_group:
            try:
                await self.lifespan.startup(lifespan_group)
            except StartupError as exc:
                startup_error = exc
            else:
                await self._serve_invocations()
                with anyio.CancelScope(shield=True):
                    await self.lifespan.shutdown()
            lifespan_group.cancel_scope.cancel()
        if startup_error is not None:
            await report_init_error(self.config.runtime_api, startup_error)
            raise startup_error
        if self._fatal is not None:
            raise self._fatal

    async def _serve_invocations(self) -> None:
        async with anyio.create_task_group() as group:
            if self.handle_signals:
                group.start_soon(self._stop_on_signal, group.cancel_scope)
            if self._lifespan_active():
                await group.start(self._enable_sigterm)  # registered before the first `next` (init)
            if self.config.snap_start:
                await self._wait_for_restore()
            async with anyio.create_task_group() as workers:
                for _ in range(self.config.max_concurrency):
                    workers.start_soon(self._worker)
            group.cancel_scope.cancel()  # the workers are done: stop the signal and extension tasks

    def _lifespan_active(self) -> bool:
        return isinstance(self.lifespan, LifespanOn) and self.lifespan.supported

    async def _enable_sigterm(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Register a no-op internal extension, so that Lambda sends SIGTERM before it stops the sandbox.

        Without a registered extension Lambda ends the process with SIGKILL, and the app's lifespan
        shutdown never runs (lessons.md 13; aws-lambda-go ``lambda/sigterm.go``). Only done when the app
        has a lifespan. The shutdown phase is short (about 300 ms for internal extensions), so shutdown
        handlers should be quick. A refusal only costs the shutdown, never the invocations.
        """
        client = RuntimeClient(self.config.runtime_api)
        try:
            try:
                reply = await client.call(runtime_api.register_extension(_EXTENSION_NAME))
            except RuntimeAPIError as exc:
                logger.warning("lifespan shutdown may not run: could not register for SIGTERM (%s)", exc)
                return
            finally:
                task_status.started()
            extension_id = next(
                (v.decode() for k, v in reply.headers if k.lower() == b"lambda-extension-identifier"), ""
            )
            with contextlib.suppress(RuntimeAPIError):  # a long poll that ends only with the sandbox
                await client.call(runtime_api.extension_next(extension_id))
        finally:
            client.close()

    async def _stop_on_signal(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                logger.info("received %s: shutting down", signal.Signals(signum).name)
                scope.cancel()
                return

    async def _wait_for_restore(self) -> None:
        client = RuntimeClient(self.config.runtime_api)
        try:
            await client.call(runtime_api.restore_next())
        finally:
            client.close()

    async def _worker(self) -> None:
        client = RuntimeClient(self.config.runtime_api)
        try:
            while True:
                invocation = await client.next_invocation()
                await self._handle_safely(client, invocation)
        except RuntimeAPIError as exc:
            # Only this worker stops. The others may be streaming a response right now, or be about to
            # receive an invocation Lambda has already handed out: cancelling them would turn one
            # connection's fault into lost or truncated invocations. If the Runtime API is really gone,
            # each of them meets the same fault on its own next call, and the loop ends with the last one.
            logger.error("Runtime API unusable, exiting so Lambda replaces the sandbox: %s", exc)
            self._fatal = self._fatal or exc
        finally:
            client.close()

    async def _handle_safely(self, client: RuntimeClient, invocation: Invocation) -> None:
        """``handle``, with a last line of defence: one invocation's fault never ends the loop."""
        try:
            await self.handle(client, invocation)
        except RuntimeAPIError:
            raise
        except anyio.get_cancelled_exc_class() as exc:
            # Our tasks are only ever cancelled through anyio scopes (SIGTERM), which show as -inf, so a
            # CancelledError without one (and, where it can be known, without a task.cancel()) came out of
            # the app (on 3.10 the cycle cannot tell it apart) and costs this invocation, not the worker.
            if anyio.current_effective_deadline() == -math.inf or cancel_requested():
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
        await _post_quietly(client, runtime_api.invocation_error(invocation.request_id, failure))

    async def handle(self, client: RuntimeClient, invocation: Invocation) -> None:
        """Serve one invocation and report its outcome. Never raises for the app's or the event's faults."""
        started = time.perf_counter()
        self.invocations += 1
        context = LambdaContext(invocation)
        token = current_context.set(context)
        try:
            try:
                request = _parse(invocation, context, self.config.base_path)
            except EventError as exc:
                logger.error("invocation %s: unusable event: %s", invocation.request_id, exc)
                await _post_quietly(client, runtime_api.invocation_error(invocation.request_id, exc))
                return
            self._set_trace_id(invocation)
            scope = dict(request.scope)
            scope["state"] = dict(self.lifespan.state)
            deadline = self._deadline(invocation)
            if self._streams(request):
                result, stats = await self._stream(client, invocation, request, scope, deadline)
            else:
                result, stats = await self._buffer(client, invocation, request, scope, deadline)
            _log_invocation(request, result, stats, started)
        finally:
            current_context.reset(token)

    async def _stream(
        self,
        client: RuntimeClient,
        invocation: Invocation,
        request: Request,
        scope: dict[str, object],
        deadline: float | None,
    ) -> tuple[CycleResult | None, ResponseStats]:
        post = client.open_stream(runtime_api.streaming_response(invocation.request_id))
        responder: StreamingResponder
        if self.config.padding.mode == "none":
            responder = StreamingResponder(post, request.integration)
        else:
            responder = PaddedStreamingResponder(
                post, request.integration, self.config.padding, self.config.sse
            )
        try:
            result = await HTTPCycle(scope, request.body, responder).run(self.app, deadline=deadline)
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
        scope: dict[str, object],
        deadline: float | None,
    ) -> tuple[CycleResult | None, ResponseStats]:
        responder = BufferedResponder(request.integration, multi_value_headers=request.multi_value_headers)
        result = await HTTPCycle(scope, request.body, responder).run(self.app, deadline=deadline)
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
        # Lambda's runtimes publish the trace id in the environment (protocol.md 1.4); with several
        # concurrent invocations one variable cannot be right, so then it lives only in the context.
        if self.config.max_concurrency != 1:
            return
        if invocation.trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = invocation.trace_id
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)

    def _deadline(self, invocation: Invocation) -> float | None:
        if not invocation.deadline_ms:
            return None
        budget_ms = invocation.remaining_ms() - self.config.timeout_margin_ms
        return anyio.current_time() + max(0, budget_ms) / 1000


def _parse(invocation: Invocation, context: LambdaContext, base_path: str) -> Request:
    try:
        event = json.loads(invocation.event)
    except ValueError as exc:
        raise MalformedEventError("<event>", f"not valid JSON ({exc})") from exc
    try:
        return parse_event(event, context, base_path=base_path)
    except EventError:
        raise
    except Exception as exc:  # a parser gap must cost this event, never the loop
        logger.exception("invocation %s: the event could not be read", invocation.request_id)
        raise MalformedEventError("<event>", f"could not be read ({type(exc).__name__}: {exc})") from exc


async def _post_quietly(client: RuntimeClient, request: APIRequest) -> None:
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


def _log_invocation(
    request: Request, result: CycleResult | None, stats: ResponseStats, started: float
) -> None:
    scope = request.scope
    end = "lost" if result is None else result.end
    if result is not None and result.error is not None:
        end = f"{end}:{type(result.error).__name__}"
        logger.error("app failed: %s", result.error, exc_info=result.error)
    ttfb = (stats.first_byte_at - started) * 1000 if stats.first_byte_at is not None else float("nan")
    logger.info(
        "%s %s %s ttfb=%.1fms time=%.1fms bytes=%d chunks=%d padding=%d end=%s",
        scope.get("method"),
        scope.get("path"),
        stats.status if stats.status is not None else "-",
        ttfb,
        (time.perf_counter() - started) * 1000,
        stats.bytes,
        stats.chunks,
        stats.padding,
        end,
    )
