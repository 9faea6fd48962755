"""The padding flusher: push small writes past Lambda's hold-back, harmlessly for the content type. No I/O.

Lambda holds writes of a streamed response until enough bytes are pending (about 100 KB in the reports;
see :mod:`buffering`), so an SSE token or a progress line can reach the client seconds late. The known
workaround pads each write to that size with whitespace (betterdev.blog 2023-09). Padding every write is
wasteful, and whitespace is not harmless everywhere, so the policy here is:

* pad only when needed, and as rarely as the latency target allows: a written byte may wait at most
  ``latency_ms`` (T) in the service, so pending bytes are pushed out once the oldest of them has waited
  most of T (:data:`LATENCY_SHARE`; the rest is left for the write itself and the timer's jitter), and
  not before: whatever the app writes meanwhile goes out with the same push. A steady stream of D
  seconds then costs about ``ceil(D / T)`` pushes, which is what it must cost (a stream with a pause at
  least every T needs a push per T), and a fast burst costs nothing. ``latency_ms = 0`` is the eager
  policy instead: push whenever the app has gone idle (no write for ``idle_ms``), lowest latency, most
  padding;
* pad only just enough: ``threshold - pending`` bytes, where ``pending`` follows the same model of the
  service as the emulator (bytes released once ``threshold`` are pending);
* pad only at a safe boundary, in a form the content type ignores:

  =======================================  ==========================================  ====================
  content type                             boundary                                    padding
  =======================================  ==========================================  ====================
  ``text/event-stream``                    after a complete line                       ``:`` comment lines
  ``text/html``                            after a tag (``>``) or whitespace           spaces
  NDJSON / JSON Lines                      at a line start                             spaces (leading
                                                                                       whitespace of the
                                                                                       next value)
  anything else, ``application/json``,     never (unless a custom pad function is      —
  binary, any ``content-encoding``         given)
  =======================================  ==========================================  ====================

  (HTML caveat: spaces after a tag are invisible except inside ``<pre>`` and ``<textarea>``.)
* a per-response budget that refills: a burst of ``budget`` bytes for the first pauses, then at most
  ``rate`` bytes per second, so a long token stream keeps moving (in groups, a pad every
  ``threshold / rate`` seconds) without padding ever dominating the response or Lambda's 2 MB/s
  bandwidth. With ``rate = 0`` the budget is a hard cap: once spent, padding stops (logged once).

Modes: ``none`` (never pad), ``explicit`` (pad only when the app asks, see :data:`FLUSH_EXTENSION`),
``idle`` (pad when the app goes idle, and when it asks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

from ._types import FrozenRecord

PaddingMode = Literal["none", "explicit", "idle"]
PADDING_MODES: tuple[PaddingMode, ...] = ("none", "explicit", "idle")

#: Response header an app sets to choose padding per response (``none``, ``explicit`` or ``idle``);
#: the adapter consumes it: it never reaches the client.
PADDING_HEADER = "x-lambda-padding"
#: ``scope["extensions"][FLUSH_EXTENSION]`` is an ``async () -> None`` that pads out what is pending now.
FLUSH_EXTENSION = "lambda_asgi_stream.flush"


async def flush(scope: Mapping[str, Any]) -> None:
    """Push what this response has written so far past Lambda's hold-back, now.

    >>> await lambda_asgi_stream.flush(request.scope)  # doctest: +SKIP

    For apps that know when a chunk matters (the last token of a sentence, a progress line). It pads as
    the ``idle`` policy would, at a safe boundary for the content type, and does nothing where there is
    nothing to push, the response is not padded (``none``, binary, JSON), or the app runs elsewhere
    (uvicorn, tests), so it is safe to call everywhere. A body message with ``"flush": True`` does the same.
    """
    extensions = scope.get("extensions") or {}
    push = extensions.get(FLUSH_EXTENSION)
    if push is not None:
        await push()


DEFAULT_IDLE_MS = 5.0
#: The latency target: the longest a written byte may wait in the service before the flusher pushes it.
DEFAULT_LATENCY_MS = 200.0
#: Share of the latency target the oldest pending byte waits before the push is made: the push itself
#: (a write, a timer that fires a little late on a busy loop) must still land within the target.
LATENCY_SHARE = 0.9
DEFAULT_THRESHOLD = 100 * 1024
#: The burst: below Lambda's 6 MB of uncapped bandwidth, so short streams never reach the 2 MB/s cap.
DEFAULT_BUDGET = 4 * 1024 * 1024
#: Refill of the budget, bytes/s: at the 100 KiB threshold about five pushes a second (tokens arrive in
#: groups at most ~200 ms apart), a quarter of the 2 MB/s Lambda allows past the first 6 MB.
DEFAULT_RATE = 512 * 1024
#: Padding one response may spend in all, refills included: far below Lambda's 200 MB streamed limit,
#: which a stream trickling tokens for 15 minutes would otherwise reach. Past it, padding stops (logged).
MAX_PADDING_TOTAL = 64 * 1024 * 1024

_SSE_LINE = 4096  # long comment lines are legal, but some proxies and parsers cap line length
#: Media types of NDJSON / JSON Lines (padding and end records treat them alike).
NDJSON_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
        "application/json-lines",
    }
)

PadFunction = Callable[[bytes, int], bytes]
"""``pad(tail, n)``: padding of about ``n`` bytes to write after ``tail`` (the last bytes written), or b""
when this is not a safe place."""


def _sse_pad(tail: bytes, n: int) -> bytes:
    if not tail or tail[-1:] not in (b"\n", b"\r"):
        return b""
    lines, left = [], max(n, 2)
    while left > 0:
        width = min(left, _SSE_LINE)
        lines.append(b":" + b" " * max(width - 2, 0) + b"\n")
        left -= width
    return b"".join(lines)


def _html_pad(tail: bytes, n: int) -> bytes:
    if not tail or tail[-1:] not in (b">", b" ", b"\n", b"\t", b"\r"):
        return b""
    return b" " * n


def _ndjson_pad(tail: bytes, n: int) -> bytes:
    if tail[-1:] != b"\n":
        return b""
    return b" " * n


def is_identity(content_encoding: str) -> bool:
    """Whether a ``content-encoding`` value leaves the body as it is (none, or ``identity``)."""
    encoding = content_encoding.strip()
    return not encoding or encoding.lower() == "identity"


def pad_function_for(content_type: str, content_encoding: str = "") -> PadFunction | None:
    """The safe padding for a response, or None when it must never be padded.

    >>> pad_function_for("text/event-stream; charset=utf-8")(b"data: x\\n\\n", 8)
    b':      \\n'
    >>> pad_function_for("application/json") is None
    True
    """
    if not is_identity(content_encoding):
        return None  # compressed bytes: padding would corrupt the stream
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "text/event-stream":
        return _sse_pad
    if media == "text/html":
        return _html_pad
    if media in NDJSON_TYPES:
        return _ndjson_pad
    return None


#: The bytes each pad function writes; a received piece made only of these is (almost surely) padding.
_ALPHABETS: dict[PadFunction, bytes] = {_sse_pad: b": \n", _html_pad: b" ", _ndjson_pad: b" "}


def padding_alphabet(content_type: str, content_encoding: str = "") -> bytes | None:
    """The bytes the padding of such a response is made of, or None when it is never padded.

    For readers of a stream (the emulator's log line, ``invoke``) that want to tell padding apart.
    """
    pad = pad_function_for(content_type, content_encoding)
    return None if pad is None else _ALPHABETS[pad]


class PaddingPolicy(FrozenRecord):
    """How an app's responses are padded; chosen once, overridable per response by header.

    Immutable and compared by value; ``policy.replace(mode="explicit")`` gives a changed copy.
    """

    # In the order of the constructor's parameters, which repr follows.
    __slots__ = ("mode", "idle_ms", "threshold", "budget", "rate", "pad", "latency_ms")  # noqa: RUF023

    mode: PaddingMode
    idle_ms: float
    threshold: int
    budget: int
    rate: int  # bytes/s the budget refills; 0: a hard cap
    pad: PadFunction | None  # forces this pad function for every content type
    latency_ms: float  # 0: push at every pause of idle_ms (the eager policy)

    def __init__(
        self,
        mode: PaddingMode = "none",
        idle_ms: float = DEFAULT_IDLE_MS,
        threshold: int = DEFAULT_THRESHOLD,
        budget: int = DEFAULT_BUDGET,
        rate: int = DEFAULT_RATE,
        pad: PadFunction | None = None,
        latency_ms: float = DEFAULT_LATENCY_MS,
    ) -> None:
        if mode not in PADDING_MODES:
            raise ValueError(f"padding must be one of {', '.join(PADDING_MODES)}, not {mode!r}")
        if threshold < 1 or min(idle_ms, budget, rate, latency_ms) < 0:
            raise ValueError("padding threshold must be >= 1, idle_ms, budget, rate and latency_ms >= 0")
        self._assign(mode, idle_ms, threshold, budget, rate, pad, latency_ms)

    def for_response(self, headers: list[tuple[str, str]]) -> Flusher | None:
        """A flusher for one response, or None when it is not to be padded."""
        found = {name: value for name, value in headers}
        return self.for_content(
            found.get("content-type", ""), found.get("content-encoding", ""), found.get(PADDING_HEADER, "")
        )

    def for_content(
        self, content_type: str, content_encoding: str = "", override: str = ""
    ) -> Flusher | None:
        """The same from the three headers that decide it (``override``: the ``x-lambda-padding`` value)."""
        mode = override.strip().lower() or self.mode
        if mode not in PADDING_MODES:
            mode = self.mode
        if mode == "none":
            return None
        return self.flusher(pad_function_for(content_type, content_encoding), mode)

    def flusher(self, pad: PadFunction | None, mode: PaddingMode | None = None) -> Flusher | None:
        """A flusher for a response whose content takes ``pad`` (None: never padded), under ``mode``
        (default: the policy's); the policy's own ``pad``, when set, is used instead of ``pad``."""
        mode = mode or self.mode
        pad = self.pad or pad
        if mode == "none" or pad is None:
            return None
        return Flusher(
            pad,
            self.threshold,
            self.budget,
            self.rate,
            automatic=mode == "idle",
            latency=self.latency_ms / 1000,
            idle=self.idle_ms / 1000,
        )


class Flusher:
    """Padding state of one response: what is pending in the service, and the padding budget.

    Sans-IO: times are passed in (``time.monotonic()`` seconds, or any one clock). The budget is a token
    bucket of ``budget`` bytes refilled at ``rate`` bytes/s. :meth:`push_at` says when an automatic push
    is due: ``latency`` seconds (a share of it, :data:`LATENCY_SHARE`) after the oldest pending byte was
    written, or, with ``latency = 0``, ``idle`` seconds after the last write.

    >>> f = Flusher(pad_function_for("text/event-stream"), 1000, 10**6, automatic=True, latency=0.2)
    >>> f.wrote(b"data: 1\\n\\n", now=10.0); f.wrote(b"data: 2\\n\\n", now=10.1)
    >>> round(f.push_at(last_write=10.1), 3)  # 90 % of 200 ms after the first pending write
    10.18
    """

    def __init__(
        self,
        pad: PadFunction,
        threshold: int,
        budget: int,
        rate: int = 0,
        *,
        automatic: bool,
        latency: float = 0.0,
        idle: float = 0.0,
    ) -> None:
        self.pad = pad
        self.threshold = threshold
        self.budget = budget
        self.rate = rate
        self.automatic = automatic
        self.latency = latency
        self.idle = idle
        self._tokens = float(budget)
        # The other fields start at their class-level values below (one flusher per streamed response).

    pending = 0
    since = 0.0  # when the oldest pending byte was written (meaningful while pending)
    padding_bytes = 0
    exhausted = False  # a hard budget (rate 0) is spent
    throttled = False  # the burst is spent; pads now wait for the refill
    _at: float | None = None
    tail = b""  # the last bytes written (at most 16), which padding must follow safely

    def wrote(self, data: bytes, now: float = 0.0) -> None:
        """Account for bytes written at ``now`` (model: released once ``threshold`` are pending)."""
        if not data:
            return
        self.tail = data[-16:] if len(data) >= 16 else (self.tail + data)[-16:]
        if not self.pending:
            self.since = now
        self.pending += len(data)
        if self.pending >= self.threshold:
            self.pending = 0

    def push_at(self, last_write: float) -> float:
        """When an automatic push of the pending bytes is due (``inf``: nothing pending).

        ``last_write``: when the app last wrote. With a latency target, the push waits for the oldest
        pending byte to have waited :data:`LATENCY_SHARE` of it, whatever the app writes meanwhile; without
        (``latency = 0``), it waits for the app to pause for ``idle``.
        """
        if not self.pending:
            return math.inf
        if self.latency > 0:
            return self.since + self.latency * LATENCY_SHARE
        return last_write + self.idle

    def delay(self, now: float) -> float:
        """Seconds until the pending bytes can be pushed out: 0 now, ``inf`` never (a spent hard cap)."""
        if self.pending == 0 or self.exhausted:
            return 0.0 if self.pending == 0 else math.inf
        self._refill(now)
        need = len(self.pad(self.tail, self.threshold - self.pending))  # what padding() will write
        if self.padding_bytes + need > MAX_PADDING_TOTAL:
            self.throttled = self.exhausted = True
            return math.inf
        if self._tokens >= need:
            return 0.0
        self.throttled = True
        if self.rate == 0:
            return math.inf
        return (need - self._tokens) / self.rate

    def padding(self, now: float) -> bytes:
        """Padding that would push the pending bytes out now; b"" when none is due, safe or affordable."""
        if self.pending == 0 or self.exhausted:
            return b""
        data = self.pad(self.tail, self.threshold - self.pending)
        if not data:
            return b""
        self._refill(now)
        if len(data) > self._tokens or self.padding_bytes + len(data) > MAX_PADDING_TOTAL:
            self.throttled = True
            self.exhausted = self.rate == 0 or self.padding_bytes + len(data) > MAX_PADDING_TOTAL
            return b""
        self._tokens -= len(data)
        self.padding_bytes += len(data)
        self.pending = 0
        self.tail = data[-16:]
        return data

    def _refill(self, now: float) -> None:
        if self._at is not None and self.rate:
            self._tokens = min(float(self.budget), self._tokens + (now - self._at) * self.rate)
        self._at = now
