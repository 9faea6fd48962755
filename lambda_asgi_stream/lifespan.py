"""ASGI lifespan, once per execution environment (not once per invocation, as Mangum does).

Startup runs in Lambda's init phase, before the first ``next``; shutdown runs when the environment is shut
down (SIGTERM). The state the app fills in during startup (``scope["state"]``, ASGI lifespan spec 2.0+)
is copied into every request's scope, as uvicorn does.

Two strategies chosen once (uvicorn's ``lifespan/on.py`` and ``off.py``): :class:`LifespanOff` does nothing;
:class:`LifespanOn` drives the protocol. In ``auto`` mode an app that raises or returns before answering
``lifespan.startup`` is taken to not support lifespan, and serving goes on; in ``on`` mode that is a
startup failure.

The app's lifespan coroutine runs in its own asyncio task, which lives as long as the process serves
requests; :meth:`LifespanOn.shutdown` ends it (cancelled if it does not finish in time). Plain asyncio,
no anyio: this is on the Lambda cold path. :meth:`LifespanOn.startup` raises :class:`StartupError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from ._errors import ConfigError, StartupError
from ._types import LIFESPAN_MODES, ASGIApp, LifespanMode, Message

logger = logging.getLogger("lambda_asgi_stream")

__all__ = ["LIFESPAN_MODES", "Lifespan", "LifespanMode", "LifespanOff", "LifespanOn", "make_lifespan"]


class Lifespan(Protocol):
    state: dict[str, Any]

    async def startup(self) -> None: ...

    async def shutdown(self) -> None: ...


class LifespanOff:
    """No lifespan: startup and shutdown do nothing, the state stays empty."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    async def startup(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


class LifespanOn:
    """Runs the app's ``lifespan`` scope: startup now, shutdown on request."""

    def __init__(self, app: ASGIApp, *, required: bool, shutdown_timeout: float = 5.0) -> None:
        self.app = app
        self.required = required
        self.shutdown_timeout = shutdown_timeout
        self.state: dict[str, Any] = {}
        self.supported = True
        self._failure: str | None = None
        self._started = False
        self._task: asyncio.Task[None] | None = None
        self._asked = False  # the app asked for a lifespan message: it speaks the protocol

    async def startup(self) -> None:
        self._startup_done = asyncio.Event()
        self._shutdown_requested = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self._app_done = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._main())
        await self._startup_done.wait()
        if self._failure is not None:
            await self._stop()
            raise StartupError(self._failure)
        self._started = True
        if not self.supported:
            await self._stop()

    async def shutdown(self) -> None:
        try:
            if not self._started or not self.supported or self._app_done.is_set():
                return
            self._shutdown_requested.set()
            try:
                await asyncio.wait_for(self._shutdown_done.wait(), self.shutdown_timeout)
            except asyncio.TimeoutError:
                logger.warning("lifespan shutdown did not finish within %.1f s", self.shutdown_timeout)
                return
            if self._failure is not None:
                logger.error("lifespan shutdown failed: %s", self._failure)
        finally:
            await self._stop()

    async def _stop(self) -> None:
        """End the app's lifespan task (it may still be waiting for a message, or ignore shutdown)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _main(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except Exception as exc:
            self._app_failed(exc)
        else:
            if not self._startup_done.is_set():
                self._unsupported("the app returned without answering lifespan.startup")
        finally:
            self._app_done.set()
            self._startup_done.set()
            self._shutdown_done.set()

    def _app_failed(self, exc: Exception) -> None:
        if self._startup_done.is_set():
            self._failure = f"{type(exc).__name__}: {exc}"
            logger.error("lifespan raised after startup", exc_info=exc)
            return
        if self._asked:
            self._crashed(exc)
        else:
            self._unsupported(f"{type(exc).__name__}: {exc}", exc)

    def _crashed(self, exc: Exception) -> None:
        """The app took ``lifespan.startup`` and then raised: its startup crashed (it does speak lifespan)."""
        if self.required:
            self._failure = f"lifespan startup failed: {type(exc).__name__}: {exc}"
            logger.error("lifespan startup failed", exc_info=exc)
            return
        # auto: serve without the startup's work, but loudly (Lambda's default log level shows WARNING;
        # Mangum logs this at ERROR).
        self.supported = False
        logger.warning("lifespan startup crashed; serving without it", exc_info=exc)

    def _unsupported(self, reason: str, exc: BaseException | None = None) -> None:
        if self.required:
            self._failure = f"lifespan startup failed: {reason}"
            logger.error("lifespan startup failed", exc_info=exc)
        else:
            # uvicorn's rule for lifespan="auto": an app that raises before it asks for a lifespan message
            # has no lifespan support.
            self.supported = False
            logger.info("ASGI lifespan unsupported by the app (%s); going on without it", reason)

    async def _receive(self) -> Message:
        self._asked = True
        if not self._startup_done.is_set():
            return {"type": "lifespan.startup"}
        await self._shutdown_requested.wait()
        return {"type": "lifespan.shutdown"}

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self._startup_done.set()
        elif kind == "lifespan.startup.failed":
            self._failure = f"lifespan.startup.failed: {message.get('message', '')}"
            self._startup_done.set()
        elif kind == "lifespan.shutdown.complete":
            self._shutdown_done.set()
        elif kind == "lifespan.shutdown.failed":
            self._failure = f"lifespan.shutdown.failed: {message.get('message', '')}"
            self._shutdown_done.set()
        else:
            raise ConfigError(f"unexpected lifespan message {kind!r}")


def make_lifespan(app: ASGIApp, mode: str) -> Lifespan:
    """Pick the lifespan strategy for ``mode`` (``auto``, ``on`` or ``off``)."""
    if mode == "off":
        return LifespanOff()
    if mode in ("auto", "on"):
        return LifespanOn(app, required=mode == "on")
    raise ConfigError(f"lifespan must be one of {', '.join(LIFESPAN_MODES)}, not {mode!r}")
