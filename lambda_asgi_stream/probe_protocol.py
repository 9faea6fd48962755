"""The probe protocol: measure Lambda's hold-back of small writes on a real deployment. No I/O.

Lambda does not forward each write of a streamed response at once; it holds small writes until enough
bytes are pending (docs/wire-format.md, "Lambda's hold-back of small writes"). How many is not
documented (reports range from 16 KB to 100 KB, some also see a release after 1.5-2 s), and the padding
flusher pays for every byte it assumes. ``lambda-asgi-stream probe URL`` measures it:

* the deployed runtime answers a *probe request* only when ``LAMBDA_ASGI_STREAM_PROBE_TOKEN`` is set and
  the request's ``x-lambda-asgi-stream-probe`` header carries that token (compared in constant time);
  any other request, a wrong token included, goes to the app as usual;
* the request's ``x-lambda-asgi-stream-probe-plan`` header says what to write: ``SIZE:PAUSE_MS`` steps,
  comma-separated (``65536:1000`` writes 64 KiB, waits one second, then ends the response). A plan is
  bounded (:data:`MAX_STEPS`, :data:`MAX_PROBE_BYTES`, :data:`MAX_PROBE_PAUSE_S`), so a token holder
  cannot make the function send much, and strangers cannot make it send anything;
* the client times when the first body bytes arrive and when the body ends. Network and start-up delays
  cancel out: a write the service forwards at once arrives a whole pause before the end, a write it holds
  arrives with the end. :class:`ThresholdSearch` turns those gaps into the threshold by bisection.

The search, sans-IO (the caller runs each plan and reports the gap it measured):

1. one byte, then a long pause (``time_pause``): arriving with the end means Lambda holds it that long
   (no time-based release within the pause); arriving earlier gives the time after which it is released
   anyway; arriving at once means there is no hold-back at all;
2. :data:`MAX_PROBE_BYTES` then a short pause (``pause``): must be forwarded, or the threshold is larger
   than a probe may send;
3. bisection on a geometric scale between the largest size seen held and the smallest seen forwarded,
   until they are within ``ratio`` of each other. The smallest forwarded size is the answer: padding to
   it is sure to push a write out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import ProbeError
from .config import ENV_PROBE_TOKEN  # enables probe requests on a deployed function (unset: the app's)

__all__ = ["ENV_PROBE_TOKEN", "PLAN_HEADER", "PROBE_HEADER", "ProbeResult", "Step", "ThresholdSearch"]
#: Request header with the token; the response to a probe carries it too, with the value ``1``.
PROBE_HEADER = "x-lambda-asgi-stream-probe"
#: Request header with the plan: ``SIZE:PAUSE_MS`` steps, comma-separated.
PLAN_HEADER = "x-lambda-asgi-stream-probe-plan"

MAX_STEPS = 8
#: The most body bytes one probe request makes the function write (far above the reported 100 KB).
MAX_PROBE_BYTES = 1024 * 1024
#: The longest one probe request makes the function wait, in all.
MAX_PROBE_PAUSE_S = 10.0

DEFAULT_PAUSE_S = 1.0  # below the 1.5-2 s after which some report a time-based release
DEFAULT_TIME_PAUSE_S = 4.0
DEFAULT_RATIO = 1.04  # the answer is at most 4 % above the true threshold


@dataclass(frozen=True)
class Step:
    """Write ``size`` bytes (maybe none), then wait ``pause`` seconds."""

    size: int
    pause: float


def format_plan(steps: Iterable[Step]) -> str:
    """The plan header's value.

    >>> format_plan([Step(65536, 1.0), Step(1, 0.0)])
    '65536:1000,1:0'
    """
    return ",".join(f"{step.size}:{round(step.pause * 1000)}" for step in steps)


def parse_plan(text: str) -> tuple[Step, ...]:
    """Read a plan header; raise :class:`ProbeError` for anything malformed or beyond the bounds.

    >>> parse_plan("1024:250")
    (Step(size=1024, pause=0.25),)
    """
    steps = []
    for item in text.split(","):
        size, sep, pause_ms = item.strip().partition(":")
        if not sep or not size.isdigit() or not pause_ms.isdigit():
            raise ProbeError(f"a probe plan is SIZE:PAUSE_MS steps, comma-separated; not {item.strip()!r}")
        steps.append(Step(int(size), int(pause_ms) / 1000))
    if len(steps) > MAX_STEPS:
        raise ProbeError(f"a probe plan has at most {MAX_STEPS} steps, not {len(steps)}")
    if sum(step.size for step in steps) > MAX_PROBE_BYTES:
        raise ProbeError(f"a probe plan writes at most {MAX_PROBE_BYTES} bytes")
    if sum(step.pause for step in steps) > MAX_PROBE_PAUSE_S:
        raise ProbeError(f"a probe plan pauses at most {MAX_PROBE_PAUSE_S:g} s in all")
    return tuple(steps)


def token_matches(expected: str, given: bytes) -> bool:
    """Whether a request's token is the configured one, in constant time (no timing oracle)."""
    import hmac  # constant-time compare; loaded only when a probe token is configured

    return bool(expected) and hmac.compare_digest(expected.encode(), given)


@dataclass
class Measurement:
    """One probe request: what was asked, and how long before the end its first body bytes arrived."""

    phase: str
    size: int
    pause: float
    gap: float  # seconds between the first body bytes and the end of the body


@dataclass
class ProbeResult:
    """What the probe found; :meth:`settings` says what to configure."""

    threshold_bytes: int | None  # the smallest write seen forwarded at once; None: above MAX_PROBE_BYTES
    held_bytes: int  # the largest write seen held
    hold_back: bool  # False: even one byte was forwarded at once
    time_release_s: float | None  # held writes were forwarded anyway after this long (None: not seen)
    time_pause_s: float
    pause_s: float
    measurements: list[Measurement] = field(default_factory=list)

    def settings(self) -> dict[str, str]:
        """Environment variables for the function, from what was measured."""
        if not self.hold_back:
            return {"LAMBDA_ASGI_STREAM_PADDING": "none"}
        if self.threshold_bytes is None:
            return {}
        return {"LAMBDA_ASGI_STREAM_PADDING_THRESHOLD": str(self.threshold_bytes)}

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold_bytes": self.threshold_bytes,
            "held_bytes": self.held_bytes,
            "hold_back": self.hold_back,
            "time_release_s": self.time_release_s,
            "time_pause_s": self.time_pause_s,
            "pause_s": self.pause_s,
            "requests": len(self.measurements),
            "settings": self.settings(),
            "measurements": [m.__dict__ for m in self.measurements],
        }

    def report(self) -> str:
        """The human-readable summary ``lambda-asgi-stream probe`` prints."""
        lines = []
        if not self.hold_back:
            lines.append("hold-back: none (a 1-byte write was forwarded at once); padding is not needed")
        elif self.threshold_bytes is None:
            lines.append(f"hold-back: a write of {MAX_PROBE_BYTES} bytes was still held; threshold unknown")
        else:
            lines.append(
                f"hold-back threshold: {self.threshold_bytes} bytes (a write of {self.threshold_bytes} "
                f"pending bytes was forwarded at once, {self.held_bytes} was held)"
            )
        if self.hold_back:
            if self.time_release_s is None:
                lines.append(f"time-based release: none within {self.time_pause_s:g} s")
            else:
                lines.append(
                    f"time-based release: held writes are forwarded after about {self.time_release_s:.2f} s"
                )
        lines.append(f"({len(self.measurements)} probe requests)")
        settings = self.settings()
        if settings:
            lines.append("set on the function:")
            lines.extend(f"{name}={value}" for name, value in settings.items())
        return "\n".join(lines)


class ThresholdSearch:
    """Which plan to run next, and what the answers mean (see the module docstring). Sans-IO.

    >>> search = ThresholdSearch(pause=0.2, time_pause=0.5)
    >>> while (step := search.next_step()) is not None:
    ...     search.observe(step.pause if step.size >= 20000 else 0.0)  # a model: 20000-byte threshold
    >>> search.result().threshold_bytes
    20128
    """

    def __init__(
        self,
        *,
        pause: float = DEFAULT_PAUSE_S,
        time_pause: float = DEFAULT_TIME_PAUSE_S,
        ratio: float = DEFAULT_RATIO,
        max_bytes: int = MAX_PROBE_BYTES,
    ) -> None:
        if not 0 < pause <= time_pause <= MAX_PROBE_PAUSE_S:
            raise ValueError(f"need 0 < pause <= time pause <= {MAX_PROBE_PAUSE_S:g} s")
        if ratio <= 1 or not 1 < max_bytes <= MAX_PROBE_BYTES:
            raise ValueError(f"need ratio > 1 and 1 < max bytes <= {MAX_PROBE_BYTES}")
        self.pause = pause
        self.time_pause = time_pause
        self.ratio = ratio
        self.max_bytes = max_bytes
        self.held = 0  # the largest size seen held
        self.forwarded: int | None = None  # the smallest size seen forwarded at once
        self.hold_back = True
        self.time_release: float | None = None
        self.measurements: list[Measurement] = []
        self._phase = "time"
        self._step: Step | None = None

    def next_step(self) -> Step | None:
        """The plan of the next probe request (one write, one pause), or None when the search is over."""
        if self._phase == "time":
            step = Step(1, self.time_pause)
        elif self._phase == "max":
            step = Step(self.max_bytes, self.pause)
        elif self._phase == "bisect" and self.forwarded is not None and self._open():
            step = Step(self._middle(self.held, self.forwarded), self.pause)
        else:
            self._phase = "done"
            return None
        self._step = step
        return step

    def observe(self, gap: float) -> None:
        """The gap (seconds) between the first body bytes and the end, measured for :meth:`next_step`."""
        step = self._step
        if step is None:
            raise RuntimeError("observe() without a step from next_step()")
        self._step = None
        self.measurements.append(Measurement(self._phase, step.size, step.pause, gap))
        # Released before half the short pause is over counts as forwarded at once; later as held.
        forwarded = gap > step.pause - self.pause / 2
        if self._phase == "time":
            released_after = step.pause - gap
            if forwarded:
                self.hold_back = False
                self.forwarded = 1
                self._phase = "done"
                return
            self.held = 1
            if gap > self.pause / 2:  # out before the end, but not at once: released by time
                self.time_release = round(released_after, 3)
            self._phase = "max"
            return
        if forwarded:
            self.forwarded = step.size if self.forwarded is None else min(self.forwarded, step.size)
        else:
            self.held = max(self.held, step.size)
        self._phase = "bisect" if self.forwarded is not None else "done"

    def result(self) -> ProbeResult:
        return ProbeResult(
            threshold_bytes=self.forwarded,
            held_bytes=self.held,
            hold_back=self.hold_back,
            time_release_s=self.time_release,
            time_pause_s=self.time_pause,
            pause_s=self.pause,
            measurements=self.measurements,
        )

    def _open(self) -> bool:
        assert self.forwarded is not None
        return self.forwarded - self.held > 1 and self.forwarded > self.held * self.ratio

    @staticmethod
    def _middle(low: int, high: int) -> int:
        middle = round(math.sqrt(max(low, 1) * high))
        return min(max(middle, low + 1), high - 1)


def response_headers(headers: Mapping[str, str]) -> bool:
    """Whether a response's headers (lower-case names) say it is the runtime's answer to a probe."""
    return headers.get(PROBE_HEADER, "") == "1"
