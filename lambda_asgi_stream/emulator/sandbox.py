"""Sandboxes: each an execution environment, as Lambda starts one.

A sandbox is a child process running our own runtime loop (``python -m lambda_asgi_stream run``) against
its own loopback Runtime API server (:class:`~.local_api.LocalRuntimeAPI`). One invocation at a time per
sandbox; the pool hands idle ones to requests. A sandbox that dies is restarted; its in-flight invocation
fails as Lambda's would. An app that fails its init (import error) is retried on the next request only,
never in a loop.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..config import ENV_LOG_LEVEL
from .local_api import InvocationEvent, LocalRuntimeAPI
from .options import PREFIX, EmulatorOptions, error_text, say
from .output import SandboxOutput

logger = logging.getLogger("lambda_asgi_stream.emulator")

_RESTART_BACKOFF = (0.0, 0.5, 1.0, 2.0, 5.0)
_STOP_GRACE_S = 2.0


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
        self.output = SandboxOutput()  # the child's stdout/stderr, for the console and LogResult
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
            group.start_soon(self.output.pump)
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
        # The app's output shows on the console, as it would in CloudWatch (through self.output).
        async with await anyio.open_process(
            command, env=self._child_env(), stdout=self.output.stdout, stderr=self.output.stderr
        ) as process:
            self.process = process
            logger.info("sandbox %d: runtime started (pid %d)", self.index, process.pid)
            code = await process.wait()
        self.process = None
        self.output.drain()  # its last words before anything is said about its exit
        if len(self.api.init_errors) > errors_before:
            failed = self.api.init_errors[-1]
            self.init_error = f"{failed.error_type}: {error_text(failed.payload)}"
        return code

    async def _after_exit(self, code: int) -> None:
        try:
            if self._kill_reason is not None:
                error_type, message = self._kill_reason
                self._kill_reason = None
            elif self.init_error is not None:
                error_type, message = "Runtime.InitError", self.init_error
                retry = "the next request tries again" + ("" if self.options.reload else " (or use --reload)")
                say(f"the app failed to start: {self.init_error}\n{PREFIX} requests get 502; {retry}")
            else:
                error_type, message = "Runtime.ExitError", f"the runtime exited with code {code}"
                if not self._restart.is_set() and not self._closing:
                    say(f"sandbox {self.index}: {message}; starting a new one")
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
