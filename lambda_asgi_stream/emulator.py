"""Shell: run an app locally exactly as Lambda runs it (``lambda-asgi-stream serve MODULE:APP``).

Three parts, as in Lambda:

* **sandboxes**: each is a child process running our own runtime loop (``python -m lambda_asgi_stream run``)
  against its own loopback Runtime API server (:class:`~lambda_asgi_stream.local_api.LocalRuntimeAPI`), the
  way Lambda starts an execution environment. One invocation at a time per sandbox; ``--concurrency N``
  runs N of them. A sandbox that dies is restarted; its in-flight invocation fails as Lambda's would. An
  app that fails its init (import error) is retried on the next request only, never in a loop.
* **the front door**: a plain HTTP server (uvicorn) that turns each request into the event of the chosen
  integration (``events.build``), hands it to a free sandbox, decodes the prelude and streams the body to
  the client as it arrives, through the models of :mod:`~lambda_asgi_stream.buffering` (Lambda's
  hold-back of small writes, its bandwidth cap).
* **the limits** users trip over, enforced and explained: the function timeout (the sandbox is killed, as
  Lambda does), 6 MB buffered responses, the 200 MB streamed cap, the 16 KiB prelude, 6 MB request bodies.

What the client sees when an invocation fails (protocol.md 6.5): before the response started, a ``502``;
after it, the status is committed, so the body is cut (whatever the service still held is sent, then the
connection is closed without the final chunk). Either way the error is printed on the console.

One line is logged per request: ``METHOD PATH STATUS ttfb= time= bytes= chunks= padding= end=``, where
``bytes`` and ``chunks`` count what reached the client (after the hold-back model), ``padding`` the bytes
of it that were the runtime's padding, and ``end`` is ``complete``, ``client-gone`` or ``error:TYPE``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._errors import LambdaAsgiStreamError, ResponseTooLargeError
from ._types import Integration, Message, Receive, Scope, Send
from .buffering import MAX_STREAMED_BYTES, Bandwidth, make_release
from .config import ENV_LOG_LEVEL
from .encoder import (
    HOP_BY_HOP,
    MAX_PRELUDE_BYTES,
    PreludeDecoder,
    decode_buffered_response,
)
from .events.build import build_event
from .local_api import (
    BufferedResult,
    InvocationEvent,
    InvocationFailed,
    LocalRuntimeAPI,
    StreamData,
    StreamEnd,
)
from .padding import padding_alphabet
from .runtime_api import encode_buffered

logger = logging.getLogger("lambda_asgi_stream.emulator")

MAX_REQUEST_BYTES = 6 * 1024 * 1024  # synchronous invoke payload limit (Lambda quotas)
#: How long a request waits for a (re)starting runtime to take it, on top of the function timeout.
INIT_ALLOWANCE_S = 10.0
_RESTART_BACKOFF = (0.0, 0.5, 1.0, 2.0, 5.0)
_STOP_GRACE_S = 2.0
_PREFIX = "lambda-asgi-stream:"


@dataclass(frozen=True)
class EmulatorOptions:
    """Settings of ``serve``; each is a command-line flag of the same name."""

    app: str
    host: str = "127.0.0.1"
    port: int = 9000
    integration: Integration = "function-url"
    invoke_mode: str = "RESPONSE_STREAM"
    buffering: str = "lambda"
    buffer_threshold: int = 100 * 1024
    timeout: float = 30.0
    bandwidth: bool = False
    reload: bool = False
    concurrency: int = 1
    environ: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.invoke_mode not in ("RESPONSE_STREAM", "BUFFERED"):
            raise ValueError(f"invoke mode must be RESPONSE_STREAM or BUFFERED, not {self.invoke_mode!r}")
        make_release(self.buffering, self.buffer_threshold)  # raises ValueError on a bad mode/threshold
        if not self.timeout > 0 or math.isinf(self.timeout):
            raise ValueError(f"the timeout must be a positive number of seconds, not {self.timeout}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {self.concurrency}")


def _say(text: str) -> None:
    """A plain line on the console (stderr), for what the user must notice."""
    print(f"{_PREFIX} {text}", file=sys.stderr, flush=True)


# --- sandboxes --------------------------------------------------------------------------------------


class Sandbox:
    """One execution environment: a Runtime API server and the child process that polls it."""

    def __init__(self, index: int, options: EmulatorOptions) -> None:
        self.index = index
        self.options = options
        self.api = LocalRuntimeAPI(
            function_arn=f"arn:aws:lambda:us-east-1:000000000000:function:local-{index}"
        )
        self.address = ""
        self.process: anyio.abc.Process | None = None
        self.init_error: str | None = None
        # Held while a request uses the sandbox (released by whichever task finishes with it), and by a
        # restart, which so waits for the current request.
        self.lock = anyio.Semaphore(1)
        self._kill_reason: tuple[str, str] | None = None
        self._closing = False
        self._demand = anyio.Event()
        self._restart = anyio.Event()
        self._stopped = anyio.Event()  # set when the current child has exited and been accounted for
        self._stopped.set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as group:
            self.address = await group.start(self.api.serve, "127.0.0.1", 0)
            task_status.started()
            failures = 0
            while not self._closing:
                started = time.monotonic()
                polls_before = self.api.next_calls
                code = await self._run_child()
                deliberate = self._kill_reason is not None or self._restart.is_set() or self._closing
                if self.init_error is None and not deliberate and self.api.next_calls == polls_before:
                    # Died before asking for an invocation, without reporting why (e.g. os._exit or a
                    # crash at import): an init failure too, and retried the same way.
                    self.init_error = (
                        f"the runtime exited with code {code} before asking for an invocation "
                        "(see its output above)"
                    )
                await self._after_exit(code)
                if self._closing:
                    return
                if self.init_error is not None:
                    failures = 0
                    await self._wait_for_demand()
                    continue
                if deliberate:
                    failures = 0
                    continue
                failures = failures + 1 if time.monotonic() - started < 10 else 1
                await self._pause(_RESTART_BACKOFF[min(failures, len(_RESTART_BACKOFF)) - 1])

    def _child_env(self) -> dict[str, str]:
        env = {**os.environ, **self.options.environ}
        # The front door logs one line per request; the runtime's own line would repeat it.
        env.setdefault(ENV_LOG_LEVEL, "WARNING")
        env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": self.address,
                "LAMBDA_ASGI_STREAM_INVOKE_MODE": self.options.invoke_mode,
                "AWS_LAMBDA_FUNCTION_NAME": "local",
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(max(1, math.ceil(self.options.timeout))),
                "AWS_LAMBDA_MAX_CONCURRENCY": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.pop("_X_AMZN_TRACE_ID", None)
        return env

    async def _run_child(self) -> int:
        command = [sys.executable, "-m", "lambda_asgi_stream", "run", self.options.app]
        self.init_error = None
        errors_before = len(self.api.init_errors)
        self._restart = anyio.Event()
        self._stopped = anyio.Event()
        # stdout/stderr are inherited: the app's output shows on the console, as it would in CloudWatch.
        async with await anyio.open_process(
            command, env=self._child_env(), stdout=None, stderr=None
        ) as process:
            self.process = process
            logger.info("sandbox %d: runtime started (pid %d)", self.index, process.pid)
            code = await process.wait()
        self.process = None
        if len(self.api.init_errors) > errors_before:
            failed = self.api.init_errors[-1]
            self.init_error = f"{failed.error_type}: {_message(failed.payload)}"
        return code

    async def _after_exit(self, code: int) -> None:
        try:
            if self._kill_reason is not None:
                error_type, message = self._kill_reason
                self._kill_reason = None
            elif self.init_error is not None:
                error_type, message = "Runtime.InitError", self.init_error
                retry = "the next request tries again" + ("" if self.options.reload else " (or use --reload)")
                _say(f"the app failed to start: {self.init_error}\n{_PREFIX} requests get 502; {retry}")
            else:
                error_type, message = "Runtime.ExitError", f"the runtime exited with code {code}"
                if not self._restart.is_set() and not self._closing:
                    _say(f"sandbox {self.index}: {message}; starting a new one")
            # After an init failure every queued request fails (Lambda would retry the init per request,
            # and fail each the same way); otherwise queued requests wait for the next runtime.
            await self.api.abort(
                error_type, message, taken_only=self.init_error is None and not self._closing
            )
        finally:
            self._stopped.set()

    async def _wait_for_demand(self) -> None:
        # Lambda retries a failed init on the next invocation; so do we, instead of spinning.
        self._demand = anyio.Event()
        if self.api.in_flight():
            return
        async with anyio.create_task_group() as group:

            async def wake(event: anyio.Event) -> None:
                await event.wait()
                group.cancel_scope.cancel()

            group.start_soon(wake, self._demand)
            group.start_soon(wake, self._restart)

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            with anyio.move_on_after(seconds):
                await self._restart.wait()

    async def kill(self, error_type: str, message: str) -> None:
        """Stop the runtime at once (SIGKILL, as Lambda does at a timeout) and wait until it is gone."""
        process, stopped = self.process, self._stopped
        if process is None or process.returncode is not None:
            return
        self._kill_reason = (error_type, message)
        process.kill()
        await stopped.wait()

    async def restart(self) -> None:
        """Replace the runtime process (after a code change), once its current request is done."""
        async with self.lock:
            process, stopped = self.process, self._stopped
            self._restart.set()
            if process is not None and process.returncode is None:
                process.terminate()
                with anyio.move_on_after(_STOP_GRACE_S) as slow:
                    await stopped.wait()
                if slow.cancelled_caught and process.returncode is None:
                    process.kill()
                    await stopped.wait()

    async def stop(self) -> None:
        """Shut the runtime down (SIGTERM, then SIGKILL) and start no other; unfinished requests fail."""
        self._closing = True
        self._demand.set()
        self._restart.set()
        process, stopped = self.process, self._stopped
        if process is not None and process.returncode is None:
            self._kill_reason = ("Runtime.ExitError", "the emulator is shutting down")
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            with anyio.move_on_after(_STOP_GRACE_S):
                await stopped.wait()
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                with anyio.move_on_after(_STOP_GRACE_S):
                    await stopped.wait()
        await self.api.abort("Runtime.ExitError", "the emulator is shutting down")

    def invoke(
        self, event: bytes, timeout: float, on_taken: Callable[[], None]
    ) -> AsyncIterator[InvocationEvent]:
        self._demand.set()
        return self.api.invoke(event, timeout_s=timeout, on_taken=on_taken)


class SandboxPool:
    """Hands out idle sandboxes; a request waits when all are busy (Lambda would scale out)."""

    def __init__(self, sandboxes: list[Sandbox]) -> None:
        self.sandboxes = sandboxes
        self._send: MemoryObjectSendStream[Sandbox]
        self._receive: MemoryObjectReceiveStream[Sandbox]
        self._send, self._receive = anyio.create_memory_object_stream[Sandbox](len(sandboxes))
        for sandbox in sandboxes:
            self._send.send_nowait(sandbox)
        self._told = False

    async def acquire(self) -> Sandbox:
        """A free sandbox, locked for the caller."""
        try:
            sandbox = self._receive.receive_nowait()
        except anyio.WouldBlock:
            if not self._told:
                self._told = True
                logger.info(
                    "all %d sandboxes are busy: requests wait (Lambda would start more; see --concurrency)",
                    len(self.sandboxes),
                )
            sandbox = await self._receive.receive()
        try:
            await sandbox.lock.acquire()
        except BaseException:
            self._send.send_nowait(sandbox)
            raise
        return sandbox

    def release(self, sandbox: Sandbox) -> None:
        sandbox.lock.release()
        self._send.send_nowait(sandbox)


# --- the front door ----------------------------------------------------------------------------------


class _StreamCut(Exception):
    """Raised from the front door to make the HTTP server drop the connection mid-body."""


@dataclass
class _Log:
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    status: int | None = None
    first_byte: float | None = None
    bytes: int = 0
    chunks: int = 0
    padding: int = 0
    end: str = "cancelled"

    def line(self) -> str:
        ttfb = "-" if self.first_byte is None else f"{(self.first_byte - self.started) * 1000:.1f}ms"
        total = (time.perf_counter() - self.started) * 1000
        return (
            f"{self.method} {self.path} {self.status if self.status is not None else '-'} "
            f"ttfb={ttfb} time={total:.1f}ms bytes={self.bytes} chunks={self.chunks} "
            f"padding={self.padding} end={self.end}"
        )


class FrontDoor:
    """The ASGI app uvicorn serves: HTTP request -> Lambda event -> sandbox -> HTTP response.

    ``tasks`` runs the work that outlives a client's response: a sandbox still streaming after the client's
    response was ended early (a limit) is drained there before it serves the next request.
    """

    def __init__(
        self, pool: SandboxPool, options: EmulatorOptions, tasks: anyio.abc.TaskGroup, *, port: int = 0
    ) -> None:
        self.pool = pool
        self.options = options
        self.tasks = tasks
        self.port = port or options.port
        self.closing = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        query = scope["query_string"].decode("latin-1")
        log = _Log(scope["method"], scope["path"] + ("?" + query if query else ""))
        try:
            cut = await self._serve(scope, receive, send, log)
        finally:
            logger.info("%s", log.line())
        if cut:
            raise _StreamCut(log.end)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, log: _Log) -> bool:
        if self.closing:
            log.status, log.end = 503, "shutting-down"
            await _plain(send, 503, "The emulator is shutting down\n")
            return False
        body = await _read_body(receive)
        if body is None:
            log.status, log.end = 413, "error:RequestTooLarge"
            _say(f"{log.method} {log.path}: request body over Lambda's 6 MB invoke payload limit; sent 413")
            await _plain(
                send, 413, f"Request body over Lambda's {MAX_REQUEST_BYTES} byte invoke payload limit\n"
            )
            return False
        event = json.dumps(self._event(scope, body)).encode("utf-8")
        sandbox = await self.pool.acquire()
        return await self._invoke(sandbox, event, receive, send, log)

    def _event(self, scope: Scope, body: bytes) -> dict[str, Any]:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        client = scope.get("client") or ("127.0.0.1", 0)
        host = next((v for k, v in headers if k == "host"), _host_port(self.options.host, self.port))
        return build_event(
            self.options.integration,
            method=scope["method"],
            path=raw_path.decode("latin-1"),
            query_string=scope["query_string"].decode("latin-1"),
            headers=headers,
            body=body,
            source_ip=client[0],
            host=host,
            scheme="http",  # so that URLs the app builds point back here
        )

    async def _invoke(self, sandbox: Sandbox, event: bytes, receive: Receive, send: Send, log: _Log) -> bool:
        """Run one invocation on ``sandbox`` (which this releases); True when the client's response is cut."""
        timeout = self.options.timeout
        responder = _ClientResponse(send, log, self.options, f"{log.method} {log.path}")
        # Until a runtime takes the invocation, allow for a (re)starting one; from then on the function
        # timeout runs, as in Lambda.
        waiting = anyio.CancelScope(deadline=anyio.current_time() + timeout + INIT_ALLOWANCE_S)
        taken = False

        def on_taken() -> None:
            nonlocal taken
            taken = True
            waiting.deadline = anyio.current_time() + timeout

        stream = sandbox.invoke(event, timeout, on_taken)
        finished = False  # the sandbox has said its last word for this invocation
        handed_off = False
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(_watch_client, receive, responder)
                with waiting:
                    async for item in stream:
                        finished = not isinstance(item, StreamData)
                        await responder.handle(item)
                        if responder.ended:
                            break
                    else:
                        finished = True
                group.cancel_scope.cancel()
            if waiting.cancelled_caught:
                finished = True
                # Stop listening first: the dying sandbox fails what it still has in flight, and that
                # must not wait for a reader (this task) that is busy killing it.
                with anyio.CancelScope(shield=True):
                    await stream.aclose()  # type: ignore[attr-defined]
                if taken:
                    message = f"Task timed out after {timeout:.2f} seconds"
                    await sandbox.kill("Sandbox.Timedout", message)
                    await responder.fail(
                        "Sandbox.Timedout", f"{message} (--timeout): the sandbox was killed, as Lambda does"
                    )
                else:
                    message = (
                        f"no runtime took the invocation within {timeout + INIT_ALLOWANCE_S:.0f} s "
                        "(is the app's import hanging?)"
                    )
                    await sandbox.kill("Runtime.Unavailable", message)
                    await responder.fail("Runtime.Unavailable", message)
            elif not finished:
                # The client's response ended early (a limit); the function is still writing. Lambda lets
                # it run to its end or its timeout; the sandbox serves nobody else meanwhile.
                self.tasks.start_soon(self._drain, sandbox, stream, waiting.deadline)
                handed_off = True
            await responder.finish()
        finally:
            if not handed_off:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()  # type: ignore[attr-defined]
                self.pool.release(sandbox)
        return responder.cut

    async def _drain(self, sandbox: Sandbox, stream: AsyncIterator[InvocationEvent], deadline: float) -> None:
        try:
            with anyio.CancelScope(deadline=deadline) as scope:
                async for _ in stream:
                    pass
            if scope.cancelled_caught:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()  # type: ignore[attr-defined]
                message = f"Task timed out after {self.options.timeout:.2f} seconds"
                _say(f"{message}: the sandbox was killed, as Lambda does")
                await sandbox.kill("Sandbox.Timedout", message)
        finally:
            with anyio.CancelScope(shield=True):
                await stream.aclose()  # type: ignore[attr-defined]
            self.pool.release(sandbox)


async def _watch_client(receive: Receive, responder: _ClientResponse) -> None:
    """Notice a client that leaves: Lambda keeps running (protocol.md 6.4), so only the log changes."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            responder.client_gone = True
            return


class _ClientResponse:
    """Turns what the sandbox sends into what an HTTP client of Lambda receives."""

    def __init__(self, send: Send, log: _Log, options: EmulatorOptions, label: str) -> None:
        self._send = send
        self.log = log
        self.options = options
        self.label = label
        self.decoder = PreludeDecoder()
        self.release = make_release(options.buffering, options.buffer_threshold)
        self.bandwidth = Bandwidth() if options.bandwidth else None
        self.padding_bytes: bytes | None = None
        self.started = False  # the status line went out
        self.ended = False  # the client's response is over (complete, 502, or cut)
        self.cut = False
        self.client_gone = False
        self.streamed = 0

    async def handle(self, item: InvocationEvent) -> None:
        if isinstance(item, StreamData):
            await self._data(item.data)
        elif isinstance(item, StreamEnd):
            if item.error is not None:
                await self.fail(item.error[0], _message(item.error[1]))
            elif self.decoder.prelude is None:
                await self.fail(
                    "Runtime.InvalidPrelude", "the stream ended before the prelude delimiter (8 NUL bytes)"
                )
            else:
                await self._write(self.release.end(), more=False)
                self._end("client-gone" if self.client_gone else "complete")
        elif isinstance(item, BufferedResult):
            await self._buffered(item)
        elif isinstance(item, InvocationFailed):
            await self.fail(item.error_type, _message(item.payload))

    async def _data(self, data: bytes) -> None:
        if self.ended:
            return
        if self.decoder.prelude is None:
            try:
                data = self.decoder.feed(data)
            except LambdaAsgiStreamError as exc:
                await self.fail(
                    "Runtime.InvalidPrelude",
                    f"{exc} (Lambda reads status and headers from the first {MAX_PRELUDE_BYTES} bytes)",
                )
                return
            if self.decoder.prelude is None:
                return
            prelude = self.decoder.prelude
            found = dict(prelude.headers)
            self.padding_bytes = padding_alphabet(
                found.get("content-type", ""), found.get("content-encoding", "")
            )
            await self._start(
                prelude.status, [*prelude.headers, *(("set-cookie", c) for c in prelude.cookies)]
            )
        if not data:
            return
        self.streamed += len(data)
        if self.streamed > MAX_STREAMED_BYTES:
            await self.fail(
                "Function.ResponseSizeTooLarge",
                f"the streamed response passed Lambda's {MAX_STREAMED_BYTES // 2**20} MB limit",
            )
            return
        if self.padding_bytes is not None and not data.translate(None, self.padding_bytes):
            self.log.padding += len(data)
        await self._write(self.release.feed(data), more=True)

    async def _buffered(self, item: BufferedResult) -> None:
        try:
            encode_buffered(item.payload)  # the same measure as the runtime's, which Lambda applies too
        except ResponseTooLargeError as exc:
            await self.fail(exc.error_type, str(exc))
            return
        if self.options.invoke_mode == "RESPONSE_STREAM":
            logger.warning(
                "the function returned a buffered response to a streaming invoke: a Function URL in "
                "RESPONSE_STREAM mode shows that JSON as the body. "
                "Set LAMBDA_ASGI_STREAM_INVOKE_MODE to match."
            )
        try:
            status, headers, body = decode_buffered_response(item.payload)
        except (ValueError, TypeError) as exc:
            await self.fail("Runtime.InvalidResponse", f"unreadable buffered response: {exc}")
            return
        await self._start(status, headers)
        await self._write(body, more=False)
        self._end("client-gone" if self.client_gone else "complete")

    async def fail(self, error_type: str, message: str) -> None:
        """The invocation failed: 502 if nothing was sent yet, else cut the response where it is."""
        if self.ended:
            return
        self._end(f"error:{error_type}")
        if not self.started:
            # Lambda answers a function error with 502 (Function URL, API Gateway proxy).
            _say(f"{self.label}: {error_type}: {message}\n{_PREFIX} the client got 502")
            self.log.status = 502
            self.started = True
            await _plain(self._client, 502, "Internal Server Error\n")
            return
        _say(
            f"{self.label}: {error_type}: {message}\n{_PREFIX} status {self.log.status} was already sent: "
            f"the response was cut after {self.log.bytes + self.release.pending} body bytes"
        )
        # What the service still held goes out; then the connection closes without the final chunk.
        await self._write(self.release.end(), more=True)
        self.cut = True

    async def finish(self) -> None:
        if not self.ended:
            await self.fail("Runtime.NoResponse", "the invocation ended without a response")

    def _end(self, reason: str) -> None:
        self.ended = True
        self.log.end = reason

    async def _start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.started = True
        self.log.status = status
        # Values are UTF-8 on the way out, as Lambda writes the prelude's JSON strings (encoder._value_text).
        raw = [(k.encode("latin-1"), v.encode("utf-8")) for k, v in headers if k.lower() not in HOP_BY_HOP]
        await self._client({"type": "http.response.start", "status": status, "headers": raw})

    async def _write(self, data: bytes, *, more: bool) -> None:
        if data:
            if self.bandwidth is not None:
                await anyio.sleep(self.bandwidth.delay(len(data), anyio.current_time()))
            self.log.bytes += len(data)
            self.log.chunks += 1
            if self.log.first_byte is None:
                self.log.first_byte = time.perf_counter()
        if data or not more:
            await self._client({"type": "http.response.body", "body": data, "more_body": more})

    async def _client(self, message: Message) -> None:
        # Lambda keeps running when the client leaves (protocol.md 6.4): keep draining, stop sending.
        if self.client_gone:
            return
        try:
            await self._send(message)
        except OSError:
            self.client_gone = True


def _message(detail: Any) -> str:
    if isinstance(detail, dict):
        return str(detail.get("errorMessage", detail))
    return str(detail)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _read_body(receive: Receive) -> bytes | None:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return bytes(body)
        body += message.get("body", b"")
        if len(body) > MAX_REQUEST_BYTES:
            return None
        if not message.get("more_body", False):
            return bytes(body)


async def _plain(send: Send, status: int, text: str) -> None:
    data = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


class _HideStreamCut(logging.Filter):
    """uvicorn logs every app exception; a deliberate cut is already reported on the console."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _StreamCut))


# --- reload ------------------------------------------------------------------------------------------


def _python_files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        if not any(part.startswith(".") or part in ("__pycache__", "node_modules") for part in parts):
            yield path


def _snapshot(root: Path) -> dict[Path, float]:
    snapshot: dict[Path, float] = {}
    for path in _python_files(root):
        try:
            snapshot[path] = path.stat().st_mtime
        except OSError:
            continue
    return snapshot


async def _watch(
    root: Path,
    sandboxes: list[Sandbox],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    before = await anyio.to_thread.run_sync(_snapshot, root)
    task_status.started()
    while True:
        await anyio.sleep(0.5)
        now = await anyio.to_thread.run_sync(_snapshot, root)
        if now != before:
            changed = sorted(
                {str(p.relative_to(root)) for p in set(now) ^ set(before)}
                | {str(p.relative_to(root)) for p in now if p in before and now[p] != before[p]}
            )
            _say(f"changed: {', '.join(changed[:5])}; restarting the app")
            async with anyio.create_task_group() as group:
                for sandbox in sandboxes:
                    group.start_soon(sandbox.restart)
            before = now


# --- entry point ----------------------------------------------------------------------------------------


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn, minus its signal handling: ``serve`` handles signals and stops the sandboxes first.

        (uvicorn re-raises a captured SIGTERM once it stops, which would end this process before the
        child processes are stopped.)
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server


async def _stop_on_signal(server: Any, front: FrontDoor, sandboxes: list[Sandbox]) -> None:
    """First signal: refuse new requests, stop the sandboxes (their requests end), stop uvicorn."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if front.closing:
                server.force_exit = True
                continue
            _say(f"{signal.Signals(signum).name}: shutting down")
            front.closing = True
            async with anyio.create_task_group() as group:
                for sandbox in sandboxes:
                    group.start_soon(sandbox.stop)
            server.should_exit = True


async def serve(options: EmulatorOptions) -> None:
    """Run the emulator until interrupted (SIGINT or SIGTERM)."""
    import uvicorn

    sandboxes = [Sandbox(i, options) for i in range(options.concurrency)]
    pool = SandboxPool(sandboxes)
    sock = socket.socket(socket.AF_INET6 if ":" in options.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((options.host, options.port))
        sock.listen(2048)  # now, so that a client can connect as soon as the URL is printed
    except OSError as exc:
        sock.close()
        raise LambdaAsgiStreamError(f"cannot listen on {options.host}:{options.port}: {exc}") from exc
    port = sock.getsockname()[1]
    logging.getLogger("uvicorn.error").addFilter(_HideStreamCut())
    async with anyio.create_task_group() as group:
        front = FrontDoor(pool, options, group, port=port)
        config = uvicorn.Config(
            front,
            log_level="warning",
            lifespan="off",
            access_log=False,
            server_header=False,
            http="h11",  # the same wire behaviour whether or not httptools is installed
            timeout_graceful_shutdown=1,
        )
        server = _server_class()(config)
        group.start_soon(_stop_on_signal, server, front, sandboxes)
        for sandbox in sandboxes:
            await group.start(sandbox.run)
        if options.reload:
            await group.start(_watch, Path.cwd(), sandboxes)
        print(
            f"{_PREFIX} serving {options.app} ({options.integration}, {options.invoke_mode}, "
            f"buffering {options.buffering}) on http://{_host_port(options.host, port)}",
            flush=True,
        )
        try:
            await server.serve(sockets=[sock])
        finally:
            with anyio.CancelScope(shield=True):
                async with anyio.create_task_group() as stopping:
                    for sandbox in sandboxes:
                        stopping.start_soon(sandbox.stop)
            group.cancel_scope.cancel()
