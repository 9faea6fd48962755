"""The front door: the HTTP server browsers and curl talk to (an ASGI app that uvicorn serves).

Each request becomes the event of the chosen integration (``events.build``), goes to a free sandbox, and
the sandbox's output streams back to the client as it arrives (:mod:`.response`). The function timeout
runs from the moment a runtime takes the invocation, as in Lambda; at the timeout the sandbox is killed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc

from .._http import loggable, loggable_target
from .._types import Receive, Scope, Send
from ..events.build import build_event
from .invoke_api import InvokeAPI, Responder, route
from .local_api import InvocationEvent, StreamData
from .options import INIT_ALLOWANCE_S, MAX_REQUEST_BYTES, EmulatorOptions, host_port, say
from .response import ClientResponse, RequestLog, plain_response
from .sandbox import Sandbox, SandboxPool

logger = logging.getLogger("lambda_asgi_stream.emulator")


class StreamCut(Exception):
    """Raised from the front door to make the HTTP server drop the connection mid-body."""


class _ClientLeft(Exception):
    """The client closed its connection before its request body was complete."""


class _Lease:
    """A sandbox held for one invocation, given back exactly once: as soon as the function's part is over
    (its last word, its timeout), whatever the client still has to read."""

    def __init__(self, pool: SandboxPool, sandbox: Sandbox, stream: AsyncIterator[InvocationEvent]) -> None:
        self.pool = pool
        self.sandbox = sandbox
        self.stream = stream
        self.released = False

    async def close_stream(self) -> None:
        """Stop listening: what the sandbox still sends for this invocation is dropped."""
        with anyio.CancelScope(shield=True):
            await self.stream.aclose()  # type: ignore[attr-defined]

    async def release(self) -> None:
        if not self.released:
            self.released = True
            await self.close_stream()
            self.pool.release(self.sandbox)


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
        self.invoke_api = InvokeAPI(self._invoke_on_free_sandbox, tasks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        # Request text is the client's: escaped, so that it cannot forge console lines (as uvicorn's log).
        log = RequestLog(loggable(scope["method"]), loggable_target(scope["path"], scope["query_string"]))
        try:
            cut = await self._serve(scope, receive, send, log)
        finally:
            logger.info("%s", log.line())
        if cut:
            raise StreamCut(log.end)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, log: RequestLog) -> bool:
        if self.closing:
            log.status, log.end = 503, "shutting-down"
            await plain_response(send, 503, "The emulator is shutting down\n")
            return False
        try:
            body = await _read_body(receive)
        except _ClientLeft:
            # Lambda is invoked with a complete request only; a half-uploaded one never reaches it.
            log.end = "client-gone"
            return False
        api = None if body is None else route(scope)
        if api is not None and body is not None:  # a Lambda Invoke API call: its body is the event
            await self.invoke_api.serve(api, scope, body, receive, send, log)
            return False
        # Lambda's limit is on the invocation payload, the event as JSON (a binary body is base64 in it).
        event = None if body is None else json.dumps(self._event(scope, body)).encode("utf-8")
        if event is None or len(event) > MAX_REQUEST_BYTES:
            await self._too_large(send, log, None if event is None else len(event))
            return False
        sandbox = await self.pool.acquire()
        label = f"{log.method} {log.path}"
        return await self._invoke(sandbox, event, receive, ClientResponse(send, log, self.options, label))

    async def _invoke_on_free_sandbox(
        self, event: bytes, receive: Receive, responder: Callable[[Sandbox], Responder]
    ) -> bool:
        sandbox = await self.pool.acquire()
        return await self._invoke(sandbox, event, receive, responder(sandbox))

    async def _too_large(self, send: Send, log: RequestLog, event_bytes: int | None) -> None:
        log.status, log.end = 413, "error:RequestTooLarge"
        size = "its body alone is larger" if event_bytes is None else f"its event is {event_bytes} bytes"
        text = (
            f"Request over Lambda's {MAX_REQUEST_BYTES} byte (6 MB) invoke payload limit: {size} "
            "(the limit is on the event as JSON; a binary body travels in it base64-encoded, 4/3 its size)"
        )
        say(f"{log.method} {log.path}: {text}; sent 413")
        await plain_response(send, 413, text + "\n")

    def _event(self, scope: Scope, body: bytes) -> dict[str, Any]:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        client = scope.get("client") or ("127.0.0.1", 0)
        host = next((v for k, v in headers if k == "host"), host_port(self.options.host, self.port))
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

    async def _invoke(self, sandbox: Sandbox, event: bytes, receive: Receive, responder: Responder) -> bool:
        """Run one invocation on ``sandbox`` (which this releases); True when the client's response is cut."""
        timeout = self.options.timeout
        # Until a runtime takes the invocation, allow for a (re)starting one; from then on the function
        # timeout runs, as in Lambda.
        waiting = anyio.CancelScope(deadline=anyio.current_time() + timeout + INIT_ALLOWANCE_S)
        taken = False

        def on_taken() -> None:
            nonlocal taken
            taken = True
            waiting.deadline = anyio.current_time() + timeout

        lease = _Lease(self.pool, sandbox, sandbox.invoke(event, timeout, on_taken))
        last: InvocationEvent | None = None  # the sandbox's last word for this invocation
        handed_off = False
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(_watch_client, receive, responder)
                with waiting:
                    async for item in lease.stream:
                        if not isinstance(item, StreamData):
                            last = item
                            break
                        await responder.handle(item)
                        if responder.ended:
                            break
                if waiting.cancelled_caught:
                    await self._timed_out(lease, responder, taken)
                elif last is not None or not responder.ended:
                    # The function is done: its sandbox is free before the client has read the rest.
                    await lease.release()
                    if last is not None:
                        await responder.handle(last)
                else:
                    # The client's response ended early (a limit); the function is still writing. Lambda
                    # lets it run to its end or its timeout; the sandbox serves nobody else meanwhile.
                    self.tasks.start_soon(self._drain, lease, waiting.deadline)
                    handed_off = True
                group.cancel_scope.cancel()
            await responder.finish()
        finally:
            if not handed_off:
                await lease.release()
        return responder.cut

    async def _timed_out(self, lease: _Lease, responder: Responder, taken: bool) -> None:
        timeout = self.options.timeout
        # Stop listening first: the dying sandbox fails what it still has in flight, and that must not wait
        # for a reader (this task) that is busy killing it.
        await lease.close_stream()
        if taken:
            message = f"Task timed out after {timeout:.2f} seconds"
            await lease.sandbox.kill("Sandbox.Timedout", message)
            error = ("Sandbox.Timedout", f"{message} (--timeout): the sandbox was killed, as Lambda does")
        else:
            message = (
                f"no runtime took the invocation within {timeout + INIT_ALLOWANCE_S:.0f} s "
                "(is the app's import hanging?)"
            )
            await lease.sandbox.kill("Runtime.Unavailable", message)
            error = ("Runtime.Unavailable", message)
        await lease.release()  # the client's response may still take a while: the sandbox is not its
        await responder.fail(*error)

    async def _drain(self, lease: _Lease, deadline: float) -> None:
        try:
            with anyio.CancelScope(deadline=deadline) as scope:
                async for _ in lease.stream:
                    pass
            if scope.cancelled_caught:
                await lease.close_stream()
                message = f"Task timed out after {self.options.timeout:.2f} seconds"
                say(f"{message}: the sandbox was killed, as Lambda does")
                await lease.sandbox.kill("Sandbox.Timedout", message)
        finally:
            await lease.release()


async def _watch_client(receive: Receive, responder: Responder) -> None:
    """Notice a client that leaves: Lambda keeps running (docs/failure-policy.md), so only the log changes."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            responder.client_gone = True
            return


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body; None once it is over the limit (no need to read more to know)."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientLeft
        body += message.get("body", b"")
        if len(body) > MAX_REQUEST_BYTES:
            return None
        if not message.get("more_body", False):
            return bytes(body)
