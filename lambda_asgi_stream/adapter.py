"""A plain handler object for Lambda's Python managed runtime, in buffered mode.

``handler = Adapter(app)`` is called as ``handler(event, context)`` by the managed runtime (which cannot
stream, protocol.md 7.2) and returns Mangum-compatible response dicts. It runs the same cycle and
encoder as the streaming runtime, on one event loop kept for the life of the execution environment
(lessons.md 3.14: no per-call loops, no deprecated ``get_event_loop``), with lifespan started once on the
first call and shut down when the environment ends.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from ._errors import StartupError
from ._types import ASGIApp
from .cycle import BufferedResponder, HTTPCycle
from .encoder import DEFAULT_TEXT_MIME_TYPES
from .events import parse_event
from .lifespan import LifespanMode, make_lifespan

logger = logging.getLogger("lambda_asgi_stream")


class Adapter:
    """Wrap an ASGI app as a buffered Lambda handler.

    >>> from lambda_asgi_stream import Adapter
    >>> handler = Adapter(app)                     # doctest: +SKIP
    >>> handler(event, context)["statusCode"]      # doctest: +SKIP
    200
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        lifespan: LifespanMode = "auto",
        base_path: str = "",
        text_mime_types: tuple[str, ...] = DEFAULT_TEXT_MIME_TYPES,
        timeout_margin_ms: int = 500,
    ) -> None:
        self.app = app
        self.base_path = base_path
        self.text_mime_types = text_mime_types
        self.timeout_margin_ms = timeout_margin_ms
        self.lifespan = make_lifespan(app, lifespan)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._holder: asyncio.Task[None] | None = None
        self._startup_error: StartupError | None = None
        # Our loop's anyio CancelScope class (set once the loop runs): see HTTPCycle's ``cancel_scope``.
        self._cancel_scope: type[anyio.CancelScope] = anyio.CancelScope
        self._serving: asyncio.Task[dict[str, Any]] | None = None  # the task __call__ runs the loop for

    def __call__(self, event: Any, context: Any = None) -> dict[str, Any]:
        loop = self._loop
        if loop is None or self._startup_error is not None:
            loop = self._start()
        if asyncio._get_running_loop() is not None:
            # Called from inside a running loop: run_until_complete raises asyncio's own error for that
            # (and close() spares the never-started coroutine a "never awaited" warning).
            coro = self.handle(event, context)
            try:
                return loop.run_until_complete(coro)
            finally:
                coro.close()
        # What run_until_complete does, minus one loop iteration: the task stops the loop itself when
        # it ends (_serve), instead of a done-callback doing so on the next pass (about 6 µs per call).
        task = self._serving = loop.create_task(self._serve(loop, event, context))
        try:
            loop.run_forever()
        except BaseException:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: the caller gets the exception raised out of the loop
            raise
        finally:
            self._serving = None  # holds the response otherwise, until the next call
        if not task.done():  # the app stopped our loop
            raise RuntimeError("Event loop stopped before Future completed.")
        return task.result()

    async def _serve(self, loop: asyncio.AbstractEventLoop, event: Any, context: Any) -> dict[str, Any]:
        try:
            return await self._handle(event, context, loop.time, self._cancel_scope)
        finally:
            # Stop now when nothing else is ready to run. Otherwise stop after one more iteration, so
            # that callbacks the app left ready run before we return, as under run_until_complete.
            # (``_ready`` is BaseEventLoop's queue; a loop without it takes the second way.) A call
            # given up on (the loop stopped under it) must not stop the loop of a later call.
            if asyncio.current_task() is self._serving:
                ready = getattr(loop, "_ready", None)
                if ready is not None and not ready:
                    loop.stop()
                else:
                    loop.call_soon(loop.stop)

    async def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        """Serve one event on the running loop (for callers that are already async)."""
        return await self._handle(event, context, anyio.current_time, anyio.CancelScope)

    async def _handle(
        self,
        event: Any,
        context: Any,
        clock: Callable[[], float],
        cancel_scope: type[anyio.CancelScope],
    ) -> dict[str, Any]:
        request = parse_event(event, context, base_path=self.base_path)
        scope = request.scope  # built by parse_event for this call alone: no copy needed
        scope["state"] = dict(self.lifespan.state)
        responder = BufferedResponder(
            request.integration,
            multi_value_headers=request.multi_value_headers,
            text_mime_types=self.text_mime_types,
        )
        cycle = HTTPCycle(scope, request.body, responder, cancel_scope=cancel_scope)
        result = await cycle.run(self.app, deadline=self._deadline(context, clock))
        if result.error is not None:
            logger.error("app failed: %s", result.error, exc_info=result.error)
        return responder.result()

    def _deadline(self, context: Any, clock: Callable[[], float] = anyio.current_time) -> float | None:
        """When the app is cancelled, on ``clock`` (``anyio.current_time``, or the loop's own clock)."""
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if remaining is None:
            return None
        budget_ms = int(remaining()) - self.timeout_margin_ms
        return clock() + max(0, budget_ms) / 1000

    def _start(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            ready = self._loop.create_future()
            self._holder = self._loop.create_task(self._hold_lifespan(ready))
            self._loop.run_until_complete(ready)
            atexit.register(self.close)
        if self._startup_error is not None:
            raise self._startup_error
        return self._loop

    async def _hold_lifespan(self, ready: asyncio.Future[None]) -> None:
        self._stop = asyncio.Event()
        self._cancel_scope = type(anyio.CancelScope())
        async with anyio.create_task_group() as group:
            try:
                await self.lifespan.startup(group)
            except StartupError as exc:
                self._startup_error = exc
            else:
                ready.set_result(None)
                await self._stop.wait()
                await self.lifespan.shutdown()
            if not ready.done():
                ready.set_result(None)
            group.cancel_scope.cancel()

    def close(self) -> None:
        """Run lifespan shutdown and close the loop. Safe to call more than once."""
        loop, self._loop = self._loop, None
        if loop is None or loop.is_closed() or loop.is_running():
            return
        if self._holder is not None and not self._holder.done():
            self._stop.set()
            loop.run_until_complete(self._holder)
        loop.close()
