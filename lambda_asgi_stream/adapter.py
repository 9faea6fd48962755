"""Shell: a plain handler object for Lambda's Python managed runtime, in buffered mode.

``handler = Adapter(app)`` is called as ``handler(event, context)`` by the managed runtime (which cannot
stream) and returns Mangum-compatible response dicts. It runs the same cycle and encoder as the streaming
runtime, on one asyncio event loop kept for the life of the execution environment (no loop per call, no
deprecated ``get_event_loop``), with lifespan started once on the first call and shut down when the
environment ends. Each call runs in its own task, so context variables set by one request never leak into
the next (as with ``run_until_complete`` and Mangum).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import time
from collections.abc import Iterable
from typing import Any

from . import hooks
from ._errors import StartupError
from ._types import ASGIApp, LifespanMode
from .cycle import BufferedResponder, DeadlineTimer, HTTPCycle, log_invocation
from .encoder import DEFAULT_TEXT_MIME_TYPES, header_names
from .events import parse_event
from .events.base_path import normalize_base_path
from .events.handlers import event_handlers
from .lifespan import make_lifespan

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
        lifespan: LifespanMode = "auto",
        api_gateway_base_path: str | None = None,
        custom_handlers: Iterable[Any] | None = None,
        text_mime_types: Iterable[str] | None = None,
        exclude_headers: Iterable[str] | None = None,
        *,
        base_path: str = "",
        timeout_margin_ms: int = 500,
    ) -> None:
        """Mangum's options, by the same names and in the same order (docs/migrating-from-mangum.md):
        ``api_gateway_base_path`` (``base_path`` is the same, by our name; ``v1`` means ``/v1``),
        ``custom_handlers`` (tried before the built-in event formats), ``text_mime_types`` (replaces the
        defaults; ``[]``: no body is text) and ``exclude_headers`` (response headers never sent)."""
        option = "api_gateway_base_path" if api_gateway_base_path is not None else "base_path"
        self.app = app
        self.base_path = normalize_base_path(
            api_gateway_base_path if api_gateway_base_path is not None else base_path, option
        )
        self.text_mime_types = DEFAULT_TEXT_MIME_TYPES if text_mime_types is None else tuple(text_mime_types)
        self.exclude_headers = header_names(exclude_headers or ())
        self.handlers = event_handlers(
            custom_handlers,
            base_path=self.base_path,
            text_mime_types=self.text_mime_types,
            exclude_headers=self.exclude_headers,
        )
        self.timeout_margin_ms = timeout_margin_ms
        self.lifespan = make_lifespan(app, lifespan)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._startup_error: StartupError | None = None
        self._serving: asyncio.Task[dict[str, Any]] | None = None  # the task __call__ runs the loop for
        self._timer: DeadlineTimer | None = None  # the deadline timer of __call__'s calls, one at a time

    def __call__(self, event: Any, context: Any = None) -> dict[str, Any]:
        loop = self._loop
        if loop is None or self._startup_error is not None:
            loop = self._start()
        if _loop_running():
            raise RuntimeError(
                "Cannot run the event loop while another loop is running: inside a running loop, "
                "await adapter.handle(event, context) instead of calling the adapter"
            )
        # What run_until_complete does, minus one loop iteration: the task stops the loop itself when
        # it ends (_serve), instead of a done-callback doing so on the next pass.
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
            return await self._handle(event, context, self._timer_for(loop))
        finally:
            # A call given up on (the loop stopped under it) must not stop the loop of a later call.
            if asyncio.current_task() is self._serving:
                _stop_after_ready_callbacks(loop)

    async def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        """Serve one event on the running loop (for callers that are already async)."""
        return await self._handle(event, context, None)

    def _timer_for(self, loop: asyncio.AbstractEventLoop) -> DeadlineTimer:
        # __call__'s calls run one after another on the adapter's own loop, each in a task of its own: one
        # timer serves them all (see DeadlineTimer), instead of one made and cancelled per call. handle()
        # may be awaited concurrently by an async caller, so it gets a timer per call.
        task = asyncio.current_task()
        assert task is not None
        timer = self._timer
        if timer is None or timer.loop is not loop:
            timer = self._timer = DeadlineTimer(loop, task)
        else:
            timer.retarget(task)
        return timer

    async def _handle(self, event: Any, context: Any, timer: DeadlineTimer | None) -> dict[str, Any]:
        started = time.perf_counter()
        request = parse_event(event, context, base_path=self.base_path, handlers=self.handlers)
        scope = dict(request.scope)  # a Request is a value: its scope is never changed in place
        scope["state"] = dict(self.lifespan.state)
        responder = BufferedResponder(
            request.integration,
            multi_value_headers=request.multi_value_headers,
            text_mime_types=self.text_mime_types,
            exclude_headers=self.exclude_headers,
            request=request,
        )
        cycle = HTTPCycle(scope, request.body, responder)
        deadline = self._deadline(context, timer)
        result = await cycle.run(self.app, deadline=deadline, timer=timer)
        log_invocation(request, result, responder.stats, started)
        response = responder.result()
        if hooks.registered():  # the managed runtime posts the response once we return: run them now
            await hooks.run_hooks(deadline)
        return response

    def _deadline(self, context: Any, timer: DeadlineTimer | None = None) -> float | None:
        """When the app is stopped, on the running loop's clock (None: the context has no deadline)."""
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if remaining is None:
            return None
        budget_ms = int(remaining()) - self.timeout_margin_ms
        now = timer.clock() if timer is not None else asyncio.get_running_loop().time()
        return now + max(0, budget_ms) / 1000

    def _start(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self.lifespan.startup())
            except StartupError as exc:
                self._startup_error = exc
            atexit.register(self.close)
        if self._startup_error is not None:
            raise self._startup_error
        return self._loop

    def close(self) -> None:
        """Run lifespan shutdown and close the loop. Safe to call more than once."""
        loop, self._loop = self._loop, None
        if loop is None or loop.is_closed() or loop.is_running():
            return
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        if self._startup_error is None:
            loop.run_until_complete(self.lifespan.shutdown())
        loop.close()


def _loop_running() -> bool:
    # asyncio._get_running_loop answers None instead of raising, which spares an exception per call in the
    # common case (no loop running); asyncio has kept it since 3.7 for callers like this one.
    get = getattr(asyncio, "_get_running_loop", None)
    if get is not None:
        return get() is not None
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _stop_after_ready_callbacks(loop: asyncio.AbstractEventLoop) -> None:
    """Stop ``loop`` now if nothing else is ready to run, else after one more pass.

    Callbacks the app left ready still run before the call returns, as under ``run_until_complete``; when
    there are none (the common case) the loop stops in this pass, one iteration sooner. ``_ready`` is the
    queue of asyncio's ``BaseEventLoop`` (and uvloop has none: it takes the second way).
    """
    ready = getattr(loop, "_ready", None)
    if ready is not None and not ready:
        loop.stop()
    else:
        loop.call_soon(loop.stop)
