"""After-invocation hooks: work that must be done before Lambda may freeze the sandbox.

Once the last byte of a response is out, Lambda may freeze the execution environment until the next
request, or for good. SDKs that batch (Sentry, OpenTelemetry, Datadog) lose what they still hold. A hook
registered here runs after each invocation, once its response is complete (with the runtime loop: sent),
and before the runtime asks for the next event::

    import sentry_sdk
    import lambda_asgi_stream

    @lambda_asgi_stream.after_invocation
    def flush_sentry() -> None:
        sentry_sdk.flush(timeout=2)

Hooks may be plain functions or coroutine functions. An async hook is stopped when the invocation's time
runs out (minus the runtime's safety margin); a plain function cannot be interrupted, so give it its own
timeout, as above. A hook that fails is logged and never ends the loop or fails the invocation. Hooks run
in the order they were registered, in the task that served the invocation.

With the buffered :class:`~lambda_asgi_stream.Adapter`, the managed runtime posts the response only when
the handler returns, so hooks run just before that: they add to the response's latency there.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

logger = logging.getLogger("lambda_asgi_stream")

Hook = Callable[[], Any]
H = TypeVar("H", bound=Hook)

_hooks: list[Hook] = []


def after_invocation(hook: H) -> H:
    """Run ``hook()`` (sync or async) after each invocation, before the sandbox may be frozen.

    Returns ``hook``, so it works as a decorator. Registering the same hook twice runs it once.
    """
    if not callable(hook):
        raise TypeError(f"an after-invocation hook must be callable, not {type(hook).__name__}")
    if hook not in _hooks:
        _hooks.append(hook)
    return hook


def remove_after_invocation(hook: Hook) -> None:
    """Stop running ``hook`` (a hook never registered is ignored)."""
    if hook in _hooks:
        _hooks.remove(hook)


def registered() -> bool:
    """Whether any hook is registered (the loops skip all the work when none is: the common case)."""
    return bool(_hooks)


async def run_hooks(deadline: float | None) -> None:
    """Run every hook; ``deadline`` is a ``time.monotonic()`` past which async hooks are stopped.

    Never raises for a hook's fault.
    """
    import asyncio  # the loops that call this run on asyncio; importing the package alone must not load it

    for hook in list(_hooks):
        name = getattr(hook, "__qualname__", repr(hook))
        try:
            result = hook()
            if inspect.isawaitable(result):
                budget = None if deadline is None else deadline - time.monotonic()
                if budget is not None and budget <= 0:  # no time left: never started, never awaited
                    if inspect.iscoroutine(result):
                        result.close()
                    raise asyncio.TimeoutError
                await asyncio.wait_for(_awaited(result), budget)
        except asyncio.TimeoutError:
            logger.warning("after-invocation hook %s stopped: the invocation's time ran out", name)
        except Exception:
            logger.exception("after-invocation hook %s failed", name)


async def _awaited(result: Awaitable[Any]) -> Any:
    return await result
