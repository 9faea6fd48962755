"""What the client of one request receives: the sandbox's output turned into an HTTP response.

Lambda's rules on the way out: the streaming prelude gives status and headers (at most 16 KiB of it), the
body passes through the service's hold-back of small writes and its bandwidth cap (``buffering``), a
streamed body stops at 200 MB, a buffered one at 6 MB. What the client sees when an invocation fails
(docs/failure-policy.md): before the response started, a ``502``; after it, the status is committed, so
the body is cut (whatever the service still held is sent, then the connection is closed without the final
chunk). Either way the error is printed on the console.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import anyio

from .._errors import LambdaAsgiStreamError, ResponseTooLargeError
from .._http import loggable
from .._types import Message, Send
from ..buffering import MAX_STREAMED_BYTES, Bandwidth, make_release
from ..encoder import HOP_BY_HOP, MAX_PRELUDE_BYTES, PreludeDecoder, decode_buffered_response
from ..padding import padding_alphabet
from ..runtime_api import encode_buffered
from .local_api import BufferedResult, InvocationEvent, InvocationFailed, StreamData, StreamEnd
from .options import PREFIX, EmulatorOptions, error_text, say

#: What HTTP can carry as a final response (RFC 9110 15: 1xx are interim; clients know up to 5xx).
FIRST_FINAL_STATUS, LAST_STATUS = 200, 599
BODYLESS_STATUSES = frozenset({204, 304})

logger = logging.getLogger("lambda_asgi_stream.emulator")


@dataclass
class RequestLog:
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    status: int | None = None
    first_byte: float | None = None
    bytes: int = 0
    chunks: int = 0
    padding: int = 0
    end: str = "cancelled"

    def line(self) -> str:
        ttfb = "-" if self.first_byte is None else f"{(self.first_byte - self.started) * 1000:.1f}ms"
        total = (time.perf_counter() - self.started) * 1000
        return (
            f"{self.method} {self.path} {self.status if self.status is not None else '-'} "
            f"ttfb={ttfb} time={total:.1f}ms bytes={self.bytes} chunks={self.chunks} "
            f"padding={self.padding} end={self.end}"
        )


class ClientResponse:
    """Turns what the sandbox sends into what an HTTP client of Lambda receives."""

    def __init__(self, send: Send, log: RequestLog, options: EmulatorOptions, label: str) -> None:
        self._send = send
        self.log = log
        self.options = options
        self.label = label
        self.decoder = PreludeDecoder()
        self.release = make_release(options.buffering, options.buffer_threshold)
        self.bandwidth = Bandwidth() if options.bandwidth else None
        self.padding_bytes: bytes | None = None
        self.started = False  # the status line went out
        self.ended = False  # the client's response is over (complete, 502, or cut)
        self.cut = False
        self.client_gone = False
        self.stalled = False  # the client stopped reading: a write waited --write-timeout
        self.streamed = 0
        self.bodyless = False  # a 204 or 304: no content (RFC 9110 15.3.5, 15.4.5)
        self.dropped = False  # body bytes of a bodyless response were dropped

    async def handle(self, item: InvocationEvent) -> None:
        if isinstance(item, StreamData):
            await self._data(item.data)
        elif isinstance(item, StreamEnd):
            if item.error is not None:
                await self.fail(item.error[0], error_text(item.error[1]))
            elif self.decoder.prelude is None:
                await self.fail(
                    "Runtime.InvalidPrelude", "the stream ended before the prelude delimiter (8 NUL bytes)"
                )
            else:
                await self._write(self.release.end(), more=False)
                self._end(self._outcome())
        elif isinstance(item, BufferedResult):
            await self._buffered(item)
        elif isinstance(item, InvocationFailed):
            await self.fail(item.error_type, error_text(item.payload))

    async def _data(self, data: bytes) -> None:
        if self.ended:
            return
        if self.decoder.prelude is None:
            try:
                data = self.decoder.feed(data)
            except LambdaAsgiStreamError as exc:
                await self.fail(
                    "Runtime.InvalidPrelude",
                    f"{exc} (Lambda reads status and headers from the first {MAX_PRELUDE_BYTES} bytes)",
                )
                return
            if self.decoder.prelude is None:
                return
            prelude = self.decoder.prelude
            found = dict(prelude.headers)
            self.padding_bytes = padding_alphabet(
                found.get("content-type", ""), found.get("content-encoding", "")
            )
            headers = [*prelude.headers, *(("set-cookie", c) for c in prelude.cookies)]
            if not await self._start(prelude.status, headers):
                return
        if not data:
            return
        self.streamed += len(data)
        if self.streamed > MAX_STREAMED_BYTES:
            await self.fail(
                "Function.ResponseSizeTooLarge",
                f"the streamed response passed Lambda's {MAX_STREAMED_BYTES // 2**20} MB limit",
            )
            return
        if self.padding_bytes is not None and not data.translate(None, self.padding_bytes):
            self.log.padding += len(data)
        await self._write(self.release.feed(data), more=True)

    async def _buffered(self, item: BufferedResult) -> None:
        try:
            encode_buffered(item.payload)  # the same measure as the runtime's, which Lambda applies too
        except ResponseTooLargeError as exc:
            await self.fail(exc.error_type, str(exc))
            return
        if self.options.invoke_mode == "RESPONSE_STREAM":
            logger.warning(
                "the function returned a buffered response to a streaming invoke: a Function URL in "
                "RESPONSE_STREAM mode shows that JSON as the body. "
                "Set LAMBDA_ASGI_STREAM_INVOKE_MODE to match."
            )
        try:
            status, headers, body = decode_buffered_response(item.payload)
        except (ValueError, TypeError) as exc:
            await self.fail("Runtime.InvalidResponse", f"unreadable buffered response: {exc}")
            return
        if await self._start(status, headers):
            await self._write(body, more=False)
            self._end(self._outcome())

    async def fail(self, error_type: str, message: str) -> None:
        """The invocation failed: 502 if nothing was sent yet, else cut the response where it is."""
        if self.ended:
            return
        self._end(f"error:{loggable(error_type)}")
        if not self.started:
            # Lambda answers a function error with 502 (Function URL, API Gateway proxy).
            say(f"{self.label}: {loggable(error_type)}: {loggable(message)}\n{PREFIX} the client got 502")
            self.log.status = 502
            self.started = True
            await plain_response(self._client, 502, "Internal Server Error\n")
            return
        sent = self.log.bytes + self.release.pending
        outcome = f"status {self.log.status} was already sent: the response was cut after {sent} body bytes"
        say(f"{self.label}: {loggable(error_type)}: {loggable(message)}\n{PREFIX} {outcome}")
        # What the service still held goes out; then the connection closes without the final chunk.
        await self._write(self.release.end(), more=True)
        self.cut = True

    async def finish(self) -> None:
        if not self.ended:
            await self.fail("Runtime.NoResponse", "the invocation ended without a response")

    def _end(self, reason: str) -> None:
        self.ended = True
        self.log.end = reason

    def _outcome(self) -> str:
        return "client-stalled" if self.stalled else "client-gone" if self.client_gone else "complete"

    async def _start(self, status: int, headers: list[tuple[str, str]]) -> bool:
        """Send the status line and headers; False (and a 502) when HTTP cannot carry the status."""
        if not FIRST_FINAL_STATUS <= status <= LAST_STATUS:
            # 1xx are interim responses, and a status line has three digits that HTTP clients know up to
            # 5xx (RFC 9110 15): there is no response to send, as for any invalid function response.
            await self.fail(
                "Runtime.InvalidStatus",
                f"the app answered with status {status}, which HTTP cannot carry as a response "
                f"({FIRST_FINAL_STATUS}-{LAST_STATUS})",
            )
            return False
        self.started = True
        self.log.status = status
        self.bodyless = status in BODYLESS_STATUSES
        # Values are UTF-8 on the way out, as Lambda writes the prelude's JSON strings (encoder._value_text).
        raw = [(k.encode("latin-1"), v.encode("utf-8")) for k, v in headers if k.lower() not in HOP_BY_HOP]
        await self._client({"type": "http.response.start", "status": status, "headers": raw})
        return True

    async def _write(self, data: bytes, *, more: bool) -> None:
        if data and self.bodyless:
            if not self.dropped:  # one warning per response
                say(
                    f"{self.label}: status {self.log.status} has no body (RFC 9110 15.3.5, 15.4.5): "
                    "the body the app sent is dropped"
                )
            self.dropped = True
            data = b""
        if data:
            if self.bandwidth is not None:
                await anyio.sleep(self.bandwidth.delay(len(data), anyio.current_time()))
            self.log.bytes += len(data)
            self.log.chunks += 1
            if self.log.first_byte is None:
                self.log.first_byte = time.perf_counter()
        if data or not more:
            await self._client({"type": "http.response.body", "body": data, "more_body": more})

    async def _client(self, message: Message) -> None:
        # Lambda keeps running when the client leaves (docs/failure-policy.md): keep draining, stop sending.
        if self.client_gone:
            return
        # A client that stops reading must not hold the request (or a sandbox) for ever: each write is
        # bounded, and one that waits too long ends the client's response.
        with anyio.move_on_after(self.options.write_timeout) as bound:
            try:
                await self._send(message)
            except OSError:
                self.client_gone = True
        if bound.cancelled_caught:
            self.client_gone = self.stalled = self.cut = True
            say(
                f"{self.label}: the client stopped reading: gave up after {self.options.write_timeout:g} s "
                "(--write-timeout) and closed its connection"
            )


async def plain_response(send: Send, status: int, text: str) -> None:
    data = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})
