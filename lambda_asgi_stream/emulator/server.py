"""``serve``: the front door on uvicorn, the sandboxes, ``--reload``, and a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from .._errors import LambdaAsgiStreamError
from .front_door import FrontDoor, StreamCut
from .options import PREFIX, EmulatorOptions, host_port, say
from .sandbox import Sandbox, SandboxPool

logger = logging.getLogger("lambda_asgi_stream.emulator")


class _HideStreamCut(logging.Filter):
    """uvicorn logs every app exception; a deliberate cut is already reported on the console."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


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
            say(f"changed: {', '.join(changed[:5])}; restarting the app")
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


def _protocol_class(head_timeout: float) -> Any:
    """uvicorn's h11 protocol, plus a bound on the time a client may take to send its request head.

    uvicorn has none: a client trickling its head a byte at a time (slowloris), or connecting and sending
    nothing, would hold its connection for ever. The timer runs from the connection (or from the first byte
    of each later request on a kept-alive one) until the head is complete, as nginx's
    ``client_header_timeout`` does; the body is not bounded here (Lambda's own limits apply to it).
    """
    import asyncio

    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self.conn.their_state is h11.IDLE and self._head_timer is None:
                self._arm()  # the first byte of the next request on a kept-alive connection
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(head_timeout, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                logger.debug("closed a connection that sent no request head within %g s", head_timeout)
                self.transport.close()

    return Protocol


async def _stop_on_signal(server: Any, front: FrontDoor, sandboxes: list[Sandbox]) -> None:
    """First signal: refuse new requests, stop the sandboxes (their requests end), stop uvicorn."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if front.closing:
                server.force_exit = True
                continue
            say(f"{signal.Signals(signum).name}: shutting down")
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
            # The client's X-Forwarded-* headers are data for the app, never the address that connected
            # (uvicorn trusts them from 127.0.0.1 by default).
            proxy_headers=False,
            # h11 always: the same wire behaviour whether or not httptools is installed.
            http=_protocol_class(options.head_timeout),
            timeout_graceful_shutdown=1,
        )
        server = _server_class()(config)
        group.start_soon(_stop_on_signal, server, front, sandboxes)
        for sandbox in sandboxes:
            await group.start(sandbox.run)
        if options.reload:
            await group.start(_watch, Path.cwd(), sandboxes)
        print(
            f"{PREFIX} serving {options.app} ({options.integration}, {options.invoke_mode}, "
            f"buffering {options.buffering}) on http://{host_port(options.host, port)}",
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
