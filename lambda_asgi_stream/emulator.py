"""Shell: run an app locally exactly as Lambda runs it (``lambda-asgi-stream serve MODULE:APP``).

Three parts, as in Lambda:

* **sandboxes**: each is a child process running our own runtime loop (``python -m lambda_asgi_stream run``)
  against its own loopback Runtime API server (:class:`~lambda_asgi_stream.local_api.LocalRuntimeAPI`), the
  way Lambda starts an execution environment. One invocation at a time per sandbox; ``--concurrency N``
  runs N of them. A sandbox that dies is restarted; its in-flight invocation fails as Lambda's would.
* **the front door**: a plain HTTP server (uvicorn) that turns each request into the event of the chosen
  integration (``events.build``), hands it to a free sandbox, decodes the prelude and streams the body to
  the client as it arrives, through the models of :mod:`~lambda_asgi_stream.buffering` (Lambda's
  hold-back of small writes, its bandwidth cap).
* **the limits** users trip over, enforced and explained: the function timeout (the sandbox is killed, as
  Lambda does), 6 MB buffered responses, the 200 MB streamed cap, the 16 KiB prelude, 6 MB request bodies.

A mid-stream error trailer ends the client's response the way a Function URL does: the status is already
committed, so the body is cut (the connection is closed without the final chunk), and the error is printed
on the console.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._errors import LambdaAsgiStreamError, PreludeTooLargeError
from ._types import Integration, Message, Receive, Scope, Send
from .buffering import MAX_STREAMED_BYTES, Bandwidth, make_release
from .encoder import MAX_BUFFERED_RESPONSE_BYTES, PreludeDecoder, decode_buffered_response
from .events.build import build_event
from .local_api import (
    BufferedResult,
    InvocationEvent,
    InvocationFailed,
    LocalRuntimeAPI,
    StreamData,
    StreamEnd,
)

logger = logging.getLogger("lambda_asgi_stream.emulator")

MAX_REQUEST_BYTES = 6 * 1024 * 1024  # synchronous invoke payload limit (Lambda quotas)
_RESTART_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)


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
        self._kill_reason: tuple[str, str] | None = None
        self._demand = anyio.Event()
        self._restart = anyio.Event()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as group:
            self.address = await group.start(self.api.serve, "127.0.0.1", 0)
            task_status.started()
            failures = 0
            while True:
                started = time.monotonic()
                code = await self._run_child()
                failures = 0 if time.monotonic() - started > 10 else failures + 1
                await self._after_exit(code)
                if self.init_error is not None:
                    await self._wait_for_demand()
                else:
                    await self._pause(_RESTART_BACKOFF[min(failures, len(_RESTART_BACKOFF) - 1)])

    async def _run_child(self) -> int:
        env = {
            **os.environ,
            **self.options.environ,
            "AWS_LAMBDA_RUNTIME_API": self.address,
            "LAMBDA_ASGI_STREAM_INVOKE_MODE": self.options.invoke_mode,
            "AWS_LAMBDA_FUNCTION_NAME": "local",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(self.options.timeout)),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("_X_AMZN_TRACE_ID", None)
        command = [sys.executable, "-m", "lambda_asgi_stream", "run", self.options.app]
        self.init_error = None
        errors_before = len(self.api.init_errors)
        self._restart = anyio.Event()
        async with await anyio.open_process(command, env=env, stdout=None, stderr=None) as process:
            self.process = process
            code = await process.wait()
        self.process = None
        if len(self.api.init_errors) > errors_before:
            failed = self.api.init_errors[-1]
            detail = (
                failed.payload.get("errorMessage") if isinstance(failed.payload, dict) else failed.payload
            )
            self.init_error = f"{failed.error_type}: {detail}"
        return code

    async def _after_exit(self, code: int) -> None:
        if self._kill_reason is not None:
            error_type, message = self._kill_reason
            self._kill_reason = None
        elif self.init_error is not None:
            error_type, message = "Runtime.InitError", self.init_error
            logger.error("sandbox %d: init failed: %s", self.index, self.init_error)
        else:
            error_type, message = "Runtime.ExitError", f"the runtime exited with code {code}"
            if not self._restart.is_set():
                logger.error("sandbox %d: runtime exited with code %d; restarting", self.index, code)
        await self.api.abort(error_type, message, taken_only=self.init_error is None)

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
        with anyio.move_on_after(seconds):
            await self._restart.wait()

    def kill(self, error_type: str, message: str) -> None:
        """Stop the sandbox at once (SIGKILL, as Lambda does at a timeout); its invocation fails."""
        self._kill_reason = (error_type, message)
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    def restart(self) -> None:
        """Replace the runtime process (after a code change)."""
        self._restart.set()
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()

    def invoke(self, event: bytes, timeout: float) -> AsyncIterator[InvocationEvent]:
        self._demand.set()
        return self.api.invoke(event, timeout_s=timeout)


class SandboxPool:
    """Hands out idle sandboxes; a request waits when all are busy (Lambda would scale out)."""

    def __init__(self, sandboxes: list[Sandbox]) -> None:
        self.sandboxes = sandboxes
        self._send: MemoryObjectSendStream[Sandbox]
        self._receive: MemoryObjectReceiveStream[Sandbox]
        self._send, self._receive = anyio.create_memory_object_stream[Sandbox](len(sandboxes))
        for sandbox in sandboxes:
            self._send.send_nowait(sandbox)

    async def acquire(self) -> Sandbox:
        return await self._receive.receive()

    def release(self, sandbox: Sandbox) -> None:
        self._send.send_nowait(sandbox)


# --- the front door ----------------------------------------------------------------------------------


class _StreamCut(Exception):
    """Raised inside the front door to make the HTTP server drop the connection mid-body."""


@dataclass
class _Log:
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    status: int | None = None
    first_byte: float | None = None
    bytes: int = 0
    chunks: int = 0
    end: str = "complete"

    def line(self) -> str:
        ttfb = "-" if self.first_byte is None else f"{(self.first_byte - self.started) * 1000:.1f}ms"
        total = (time.perf_counter() - self.started) * 1000
        return (
            f"{self.method} {self.path} {self.status if self.status is not None else '-'} "
            f"ttfb={ttfb} time={total:.1f}ms bytes={self.bytes} chunks={self.chunks} end={self.end}"
        )


class FrontDoor:
    """The ASGI app uvicorn serves: HTTP request -> Lambda event -> sandbox -> HTTP response."""

    def __init__(self, pool: SandboxPool, options: EmulatorOptions) -> None:
        self.pool = pool
        self.options = options

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        log = _Log(
            scope["method"],
            scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else ""),
        )
        try:
            await self._serve(scope, receive, send, log)
        finally:
            logger.info("%s", log.line())

    async def _serve(self, scope: Scope, receive: Receive, send: Send, log: _Log) -> None:
        body = await _read_body(receive)
        if body is None:
            log.status, log.end = 413, "request-too-large"
            await _plain(
                send, 413, f"Request body over Lambda's {MAX_REQUEST_BYTES} byte invoke payload limit\n"
            )
            return
        event = json.dumps(self._event(scope, body)).encode("utf-8")
        sandbox = await self.pool.acquire()
        try:
            await self._invoke(sandbox, event, send, log)
        finally:
            self.pool.release(sandbox)

    def _event(self, scope: Scope, body: bytes) -> dict[str, Any]:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        client = scope.get("client") or ("127.0.0.1", 0)
        host = next((v for k, v in headers if k == "host"), f"{self.options.host}:{self.options.port}")
        return build_event(
            self.options.integration,
            method=scope["method"],
            path=raw_path.decode("latin-1"),
            query_string=scope["query_string"].decode("latin-1"),
            headers=headers,
            body=body,
            source_ip=client[0],
            host=host,
        )

    async def _invoke(self, sandbox: Sandbox, event: bytes, send: Send, log: _Log) -> None:
        # The runtime gets the configured timeout as its deadline; Lambda stops the sandbox at that
        # deadline, and so do we, a little later, if the runtime did not end the response itself.
        deadline = anyio.current_time() + self.options.timeout + 1.0
        responder = _ClientResponse(send, log, self.options)
        stream = sandbox.invoke(event, self.options.timeout)
        try:
            with anyio.CancelScope(deadline=deadline) as scope:
                async for item in stream:
                    await responder.handle(item)
            if scope.cancelled_caught:
                message = f"Task timed out after {self.options.timeout:.2f} seconds"
                logger.error("%s: killing the sandbox, as Lambda does", message)
                sandbox.kill("Sandbox.Timedout", message)
                await responder.fail("Sandbox.Timedout", message)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        await responder.finish()


class _ClientResponse:
    """Turns what the sandbox sends into what an HTTP client of Lambda receives."""

    def __init__(self, send: Send, log: _Log, options: EmulatorOptions) -> None:
        self._send = send
        self.log = log
        self.options = options
        self.decoder = PreludeDecoder()
        self.release = make_release(options.buffering, options.buffer_threshold)
        self.bandwidth = Bandwidth() if options.bandwidth else None
        self.started = False
        self.client_gone = False
        self.cut = False
        self.streamed = 0

    async def handle(self, item: InvocationEvent) -> None:
        if isinstance(item, StreamData):
            await self._data(item.data)
        elif isinstance(item, StreamEnd):
            if item.error is None:
                await self._write(self.release.end(), more=False)
            else:
                await self.fail(item.error[0], _message(item.error[1]))
        elif isinstance(item, BufferedResult):
            await self._buffered(item)
        elif isinstance(item, InvocationFailed):
            await self.fail(item.error_type, _message(item.payload))

    async def _data(self, data: bytes) -> None:
        if self.cut:
            return
        if self.decoder.prelude is None:
            try:
                data = self.decoder.feed(data)
            except (PreludeTooLargeError, LambdaAsgiStreamError) as exc:
                await self.fail("Runtime.InvalidPrelude", str(exc))
                return
            if self.decoder.prelude is None:
                return
            prelude = self.decoder.prelude
            headers = [*prelude.headers, *(("set-cookie", c) for c in prelude.cookies)]
            await self._start(prelude.status, headers)
        if not data:
            return
        self.streamed += len(data)
        if self.streamed > MAX_STREAMED_BYTES:
            await self.fail(
                "Function.ResponseSizeTooLarge",
                f"the streamed response passed Lambda's {MAX_STREAMED_BYTES // 2**20} MB limit",
            )
            return
        await self._write(self.release.feed(data), more=True)

    async def _buffered(self, item: BufferedResult) -> None:
        size = len(json.dumps(item.payload))
        if size > MAX_BUFFERED_RESPONSE_BYTES:
            await self.fail(
                "Function.ResponseSizeTooLarge",
                f"buffered response is {size} bytes; Lambda returns at most {MAX_BUFFERED_RESPONSE_BYTES}",
            )
            return
        if self.options.invoke_mode == "RESPONSE_STREAM":
            logger.warning(
                "the function returned a buffered response to a streaming invoke: a Function URL in "
                "RESPONSE_STREAM mode shows that JSON as the body. "
                "Set LAMBDA_ASGI_STREAM_INVOKE_MODE to match."
            )
        status, headers, body = decode_buffered_response(item.payload)
        await self._start(status, headers)
        await self._write(body, more=False)

    async def fail(self, error_type: str, message: str) -> None:
        self.log.end = f"error:{error_type}"
        print(f"lambda-asgi-stream: invocation failed: {error_type}: {message}", file=sys.stderr, flush=True)
        if not self.started:
            # Lambda answers a function error with 502 (Function URL, API Gateway proxy).
            self.log.status = 502
            await _plain(self._send, 502, "Internal Server Error\n")
            self.started = True
            self.cut = True
            return
        self.cut = True
        raise _StreamCut(f"{error_type}: {message}")

    async def finish(self) -> None:
        if not self.started:
            await self.fail("Runtime.NoResponse", "the invocation ended without a response")

    async def _start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.started = True
        self.log.status = status
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers if k not in ("content-length",)]
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
            self.log.end = "client-gone"


def _message(detail: Any) -> str:
    if isinstance(detail, dict):
        return str(detail.get("errorMessage", detail))
    return str(detail)


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
        if not any(part.startswith(".") or part in ("__pycache__", "node_modules") for part in path.parts):
            yield path


def _snapshot(root: Path) -> dict[Path, float]:
    snapshot: dict[Path, float] = {}
    for path in _python_files(root):
        try:
            snapshot[path] = path.stat().st_mtime
        except OSError:
            continue
    return snapshot


async def _watch(root: Path, sandboxes: list[Sandbox]) -> None:
    before = await anyio.to_thread.run_sync(_snapshot, root)
    while True:
        await anyio.sleep(0.5)
        now = await anyio.to_thread.run_sync(_snapshot, root)
        if now != before:
            changed = sorted(
                {str(p.relative_to(root)) for p in set(now) ^ set(before)}
                | {str(p.relative_to(root)) for p in now if p in before and now[p] != before[p]}
            )
            logger.info("changed: %s; restarting the sandboxes", ", ".join(changed[:5]))
            for sandbox in sandboxes:
                sandbox.restart()
            before = now


# --- entry point ----------------------------------------------------------------------------------------


async def serve(options: EmulatorOptions) -> None:
    """Run the emulator until interrupted."""
    import uvicorn

    sandboxes = [Sandbox(i, options) for i in range(options.concurrency)]
    pool = SandboxPool(sandboxes)
    front = FrontDoor(pool, options)
    sock = socket.socket(socket.AF_INET6 if ":" in options.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((options.host, options.port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        front, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    logging.getLogger("uvicorn.error").addFilter(_HideStreamCut())
    async with anyio.create_task_group() as group:
        for sandbox in sandboxes:
            await group.start(sandbox.run)
        if options.reload:
            group.start_soon(_watch, Path.cwd(), sandboxes)
        url = f"http://{options.host}:{port}"
        print(
            f"lambda-asgi-stream: serving {options.app} as a {options.integration} "
            f"({options.invoke_mode}, buffering {options.buffering}) on {url}",
            flush=True,
        )
        try:
            await server.serve(sockets=[sock])
        finally:
            for sandbox in sandboxes:
                sandbox.restart()
            group.cancel_scope.cancel()
