"""Shell: an httpx transport that runs requests through the Lambda path, streaming.

``LambdaTransport(app)`` builds the event of the chosen integration from each httpx request, parses it
with the same ``events`` code production uses, runs the app through the same :class:`HTTPCycle`,
responders and streaming encoder as the runtime loop, decodes the prelude and streams the body to the
client as the app sends it. Starlette's ``TestClient`` and httpx's ``ASGITransport`` collect the whole
body first; this transport does not: the app's ``send()`` returns only once the client has taken the
chunk, so a test can assert that chunk 1 arrived before the app produced chunk 2.

    async with httpx.AsyncClient(transport=LambdaTransport(app), base_url="https://lambda") as client:
        async with client.stream("GET", "/events") as response:
            async for chunk in response.aiter_raw():
                ...
        info = response.extensions["lambda"]   # LambdaInfo: event, raw prelude, arrival order

A stream that ends with error trailers after the app started its response raises
:class:`StreamTruncatedError` while the body is read (its ``__cause__`` is the app's exception): a test
never mistakes a cut body for a whole one. An app that fails before it starts its response gets the
runtime's complete ``500`` (``504`` at the deadline), as a Lambda client does; ``info.error`` still
records the failed invocation. In ``BUFFERED`` mode a response cut after it started is a whole ``500``
(``504`` at the deadline), never half a body. ``buffering="lambda"`` applies the emulator's hold-back
model (see :mod:`buffering`); ``padding="idle"`` runs the production padding flusher against it.

The async transport runs the app in a task group it opens in the caller's task and closes when the
response is closed, so a streamed response must be closed in the task that opened it, as
``client.stream()`` does. The sync one (``httpx.Client``) runs the app on an event loop in a helper
thread, as Starlette's ``TestClient`` does. Lifespan runs when the client (or the transport) is used as a
context manager, once for all its requests.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread

try:
    import httpx
except ImportError as _exc:  # say what to install, rather than a bare "No module named 'httpx'"
    raise ModuleNotFoundError(
        "lambda_asgi_stream.testing needs httpx, from the local extra: pip install "
        "'lambda-asgi-stream[local]' (in a checkout: pip install -e '.[local]')",
        name=_exc.name,
    ) from _exc

from ._errors import RuntimeAPIError, StreamTruncatedError
from ._types import INTEGRATIONS, STREAMING_INTEGRATIONS, ASGIApp, Headers, Integration
from .buffering import DEFAULT_THRESHOLD, make_release
from .config import InvokeMode
from .cycle import (
    BufferedResponder,
    CycleResult,
    HTTPCycle,
    PlainWriter,
    StreamingResponder,
    current_context,
    make_responder,
)
from .encoder import (
    Prelude,
    PreludeDecoder,
    decode_buffered_response,
    error_payload,
    function_error_type,
    read_error_trailers,
)
from .events import Request, parse_event
from .events.build import build_event
from .lifespan import Lifespan, LifespanMode, make_lifespan
from .padding import PaddingMode, PaddingPolicy
from .runtime_api import Invocation, LambdaContext
from .sse import SSEOptions

_END = object()


@dataclass
class LambdaInfo:
    """What the transport saw of one response: ``response.extensions["lambda"]``.

    Times are ``time.perf_counter()`` values, for ordering (not for wall-clock assertions).
    """

    #: the Lambda event the request became
    event: dict[str, Any]
    #: the parsed request, ``request.scope`` as the app received it (before the app touched it)
    request: Request
    invoke_mode: InvokeMode
    prelude: Prelude | None = None
    #: the prelude exactly as written, delimiter (8 NUL bytes) included; empty in BUFFERED mode
    raw_prelude: bytes = b""
    #: (time, size) of each write the runtime made to the response stream, the prelude's first
    writes: list[tuple[float, int]] = field(default_factory=list)
    #: (time, size) of each piece of body released to the client (after the hold-back model)
    chunks: list[tuple[float, int]] = field(default_factory=list)
    #: (error type, decoded error object) when the invocation failed (trailers, or a failed buffered one)
    error: tuple[str, Any] | None = None
    #: the exception that failed the invocation, when there was one
    exception: BaseException | None = None
    #: how the cycle ended (set once the app has returned)
    result: CycleResult | None = None
    #: the response dict the function returned, in BUFFERED mode
    buffered: dict[str, Any] | None = None


class _ClientGone(RuntimeAPIError):
    """The test client closed the response: the app's next write fails, as on a broken stream."""


class _ChannelWriter(PlainWriter):
    """A StreamWriter into a zero-buffer channel: ``write`` returns once the client took the bytes."""

    def __init__(self, send: anyio.abc.ObjectSendStream[object]) -> None:
        self.send = send

    async def write(self, data: bytes) -> None:
        await self._put(data)

    async def close(self, trailers: Headers) -> None:
        await self._put((_END, trailers))

    async def _put(self, item: object) -> None:
        try:
            await self.send.send(item)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise _ClientGone("the test client closed the response") from exc


class _Observed:
    """The production responder, seen through: did the *app* start its response, and what failed it."""

    def __init__(self, inner: StreamingResponder) -> None:
        self.inner = inner
        self.app_started = False
        self.failure: BaseException | None = None
        self.pads = inner.pads
        self.stats = inner.stats

    @property
    def started(self) -> bool:
        return self.inner.started

    @started.setter
    def started(self, value: bool) -> None:
        self.inner.started = value

    async def start(self, status: int, headers: Headers) -> None:
        await self.inner.start(status, headers)  # may refuse (prelude too large): then the runtime answers
        self.app_started = True

    async def body(self, data: bytes, more: bool) -> None:
        await self.inner.body(data, more)

    async def flush(self) -> None:
        await self.inner.flush()

    async def fail(self, exc: BaseException) -> None:
        self.failure = exc
        await self.inner.fail(exc)

    def close(self) -> None:
        self.inner.close()


class _Exchange:
    """One request's trip through the Lambda path, on the event loop that runs the app."""

    def __init__(self, transport: LambdaTransport, request: httpx.Request, body: bytes) -> None:
        self.transport = transport
        self.event = _event(transport, request, body)
        self.context = _context(transport.timeout)
        self.request = parse_event(self.event, self.context, base_path=transport.base_path)
        self.info = LambdaInfo(self.event, self.request, transport.invoke_mode)
        self.head = request.method == "HEAD"
        self.send, self.receive = anyio.create_memory_object_stream[object](0)
        self.decoder = PreludeDecoder()
        self.release = make_release(transport.buffering, transport.buffer_threshold)
        self.scope = anyio.CancelScope()
        self.responder: _Observed | None = None
        self.finished = False
        self._internal_error: Exception | None = None
        self._pending = b""

    def _scope(self) -> dict[str, Any]:
        scope = dict(self.request.scope)
        scope["state"] = dict(self.transport.lifespan.state)
        return scope

    def _deadline(self) -> float | None:
        timeout = self.transport.timeout
        return None if timeout is None else anyio.current_time() + timeout

    # --- the function's side -------------------------------------------------------------------------

    async def run_buffered(self) -> tuple[int, list[tuple[str, str]], bytes]:
        request = self.request
        responder = BufferedResponder(request.integration, multi_value_headers=request.multi_value_headers)
        cycle = HTTPCycle(self._scope(), request.body, responder)
        token = current_context.set(self.context)
        try:
            self.info.result = await cycle.run(self.transport.app, deadline=self._deadline())
        finally:
            current_context.reset(token)
        self.finished = True
        try:
            # Through JSON, as the runtime posts it: a value JSON cannot carry fails here, not on AWS.
            payload = json.loads(json.dumps(responder.result()))
        except Exception as exc:
            # The runtime reports a failed invocation; Lambda answers the client with 502.
            self._failed(exc)
            return 502, [("content-type", "text/plain; charset=utf-8")], b"Internal Server Error"
        self.info.buffered = payload
        if self.info.result.error is not None:
            self._failed(self.info.result.error)  # the runtime's 500/504, reported as a failure too
        status, headers, content = decode_buffered_response(payload)
        return status, headers, b"" if self.head else content

    def _failed(self, exc: BaseException) -> None:
        self.info.exception = exc
        self.info.error = (function_error_type(exc), error_payload(exc))

    async def run_streaming(self) -> None:
        """Run the cycle; never raises (what goes wrong reaches the reader through the channel)."""
        writer = _ChannelWriter(self.send)
        inner = make_responder(self.request, writer, self.transport.padding, self.transport.sse)
        assert isinstance(inner, StreamingResponder)
        self.responder = _Observed(inner)
        cycle = HTTPCycle(self._scope(), self.request.body, self.responder)
        token = current_context.set(self.context)
        try:
            async with self.send:
                with self.scope:
                    try:
                        self.info.result = await cycle.run(self.transport.app, deadline=self._deadline())
                    except _ClientGone:
                        pass
                    except Exception as exc:
                        self._internal_error = exc
        finally:
            current_context.reset(token)

    def abort(self) -> None:
        """The client left before the end: stop the app (its pending write fails), stop reading."""
        self.finished = True
        self.receive.close()
        self.scope.cancel()

    # --- the client's side ---------------------------------------------------------------------------

    async def _next_item(self) -> object:
        try:
            return await self.receive.receive()
        except anyio.EndOfStream:
            self.finished = True
            if self._internal_error is not None:
                raise self._internal_error from None
            raise StreamTruncatedError(
                "Runtime.TruncatedResponse", "the response stream ended without its last chunk"
            ) from None

    def _note_write(self, data: bytes) -> None:
        self.info.writes.append((time.perf_counter(), len(data)))

    async def read_head(self) -> tuple[int, list[tuple[str, str]]]:
        raw = b""
        while self.decoder.prelude is None:
            item = await self._next_item()
            if not isinstance(item, bytes):
                self.finished = True
                self._check_end(item)
                raise StreamTruncatedError("Runtime.NoPrelude", "the stream ended before the prelude")
            self._note_write(item)
            raw += item
            self._pending = self.decoder.feed(item)
        prelude = self.decoder.prelude
        self.info.prelude = prelude
        self.info.raw_prelude = raw[: len(raw) - len(self._pending)]
        return prelude.status, [*prelude.headers, *(("set-cookie", c) for c in prelude.cookies)]

    async def next_chunk(self) -> bytes | None:
        """The next body bytes released to the client; None at a clean end."""
        while (data := await self._next_released()) is not None:
            if not self.head:  # an HTTP client never reads a body after HEAD (the app may send one)
                self.info.chunks.append((time.perf_counter(), len(data)))
                return data
        return None

    async def _next_released(self) -> bytes | None:
        pending, self._pending = self._pending, b""
        if pending and (released := self.release.feed(pending)):
            return released
        while not self.finished:
            item = await self._next_item()
            if isinstance(item, bytes):
                self._note_write(item)
                if released := self.release.feed(item):
                    return released
                continue
            self.finished = True
            self._check_end(item)
            if rest := self.release.end():
                return rest
        return None

    def _check_end(self, item: object) -> None:
        """The stream's end: raise StreamTruncatedError if its trailers say the app failed mid-response."""
        assert isinstance(item, tuple) and item[0] is _END
        error = read_error_trailers(item[1])
        if error is None:
            return
        responder = self.responder
        self.info.error = error
        self.info.exception = responder.failure if responder is not None else None
        if responder is not None and not responder.app_started:
            return  # the runtime answered for the app (500, or 504 at the deadline): a whole response
        # Held bytes are dropped, as the emulator does: Lambda cuts the client's connection.
        self.release.end()
        detail = error[1].get("errorMessage", error[1]) if isinstance(error[1], dict) else error[1]
        raise StreamTruncatedError(error[0], detail) from self.info.exception


def _context(timeout: float | None) -> LambdaContext:
    deadline_ms = int((time.time() + (900.0 if timeout is None else timeout)) * 1000)
    invocation = Invocation(
        request_id=f"test-{time.monotonic_ns()}",
        deadline_ms=deadline_ms,
        event=b"",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:test",
    )
    return LambdaContext(
        invocation, {"AWS_LAMBDA_FUNCTION_NAME": "test", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128"}
    )


def _event(transport: LambdaTransport, request: httpx.Request, body: bytes) -> dict[str, Any]:
    url = request.url
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    return build_event(
        transport.integration,
        method=request.method,
        path=url.raw_path.split(b"?", 1)[0].decode("ascii"),
        query_string=url.query.decode("ascii"),
        headers=headers,
        body=body,
        host=url.netloc.decode("ascii"),
        scheme=url.scheme,
    )


class _AsyncBody(httpx.AsyncByteStream):
    def __init__(self, exchange: _Exchange, group: anyio.abc.TaskGroup) -> None:
        self.exchange = exchange
        self.group = group
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self.exchange.next_chunk()) is not None:
            yield chunk

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.exchange.finished:
            self.exchange.abort()
        await self.group.__aexit__(None, None, None)  # waits for the app (and its background tasks)


class _SyncBody(httpx.SyncByteStream):
    def __init__(self, exchange: _Exchange, portal: _Portal, done: Any) -> None:
        self.exchange = exchange
        self.portal = portal
        self.done = done
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        while (chunk := self.portal.portal.call(self.exchange.next_chunk)) is not None:
            yield chunk

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if not self.exchange.finished:
                self.portal.portal.call(_abort, self.exchange)
            self.done.result()
        finally:
            self.portal.release()


async def _abort(exchange: _Exchange) -> None:
    exchange.abort()


async def _make_exchange(transport: LambdaTransport, request: httpx.Request, body: bytes) -> _Exchange:
    # Cancel scopes and events belong to the loop that uses them: build the exchange on the portal's loop.
    return _Exchange(transport, request, body)


class _Portal:
    """A blocking portal: the transport's own (``with`` block) or one per request, stopped after it."""

    def __init__(self, per_request: bool) -> None:
        self.per_request = per_request
        self._cm: AbstractContextManager[anyio.from_thread.BlockingPortal] = (
            anyio.from_thread.start_blocking_portal()
        )
        self.portal = self._cm.__enter__()

    def release(self) -> None:
        if self.per_request:
            self.stop()

    def stop(self) -> None:
        # Cancel what is left (a response the caller never closed) rather than wait for it for ever.
        try:
            self.portal.call(self.portal.stop, True)
        finally:
            self._cm.__exit__(None, None, None)


def _wire(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    # As bytes: httpx would encode str values as ASCII and fail on "€". UTF-8 is what Lambda writes out
    # for the prelude's JSON strings, and what the emulator sends.
    return [(name.encode("latin-1"), value.encode("utf-8")) for name, value in headers]


class LambdaTransport(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """An httpx transport (async and sync) that serves requests through the Lambda streaming path.

    >>> transport = LambdaTransport(app, integration="function-url", buffering="lambda")  # doctest: +SKIP
    >>> client = httpx.AsyncClient(transport=transport, base_url="https://lambda")         # doctest: +SKIP

    ``integration``: the event format (``function-url``, ``http-api``, ``rest``, ``alb``).
    ``invoke_mode``: ``RESPONSE_STREAM`` or ``BUFFERED``; by default streamed where Lambda can stream
    (Function URL, REST), buffered elsewhere (HTTP API, ALB). ``buffering``: ``off`` gives each write to
    the client at once; ``lambda`` holds writes back until ``buffer_threshold`` bytes are pending or the
    response ends, like the service. ``padding``: the runtime's padding policy (a mode, sized to
    ``buffer_threshold``, or a :class:`PaddingPolicy`); production's default is ``idle``, this one's is
    ``none`` so bodies hold only what the app wrote. ``timeout``: the invocation's time limit, seconds
    (``None``: no limit). ``base_path``: as ``LAMBDA_ASGI_STREAM_BASE_PATH``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        integration: Integration = "function-url",
        invoke_mode: InvokeMode | None = None,
        buffering: str = "off",
        buffer_threshold: int = DEFAULT_THRESHOLD,
        padding: PaddingMode | PaddingPolicy = "none",
        sse: SSEOptions | None = None,
        base_path: str = "",
        timeout: float | None = None,
        lifespan: LifespanMode = "auto",
    ) -> None:
        if integration not in INTEGRATIONS:
            raise ValueError(f"integration must be one of {', '.join(INTEGRATIONS)}, not {integration!r}")
        if invoke_mode is None:
            invoke_mode = "RESPONSE_STREAM" if integration in STREAMING_INTEGRATIONS else "BUFFERED"
        if invoke_mode not in ("RESPONSE_STREAM", "BUFFERED"):
            raise ValueError(f"invoke_mode must be RESPONSE_STREAM or BUFFERED, not {invoke_mode!r}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        make_release(buffering, buffer_threshold)  # validate early
        self.app = app
        self.integration: Integration = integration
        self.invoke_mode: InvokeMode = invoke_mode
        self.buffering = buffering
        self.buffer_threshold = buffer_threshold
        self.padding = (
            padding
            if isinstance(padding, PaddingPolicy)
            else PaddingPolicy(padding, threshold=buffer_threshold)
        )
        self.sse = sse or SSEOptions()
        self.base_path = base_path
        self.timeout = timeout
        self.lifespan: Lifespan = make_lifespan(app, lifespan)
        self._lifespan_open = False
        self._portal: _Portal | None = None
        self._lifespan_done: Any = None
        self._lifespan_stop: anyio.Event | None = None

    # --- async ---------------------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        exchange = _Exchange(self, request, await request.aread())
        extensions = {"lambda": exchange.info, "http_version": b"HTTP/1.1"}
        if self.invoke_mode == "BUFFERED":
            status, headers, body = await exchange.run_buffered()
            return httpx.Response(status, headers=_wire(headers), content=body, extensions=extensions)
        group = anyio.create_task_group()
        await group.__aenter__()
        group.start_soon(exchange.run_streaming)
        try:
            status, headers = await exchange.read_head()
        except BaseException:
            exchange.abort()
            await group.__aexit__(None, None, None)
            raise
        stream = _AsyncBody(exchange, group)
        return httpx.Response(status, headers=_wire(headers), stream=stream, extensions=extensions)

    async def __aenter__(self) -> LambdaTransport:
        await self.lifespan.startup()
        self._lifespan_open = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._lifespan_open:
            self._lifespan_open = False
            await self.lifespan.shutdown()

    # --- sync ----------------------------------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        portal = self._portal or _Portal(per_request=True)
        done: Any = None
        try:
            exchange = portal.portal.call(_make_exchange, self, request, body)
            extensions = {"lambda": exchange.info, "http_version": b"HTTP/1.1"}
            if self.invoke_mode == "BUFFERED":
                status, headers, content = portal.portal.call(exchange.run_buffered)
                portal.release()
                return httpx.Response(status, headers=_wire(headers), content=content, extensions=extensions)
            done = portal.portal.start_task_soon(exchange.run_streaming)
            status, headers = portal.portal.call(exchange.read_head)
        except BaseException:
            if done is not None:
                portal.portal.call(_abort, exchange)
                done.result()
            portal.release()
            raise
        stream = _SyncBody(exchange, portal, done)
        return httpx.Response(status, headers=_wire(headers), stream=stream, extensions=extensions)

    def __enter__(self) -> LambdaTransport:
        if self._portal is not None:
            raise RuntimeError("this LambdaTransport is already open")
        portal = self._portal = _Portal(per_request=False)
        ready: anyio.Event = portal.portal.call(_new_event)
        self._lifespan_stop = portal.portal.call(_new_event)
        errors: list[BaseException] = []
        self._lifespan_done = portal.portal.start_task_soon(self._hold_lifespan, ready, errors)
        portal.portal.call(ready.wait)
        if errors:
            self.close()
            raise errors[0]
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _hold_lifespan(self, ready: anyio.Event, errors: list[BaseException]) -> None:
        stop = self._lifespan_stop
        assert stop is not None
        try:
            try:
                await self.lifespan.startup()
            except Exception as exc:  # StartupError, or a bug: either way __enter__ raises it
                errors.append(exc)
            else:
                ready.set()
                await stop.wait()
                await self.lifespan.shutdown()
        finally:
            ready.set()

    def close(self) -> None:
        portal, self._portal = self._portal, None
        if portal is None:
            return
        try:
            if self._lifespan_stop is not None:
                portal.portal.call(self._lifespan_stop.set)
                self._lifespan_done.result()
        finally:
            self._lifespan_stop = self._lifespan_done = None
            portal.stop()


async def _new_event() -> anyio.Event:
    return anyio.Event()
