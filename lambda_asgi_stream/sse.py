"""Server-Sent Events on Lambda: event formatting, heartbeats, and a terminal event on failure. No I/O.

* :func:`format_event` writes one event with ``event``/``id``/``retry`` fields (WHATWG HTML, "Server-sent
  events", 9.2.6), splitting multi-line data into several ``data:`` lines as the format requires.
* Heartbeats: API Gateway closes a streamed response after an idle time (30 s for edge-optimized REST
  endpoints, 5 min for regional and private ones: API Gateway developer guide, "Stream the integration
  response for your proxy integrations"; docs/wire-format.md, "Limits"), and CloudFront in front of a
  Function URL has a 30 s origin read timeout by default. When an SSE response has been silent for
  ``heartbeat_s``, the runtime writes a comment line (``: heartbeat``), which every SSE client ignores.
  Combined with the padding flusher it reaches the client at once.
* A terminal event, opt-in: when the app fails or runs out of time mid-stream, the runtime writes
  ``event: error`` with a JSON ``data`` line before ending the stream with the error trailers, so a browser
  can tell a cut stream from a finished one (Lambda does not forward the trailers to HTTP clients).

These work below the app, on the bytes, so sse-starlette's ``EventSourceResponse`` and a plain
``StreamingResponse`` need no change.
"""

from __future__ import annotations

import json

from ._types import FrozenRecord

# One comment line and no blank line: written after any complete line, even inside an event the app has
# not finished ("event: x\n" ... "data: y\n\n"), it never dispatches or splits that event (WHATWG HTML,
# "Interpreting an event stream": a blank line dispatches, a line starting with ":" is ignored).
HEARTBEAT = b": heartbeat\n"
DEFAULT_HEARTBEAT_S = 20.0


class SSEOptions(FrozenRecord):
    """SSE behaviour of the runtime for ``text/event-stream`` responses (immutable, compared by value)."""

    # In the order of the constructor's parameters, which repr follows.
    __slots__ = ("heartbeat_s", "error_event", "error_detail")  # noqa: RUF023

    heartbeat_s: float  # 0 turns heartbeats off
    error_event: bool
    # The terminal event carries the exception's text only when this is set too: an error message can
    # hold what a browser must not see (a password in a connection string, a path).
    error_detail: bool

    def __init__(
        self, heartbeat_s: float = DEFAULT_HEARTBEAT_S, error_event: bool = False, error_detail: bool = False
    ) -> None:
        self._assign(heartbeat_s, error_event, error_detail)


def is_event_stream(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "text/event-stream"


def format_event(
    data: str | None = None,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> bytes:
    """One SSE event, ready to write.

    >>> format_event("line 1\\nline 2", event="token", id="7")
    b'event: token\\nid: 7\\ndata: line 1\\ndata: line 2\\n\\n'
    """
    lines: list[str] = []
    if comment is not None:
        lines.extend(f": {part}" for part in comment.splitlines() or [""])
    for name, value in (("event", event), ("id", id)):
        if value is not None:
            if "\n" in value or "\r" in value:
                raise ValueError(f"SSE {name} must be one line")
            lines.append(f"{name}: {value}")
    if retry is not None:
        lines.append(f"retry: {int(retry)}")
    if data is not None:
        lines.extend(f"data: {part}" for part in data.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def terminal_error_event(error_type: str, message: str, tail: bytes) -> bytes:
    """The opt-in ``event: error`` written before the error trailers; starts a fresh line if needed."""
    payload = json.dumps({"type": error_type, "message": message})
    prefix = b"" if tail.endswith((b"\n\n", b"\r\n\r\n")) else (b"\n" if tail.endswith(b"\n") else b"\n\n")
    return prefix + format_event(payload, event="error")
