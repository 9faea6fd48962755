"""Shell: an httpx transport that runs requests through the Lambda path, streaming.

``LambdaTransport(app)`` builds the event of the chosen integration from each httpx request, parses it
with the same ``events`` code production uses, runs the app through the same :class:`HTTPCycle` and
streaming encoder, decodes the prelude and streams the body to the client as the app sends it. Starlette's
``TestClient`` and httpx's ``ASGITransport`` collect the whole body first; this transport does not: the
app's ``send()`` returns only once the client has taken the chunk, so a test can assert that chunk 1
arrived before the app produced chunk 2.

    async with httpx.AsyncClient(transport=LambdaTransport(app), base_url="https://lambda") as client:
        async with client.stream("GET", "/events") as response:
            async for chunk in response.aiter_raw():
                ...
        info = response.extensions["lambda"]   # LambdaInfo: raw prelude, arrival times

A stream that ends with error trailers raises :class:`StreamTruncatedError` while the body is read (its
``__cause__`` is the app's exception): a test never mistakes a cut body for a whole one.
``buffering="lambda"`` applies the same hold-back model as the emulator (see :mod:`buffering`).

The async transport runs the app on the caller's event loop; the sync one (``httpx.Client``) runs it on a
private loop in a helper thread, as Starlette's ``TestClient`` does. Lifespan runs when the transport is
used as a context manager (``async with LambdaTransport(app) as transport``), once for all requests.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import httpx

from ._errors import StartupError, StreamTruncatedError
from ._types import ASGIApp, Headers, Integration
from .buffering import DEFAULT_THRESHOLD, make_release
from .cycle import BufferedResponder, CycleResult, HTTPCycle, StreamingResponder
from .encoder import Prelude, PreludeDecoder, decode_buffered_response, read_error_trailers
from .events import parse_event
from .events.build import build_event
from .lifespan import Lifespan, LifespanMode, make_lifespan
from .runtime_api import Invocation, LambdaContext

_END = object()


@dataclass
class LambdaInfo:
    """What the transport saw of one response: ``response.extensions["lambda"]``."""

    event: dict[str, Any]
    prelude: Prelude | None = None
    raw_prelude: bytes = b""
    #: (perf_counter time, size) of each write the app made, as it reached the transport
    writes: list[tuple[float, int]] = field(default_factory=list)
    #: (perf_counter time, size) of each piece released to the client (after the hold-back model)
    chunks: list[tuple[float, int]] = field(default_factory=list)
    error: tuple[str, Any] | None = None
    result: CycleResult | None = None


class _ChannelWriter:
    """A StreamWriter into a zero-buffer channel: ``write`` returns once the client took the bytes."""

    def __init__(self, send: anyio.abc.ObjectSendStream[Any]) -> None:
        self.send = send

    async def write(self, data: bytes) -> None:
        await self.send.send(data)

    async def close(self, trailers: Headers) -> None:
        await self.send.send((_END, trailers))


class _Exchange:
    """One request's trip through the Lambda path, on the loop that runs the app."""

    def __init__(self, transport: LambdaTransport, request: httpx.Request, body: bytes) -> None:
        self.transport = transport
        self.event = _event(transport, request, body)
        self.info = LambdaInfo(self.event)
        self.send, self.receive = anyio.create_memory_object_stream[Any](0)
        self.decoder = PreludeDecoder()
        self.release = make_release(transport.buffering, transport.buffer_threshold)
        self.finished = False
        self._pending_body = b""

    def _cycle(self) -> tuple[HTTPCycle, Any, float | None]:
        context = _context(self.transport.timeout)
        parsed = parse_event(self.event, context, base_path=self.transport.base_path)
        scope = dict(parsed.scope)
        scope["state"] = dict(self.transport.lifespan.state)
        deadline = None if self.transport.timeout is None else anyio.current_time() + self.transport.timeout
        responder: Any
        if self.transport.invoke_mode == "BUFFERED":
            responder = BufferedResponder(parsed.integration, multi_value_headers=parsed.multi_value_headers)
        else:
            responder = StreamingResponder(_ChannelWriter(self.send), parsed.integration)
        return HTTPCycle(scope, parsed.body, responder), responder, deadline

    async def run_buffered(self) -> tuple[int, list[tuple[str, str]], bytes]:
        cycle, responder, deadline = self._cycle()
        self.info.result = await cycle.run(self.transport.app, deadline=deadline)
        try:
            payload = responder.result()
        except Exception as exc:
            # Lambda answers a failed buffered invocation with 502 (Function URL, API Gateway proxy).
            self.info.error = (type(exc).__name__, str(exc))
            return 502, [("content-type", "text/plain")], b"Internal Server Error"
        self.info.raw_prelude = b""
        return decode_buffered_response(payload)

    async def run_streaming(self) -> None:
        async with self.send:
            cycle, _, deadline = self._cycle()
            self.info.result = await cycle.run(self.transport.app, deadline=deadline)

    async def read_head(self) -> tuple[int, list[tuple[str, str]]]:
        while self.decoder.prelude is None:
            item = await self.receive.receive()
            if not isinstance(item, bytes):
                raise StreamTruncatedError("Runtime.NoPrelude", "the stream ended before the prelude")
            self._note_write(item)
            self.info.raw_prelude += item
            rest = self.decoder.feed(item)
            if self.decoder.prelude is not None:
                self.info.raw_prelude = self.info.raw_prelude[: len(self.info.raw_prelude) - len(rest)]
                self._pending_body = rest
        prelude = self.decoder.prelude
        self.info.prelude = prelude
        return prelude.status, [*prelude.headers, *(("set-cookie", c) for c in prelude.cookies)]

    async def next_chunk(self) -> bytes | None:
        """The next bytes released to the client; None at a clean end."""
        pending, self._pending_body = self._pending_body, b""
        if pending:
            released = self.release.feed(pending)
            if released:
                return self._note_chunk(released)
        while not self.finished:
            try:
                item = await self.receive.receive()
            except anyio.EndOfStream:
                item = (_END, [])
            if isinstance(item, bytes):
                self._note_write(item)
                released = self.release.feed(item)
                if released:
                    return self._note_chunk(released)
                continue
            self.finished = True
            rest = self.release.end()
            self._check_trailers(item[1])
            if rest:
                return self._note_chunk(rest)
        return None

    def _check_trailers(self, trailers: Headers) -> None:
        error = read_error_trailers(trailers)
        if error is None:
            return
        self.info.error = error
        detail = error[1].get("errorMessage", error[1]) if isinstance(error[1], dict) else error[1]
        exc = StreamTruncatedError(error[0], detail)
        result = self.info.result
        if result is not None and result.error is not None:
            raise exc from result.error
        raise exc

    def _note_write(self, data: bytes) -> None:
        self.info.writes.append((time.perf_counter(), len(data)))

    def _note_chunk(self, data: bytes) -> bytes:
        self.info.chunks.append((time.perf_counter(), len(data)))
        return data


def _context(timeout: float | None) -> LambdaContext:
    deadline_ms = int((time.time() + (timeout or 900.0)) * 1000)
    invocation = Invocation(request_id=f"test-{time.monotonic_ns()}", deadline_ms=deadline_ms, event=b"")
    return LambdaContext(invocation, {"AWS_LAMBDA_FUNCTION_NAME": "test"})


def _event(transport: LambdaTransport, request: httpx.Request, body: bytes) -> dict[str, Any]:
    url = request.url
    host = url.netloc.decode("ascii")
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    if not any(k.lower() == "x-forwarded-proto" for k, _ in headers):
        headers.append(("x-forwarded-proto", url.scheme))
    return build_event(
        transport.integration,
        method=request.method,
        path=url.raw_path.split(b"?", 1)[0].decode("ascii"),
        query_string=url.query.decode("ascii"),
        headers=headers,
        body=body,
        host=host,
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
            self.group.cancel_scope.cancel()  # the client left early: stop the app rather than hang
        await self.exchange.receive.aclose()
        await self.group.__aexit__(None, None, None)


class _SyncBody(httpx.SyncByteStream):
    def __init__(self, exchange: _Exchange, portal: anyio.from_thread.BlockingPortal, done: Any) -> None:
        self.exchange = exchange
        self.portal = portal
        self.done = done

    def __iter__(self) -> Iterator[bytes]:
        while (chunk := self.portal.call(self.exchange.next_chunk)) is not None:
            yield chunk

    def close(self) -> None:
        if not self.exchange.finished:
            self.done.cancel()
        with contextlib.suppress(Exception):
            self.portal.call(self.exchange.receive.aclose)
        with contextlib.suppress(BaseException):
            self.done.result(timeout=30)


class LambdaTransport(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """An httpx transport (async and sync) that serves requests through the Lambda streaming path.

    >>> transport = LambdaTransport(app, integration="function-url", buffering="lambda")  # doctest: +SKIP
    >>> client = httpx.AsyncClient(transport=transport, base_url="https://lambda")         # doctest: +SKIP
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        integration: Integration = "function-url",
        invoke_mode: str = "RESPONSE_STREAM",
        buffering: str = "off",
        buffer_threshold: int = DEFAULT_THRESHOLD,
        base_path: str = "",
        timeout: float | None = None,
        lifespan: LifespanMode = "auto",
    ) -> None:
        if invoke_mode not in ("RESPONSE_STREAM", "BUFFERED"):
            raise ValueError(f"invoke_mode must be RESPONSE_STREAM or BUFFERED, not {invoke_mode!r}")
        make_release(buffering, buffer_threshold)  # validate early
        self.app = app
        self.integration = integration
        self.invoke_mode = invoke_mode
        self.buffering = buffering
        self.buffer_threshold = buffer_threshold
        self.base_path = base_path
        self.timeout = timeout
        self.lifespan: Lifespan = make_lifespan(app, lifespan)
        self._lifespan_group: anyio.abc.TaskGroup | None = None
        self._portal_cm: Any = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._startup_error: StartupError | None = None

    # --- async ---------------------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        exchange = _Exchange(self, request, await request.aread())
        if self.invoke_mode == "BUFFERED":
            status, headers, body = await exchange.run_buffered()
            return httpx.Response(status, headers=headers, content=body, extensions={"lambda": exchange.info})
        group = anyio.create_task_group()
        await group.__aenter__()
        group.start_soon(exchange.run_streaming)
        try:
            status, headers = await exchange.read_head()
        except BaseException:
            group.cancel_scope.cancel()
            await group.__aexit__(None, None, None)
            raise
        return httpx.Response(
            status, headers=headers, stream=_AsyncBody(exchange, group), extensions={"lambda": exchange.info}
        )

    async def __aenter__(self) -> LambdaTransport:
        group = anyio.create_task_group()
        await group.__aenter__()
        try:
            await self.lifespan.startup(group)
        except BaseException:
            group.cancel_scope.cancel()
            await group.__aexit__(None, None, None)
            raise
        self._lifespan_group = group
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        group, self._lifespan_group = self._lifespan_group, None
        if group is not None:
            await self.lifespan.shutdown()
            group.cancel_scope.cancel()
            await group.__aexit__(None, None, None)

    # --- sync ----------------------------------------------------------------------------------------

    def _sync_portal(self) -> anyio.from_thread.BlockingPortal:
        if self._portal is None:
            self._portal_cm = anyio.from_thread.start_blocking_portal()
            self._portal = self._portal_cm.__enter__()
        return self._portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        portal = self._sync_portal()
        body = request.read()
        exchange: _Exchange = portal.call(_make_exchange, self, request, body)
        if self.invoke_mode == "BUFFERED":
            status, headers, content = portal.call(exchange.run_buffered)
            return httpx.Response(
                status, headers=headers, content=content, extensions={"lambda": exchange.info}
            )
        done = portal.start_task_soon(exchange.run_streaming)
        try:
            status, headers = portal.call(exchange.read_head)
        except BaseException:
            done.cancel()
            raise
        return httpx.Response(
            status,
            headers=headers,
            stream=_SyncBody(exchange, portal, done),
            extensions={"lambda": exchange.info},
        )

    def __enter__(self) -> LambdaTransport:
        portal = self._sync_portal()
        portal.call(self._make_events)
        self._lifespan_future = portal.start_task_soon(self._hold_lifespan)
        try:
            portal.call(self._wait_started)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _hold_lifespan(self) -> None:
        async with anyio.create_task_group() as group:
            try:
                await self.lifespan.startup(group)
            except StartupError as exc:
                self._startup_error = exc
            else:
                self._lifespan_ready.set()
                await self._lifespan_stop.wait()
                await self.lifespan.shutdown()
            self._lifespan_ready.set()
            group.cancel_scope.cancel()

    async def _make_events(self) -> None:
        self._lifespan_stop = anyio.Event()
        self._lifespan_ready = anyio.Event()

    async def _wait_started(self) -> None:
        await self._lifespan_ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    def close(self) -> None:
        portal, self._portal = self._portal, None
        if portal is None:
            return
        if hasattr(self, "_lifespan_stop"):
            portal.call(self._lifespan_stop.set)
            with contextlib.suppress(BaseException):
                self._lifespan_future.result(timeout=30)
        self._portal_cm.__exit__(None, None, None)


async def _make_exchange(transport: LambdaTransport, request: httpx.Request, body: bytes) -> _Exchange:
    # Memory streams belong to the loop that uses them: build the exchange on the portal's loop.
    return _Exchange(transport, request, body)
