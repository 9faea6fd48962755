"""ASGI lifespan, once per execution environment (not once per invocation, as Mangum does: lessons 3.13).

Startup runs in Lambda's init phase, before the first ``next``; shutdown runs when the environment is shut
down (SIGTERM). The state the app fills in during startup (``scope["state"]``, ASGI lifespan spec 2.0+)
is copied into every request's scope, as uvicorn does.

Two strategies chosen once (uvicorn's ``lifespan/on.py`` and ``off.py``): :class:`LifespanOff` does nothing;
:class:`LifespanOn` drives the protocol. In ``auto`` mode an app that raises or returns before answering
``lifespan.startup`` is taken to not support lifespan, and serving goes on; in ``on`` mode that is a
startup failure.

The app's lifespan coroutine runs in a task group the caller owns, so that it lives as long as the
process serves requests. :meth:`LifespanOn.startup` never raises inside that group's body in a way that
would be wrapped in an exception group: it raises :class:`StartupError`, which the caller catches.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Protocol

import anyio
import anyio.abc

from ._errors import ConfigError, StartupError
from ._types import ASGIApp, Message

logger = logging.getLogger("lambda_asgi_stream")

LifespanMode = Literal["auto", "on", "off"]
LIFESPAN_MODES: tuple[LifespanMode, ...] = ("auto", "on", "off")


class Lifespan(Protocol):
    state: dict[str, Any]

    async def startup(self, task_group: anyio.abc.TaskGroup) -> None: ...

    async def shutdown(self) -> None: ...


class LifespanOff:
    """No lifespan: startup and shutdown do nothing, the state stays empty."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    async def startup(self, task_group: anyio.abc.TaskGroup) -> None:
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

    async def startup(self, task_group: anyio.abc.TaskGroup) -> None:
        self._startup_done = anyio.Event()
        self._shutdown_requested = anyio.Event()
        self._shutdown_done = anyio.Event()
        self._app_done = anyio.Event()
        task_group.start_soon(self._main)
        await self._startup_done.wait()
        if self._failure is not None:
            raise StartupError(self._failure)
        self._started = True

    async def shutdown(self) -> None:
        if not self._started or not self.supported or self._app_done.is_set():
            return
        self._shutdown_requested.set()
        with anyio.move_on_after(self.shutdown_timeout) as scope:
            await self._shutdown_done.wait()
        if scope.cancelled_caught:
            logger.warning("lifespan shutdown did not finish within %.1f s", self.shutdown_timeout)
        elif self._failure is not None:
            logger.error("lifespan shutdown failed: %s", self._failure)

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
        self._unsupported(f"{type(exc).__name__}: {exc}", exc)

    def _unsupported(self, reason: str, exc: BaseException | None = None) -> None:
        if self.required:
            self._failure = f"lifespan startup failed: {reason}"
            logger.error("lifespan startup failed", exc_info=exc)
        else:
            # uvicorn's rule for lifespan="auto": an app that cannot answer lifespan has none.
            self.supported = False
            logger.info("ASGI lifespan unsupported by the app (%s); going on without it", reason)

    async def _receive(self) -> Message:
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
