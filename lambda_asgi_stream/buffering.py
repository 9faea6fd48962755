"""Models of what Lambda does to a response stream on its way to the client. No I/O.

Used by the local emulator and the test transport, so that a laptop shows what production users see.

Hold-back of small writes (docs/wire-format.md, "Lambda's hold-back of small writes"): Lambda does not
forward each write of a streamed response at once. Writes smaller than a threshold sit in the service
until more data arrives or the response ends. The threshold is not documented: users measured about 100 KB
(betterdev.blog 2023-09, "make each chunk at least 100 KB"; aws-lambda-nodejs-runtime-interface-client
#102) and, in other setups, about 16 KB (H4ad/serverless-adapter#166). The model here is the simplest
one consistent with those reports: bytes are released to the client only once ``threshold`` bytes are
pending, or when the response ends. It is a model, not a measurement of today's service; the default
(100 KiB) is the pessimistic end of the reports, so that what streams here streams there.

Bandwidth (docs/wire-format.md, "Limits"): the first 6 MB of a streamed response are uncapped, then
Lambda sends at most 2 MB/s (AWS docs, "Bandwidth limits for response streaming"; the Runtime Interface
Emulator's token bucket uses 6 MiB burst and 2 MiB/s, which is what :class:`Bandwidth` implements).
"""

from __future__ import annotations

from typing import Literal, Protocol

BufferingMode = Literal["lambda", "off"]
BUFFERING_MODES: tuple[BufferingMode, ...] = ("lambda", "off")
DEFAULT_THRESHOLD = 100 * 1024

MAX_STREAMED_BYTES = 200 * 1024 * 1024  # Lambda's streamed response limit since 2025-07-31 (AWS docs)
BANDWIDTH_BURST = 6 * 1024 * 1024
BANDWIDTH_RATE = 2 * 1024 * 1024  # bytes per second


class Release(Protocol):
    """When body bytes written by the function reach the client."""

    pending: int

    def feed(self, data: bytes) -> bytes:
        """Take bytes the function wrote; return the bytes released to the client now."""
        ...

    def end(self) -> bytes:
        """The response ended: return whatever is still held."""
        ...


class PassThrough:
    """Every write reaches the client at once (``--buffering off``)."""

    pending = 0

    def feed(self, data: bytes) -> bytes:
        return data

    def end(self) -> bytes:
        return b""


class HoldBack:
    """Bytes are held until ``threshold`` of them are pending, or the response ends.

    >>> h = HoldBack(threshold=10)
    >>> h.feed(b"data: 1\\n\\n"), h.feed(b"x"), h.end()
    (b'', b'data: 1\\n\\nx', b'')
    """

    def __init__(self, threshold: int = DEFAULT_THRESHOLD) -> None:
        if threshold < 1:
            raise ValueError("the hold-back threshold must be at least 1 byte")
        self.threshold = threshold
        self._held: list[bytes] = []
        self.pending = 0

    def feed(self, data: bytes) -> bytes:
        self._held.append(data)
        self.pending += len(data)
        if self.pending < self.threshold:
            return b""
        return self.end()

    def end(self) -> bytes:
        out = b"".join(self._held)
        self._held.clear()
        self.pending = 0
        return out


def make_release(mode: str, threshold: int = DEFAULT_THRESHOLD) -> Release:
    """The release model for ``--buffering lambda`` or ``--buffering off``."""
    if mode == "off":
        return PassThrough()
    if mode == "lambda":
        return HoldBack(threshold)
    raise ValueError(f"buffering must be one of {', '.join(BUFFERING_MODES)}, not {mode!r}")


class Bandwidth:
    """A token bucket: ``burst`` bytes at once, then ``rate`` bytes per second.

    >>> b = Bandwidth(burst=10, rate=5)
    >>> b.delay(8, now=0.0), b.delay(4, now=0.0)
    (0.0, 0.4)
    """

    def __init__(self, burst: int = BANDWIDTH_BURST, rate: int = BANDWIDTH_RATE) -> None:
        self.burst = burst
        self.rate = rate
        self._tokens = float(burst)
        self._at: float | None = None

    def delay(self, size: int, now: float) -> float:
        """Seconds to wait before sending ``size`` more bytes at time ``now``."""
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= size
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate
