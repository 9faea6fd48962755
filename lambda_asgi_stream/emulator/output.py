"""A sandbox's stdout and stderr: passed through to the console, and the last 4 KB kept for ``LogResult``.

Lambda returns "the last 4 KB of the execution log" with ``LogType: Tail`` (Invoke API reference). The
runtime child writes into one end of a socket pair per stream; the sandbox forwards what arrives to its own
stdout or stderr, and keeps a tail. A socket pair rather than a pipe because anyio can wait on a socket in
every version we support. :meth:`SandboxOutput.since` first reads whatever is already waiting, without
blocking, so output the function printed before it finished its response is always counted: the child
wrote it before the response's last bytes, and the kernel holds it for us from that moment.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Awaitable, Callable
from typing import IO

import anyio

TAIL_BYTES = 4096
_READ_BYTES = 65536
# Reads per wake-up: a child that prints without pause must not keep the event loop to itself. Far more
# than a socket buffer holds, so a drain still takes in everything already written.
_MAX_READS = 64

# anyio 4.7 renamed wait_socket_readable (deprecated since) to wait_readable.
_wait_readable: Callable[[socket.socket], Awaitable[None]] = (
    getattr(anyio, "wait_readable", None) or anyio.wait_socket_readable
)


class SandboxOutput:
    """The child's output streams. ``stdout``/``stderr`` are the descriptors to give the child."""

    def __init__(self) -> None:
        self._streams: list[tuple[socket.socket, socket.socket, Callable[[], IO[bytes]]]] = []
        for console in (lambda: sys.stdout.buffer, lambda: sys.stderr.buffer):
            ours, child = socket.socketpair()
            ours.setblocking(False)
            self._streams.append((ours, child, console))
        self.stdout = self._streams[0][1].fileno()
        self.stderr = self._streams[1][1].fileno()
        self._tail = bytearray()
        self.written = 0  # bytes of output so far: a mark for :meth:`since`

    async def pump(self) -> None:
        """Forward the output as it comes, until cancelled."""
        async with anyio.create_task_group() as group:
            for ours, _, console in self._streams:
                group.start_soon(self._pump, ours, console)

    async def _pump(self, ours: socket.socket, console: Callable[[], IO[bytes]]) -> None:
        while True:
            await _wait_readable(ours)
            self._read(ours, console)

    def _read(self, ours: socket.socket, console: Callable[[], IO[bytes]]) -> None:
        for _ in range(_MAX_READS):
            try:
                data = ours.recv(_READ_BYTES)
            except BlockingIOError:
                return
            if not data:
                return
            try:
                out = console()
                out.write(data)
                out.flush()
            except (OSError, ValueError):  # the console went away (a closed pipe): keep the tail anyway
                pass
            self.written += len(data)
            self._tail += data
            del self._tail[:-TAIL_BYTES]

    def drain(self) -> None:
        """Take in what the child has written so far (it is in the sockets already)."""
        for ours, _, console in self._streams:
            self._read(ours, console)

    def since(self, mark: int) -> bytes:
        """The output after ``mark`` (a past :attr:`written`), its last 4 KB at most."""
        self.drain()
        count = min(self.written - mark, len(self._tail))
        return bytes(self._tail[len(self._tail) - count :]) if count > 0 else b""

    def close(self) -> None:
        for ours, child, _ in self._streams:
            ours.close()
            child.close()
