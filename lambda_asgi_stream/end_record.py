"""End records: a cut stream a plain HTTP client can tell from a finished one. No I/O.

Lambda does not forward a streamed response's error trailers to HTTP clients: a function that fails
mid-stream and one that finishes look the same to ``curl`` or a browser, a body that just stops. When a
response opts in, the runtime appends an *end record* once the app has completed normally, in a form the
content type allows, carrying the number of body bytes before it and their SHA-256 (padding and
heartbeats included: everything the client receives before the record). A failed response gets no record.
So a client that finds no record, or one that does not match what it received, knows the body is not
whole.

==========================  ===========================================================================
format (content type)       the record
==========================  ===========================================================================
``sse``                     ``event: lambda-end`` / ``data: {"bytes": N, "sha256": "..."}``, a final
(text/event-stream)         event (a browser's ``EventSource`` sees it as ``lambda-end``)
``ndjson``                  one line ``{"lambda_end": {"bytes": N, "sha256": "..."}}``
(NDJSON / JSON Lines)
``csv`` (text/csv)          one line ``lambda-end,N,SHA256``; only where chosen (a CSV reader would
                            take it for data)
==========================  ===========================================================================

Opt in per response with the header ``x-lambda-end-record: on`` (or ``off``; consumed, never sent), or for
every response of some formats with ``LAMBDA_ASGI_STREAM_END_RECORD=sse,ndjson`` (``on``: ``sse,ndjson``;
``csv`` only when named). Compressed responses (any ``content-encoding``) never get one.

Readers: :class:`EndRecordReader` (sans-IO), :func:`iter_verified` / :func:`aiter_verified` for an
httpx response, ``client.stream_response(..., end_record=True)`` for ``InvokeWithResponseStream``. Each
returns the body without the record and raises :class:`~lambda_asgi_stream.EndRecordError` when the
record is missing or does not match.

Cost: nothing unless opted in (a scan of the response headers for the opt-in header); opted in, one
SHA-256 pass over the body (about 0.9 GB/s on one core: ~110 µs per 100 KiB).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Literal, Protocol

from ._errors import EndRecordError
from .padding import NDJSON_TYPES


def _sha256() -> Any:
    # hashlib (OpenSSL) costs ~2 ms to import: loaded by the first opted-in response, not on the cold path.
    import hashlib

    return hashlib.sha256()


EndRecordFormat = Literal["sse", "ndjson", "csv"]
END_RECORD_FORMATS: tuple[EndRecordFormat, ...] = ("sse", "ndjson", "csv")
#: ``on`` in the variable: the formats whose readers skip what they do not know.
DEFAULT_FORMATS: frozenset[EndRecordFormat] = frozenset({"sse", "ndjson"})
#: Response header an app sets to choose per response: ``on`` or ``off`` (consumed: never sent).
END_RECORD_HEADER = "x-lambda-end-record"
SSE_EVENT = "lambda-end"
NDJSON_KEY = "lambda_end"
CSV_TAG = "lambda-end"
#: The longest record (separator included): a reader holds back this many bytes until the end.
MAX_RECORD = 256

_HEADER = END_RECORD_HEADER.encode()
_JSON = rb'\{"bytes":(\d+),"sha256":"([0-9a-f]{64})"\}'
# The record without its separator, at the very end of the body. Only a reader needs these: compiled at
# first use (re.compile keeps them), not at import on the runtime's cold path.
_PATTERNS: dict[EndRecordFormat, bytes] = {
    "sse": rb"event: " + SSE_EVENT.encode() + rb"\ndata: " + _JSON + rb"\n\n\Z",
    "ndjson": rb'\{"' + NDJSON_KEY.encode() + rb'":' + _JSON + rb"\}\n\Z",
    "csv": CSV_TAG.encode() + rb",(\d+),([0-9a-f]{64})\r?\n\Z",
}
_SEPARATOR = rb"[\r\n]{0,4}"


def parse_formats(value: str) -> frozenset[EndRecordFormat]:
    """The variable's value: empty/``off``: none; ``on``: sse and ndjson; else a comma-separated list.

    >>> sorted(parse_formats("on")), sorted(parse_formats("ndjson, csv")), parse_formats("")
    (['ndjson', 'sse'], ['csv', 'ndjson'], frozenset())
    """
    words = {word.strip().lower() for word in value.split(",") if word.strip()}
    if not words or words <= {"off", "0", "false", "no", "none"}:
        return frozenset()
    if words <= {"on", "1", "true", "yes"}:
        return DEFAULT_FORMATS
    unknown = words - set(END_RECORD_FORMATS)
    if unknown:
        raise ValueError(f"end record formats are {', '.join(END_RECORD_FORMATS)} (or on/off), not {unknown}")
    return frozenset(word for word in END_RECORD_FORMATS if word in words)


def format_of(content_type: str, content_encoding: str = "") -> EndRecordFormat | None:
    """The record a response of this type can carry, or None (JSON documents, binary, compressed)."""
    if content_encoding.strip() and content_encoding.strip().lower() != "identity":
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "text/event-stream":
        return "sse"
    if media in NDJSON_TYPES:
        return "ndjson"
    if media == "text/csv":
        return "csv"
    return None


def choose(
    headers: list[tuple[bytes, bytes]], enabled: frozenset[EndRecordFormat]
) -> tuple[EndRecordFormat | None, list[tuple[bytes, bytes]]]:
    """The record this response gets (None: none), and its headers without the opt-in header.

    The header wins over the variable: ``on`` asks for the record the content type allows (CSV
    included: choosing it per response is the user's choice), ``off`` refuses it.
    """
    choice = None
    for name, value in headers:
        if name.lower() == _HEADER:
            choice = value.decode("latin-1").strip().lower()
    if choice is None and not enabled:
        return None, headers  # the common case: nothing to do, nothing copied
    if choice is not None:
        headers = [(k, v) for k, v in headers if k.lower() != _HEADER]
    found = {k.lower(): v.decode("latin-1") for k, v in headers}
    fmt = format_of(found.get(b"content-type", ""), found.get(b"content-encoding", ""))
    if fmt is None or choice in ("off", "0", "none", "false", "no"):
        return None, headers
    if choice is None and fmt not in enabled:
        return None, headers
    return fmt, headers


def render(fmt: EndRecordFormat, count: int, digest: str, tail: bytes, line_start: bool = True) -> bytes:
    """The record (with the separator it needs after ``tail``, the last bytes before it).

    ``line_start`` (NDJSON): whether the body so far ends at a line start, trailing spaces aside.

    >>> render("sse", 12, "0" * 64, b"data: x\\n\\n")[:31]
    b'event: lambda-end\\ndata: {"bytes'
    """
    fields = json.dumps({"bytes": count, "sha256": digest}, separators=(",", ":")).encode()
    if fmt == "sse":
        if not tail or tail.endswith((b"\n\n", b"\r\r", b"\r\n\r\n")):
            sep = b""
        elif tail.endswith(b"\n"):
            sep = b"\n"  # ends the app's last event (or a padding comment) with a blank line
        elif tail.endswith(b"\r"):
            sep = b"\r\n"
        else:
            sep = b"\n\n"
        return sep + b"event: " + SSE_EVENT.encode() + b"\ndata: " + fields + b"\n\n"
    if fmt == "ndjson":
        sep = b"" if line_start else b"\n"  # after padding spaces at a line start, the value just follows
        return sep + b'{"' + NDJSON_KEY.encode() + b'":' + fields + b"}\n"
    eol = b"\r\n" if tail.endswith(b"\r\n") or not tail else b"\n"
    sep = b"" if not tail or tail.endswith(b"\n") else eol
    return sep + f"{CSV_TAG},{count},{digest}".encode() + eol


class _Writer(Protocol):
    async def prelude(self, data: bytes) -> None: ...

    async def write(self, data: bytes) -> None: ...

    async def end(self, data: bytes, trailers: list[tuple[bytes, bytes]]) -> None: ...

    def when_pass_ends(self, callback: Callable[[], None]) -> bool: ...


class EndRecordWriter:
    """A stream writer that counts and hashes the body on its way to ``inner``, and appends the record at a
    clean end (no error trailers). The cycle puts it in front of the writer of an opted-in response."""

    def __init__(self, inner: _Writer, fmt: EndRecordFormat) -> None:
        self.inner = inner
        self.format = fmt
        self.count = 0
        self._hash = _sha256()
        self._tail = b""
        self._line_start = True

    async def prelude(self, data: bytes) -> None:
        await self.inner.prelude(data)

    def when_pass_ends(self, callback: Callable[[], None]) -> bool:
        hook = getattr(self.inner, "when_pass_ends", None)  # (a writer made before it was in the protocol)
        return hook is not None and bool(hook(callback))

    async def write(self, data: bytes) -> None:
        self._account(data)
        await self.inner.write(data)

    async def end(self, data: bytes, trailers: list[tuple[bytes, bytes]]) -> None:
        if trailers:  # the app failed: no record, so the client can tell
            await self.inner.end(data, trailers)
            return
        self._account(data)
        record = render(self.format, self.count, self._hash.hexdigest(), self._tail, self._line_start)
        await self.inner.end(data + record, trailers)

    def _account(self, data: bytes) -> None:
        if not data:
            return
        self._hash.update(data)
        self.count += len(data)
        self._tail = (self._tail + data)[-4:]
        if self.format == "ndjson":
            stripped = data.rstrip(b" \t")
            if stripped:
                self._line_start = stripped.endswith(b"\n")


class EndRecordReader:
    """Verify a body that should end with a record, as it arrives. Sans-IO.

    :meth:`feed` returns the bytes that are surely not part of the record (all but the last
    :data:`MAX_RECORD`); :meth:`finish` returns the rest of the body without the record, or raises
    :class:`EndRecordError` when the record is missing or does not match what came before it.

    >>> reader = EndRecordReader("ndjson")
    >>> import hashlib
    >>> body = b'{"n": 1}\\n' + render("ndjson", 9, hashlib.sha256(b'{"n": 1}\\n').hexdigest(), b"")
    >>> reader.feed(body) + reader.finish()
    b'{"n": 1}\\n'
    """

    def __init__(self, fmt: EndRecordFormat) -> None:
        self.format = fmt
        self.released = 0
        self._hash = _sha256()
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        held = self._held + data
        if len(held) <= MAX_RECORD:
            self._held = held
            return b""
        out, self._held = held[:-MAX_RECORD], held[-MAX_RECORD:]
        self._hash.update(out)
        self.released += len(out)
        return out

    def finish(self) -> bytes:
        held, total = self._held, self.released + len(self._held)
        match = re.compile(_PATTERNS[self.format]).search(held)
        if match is None:
            raise EndRecordError(
                "missing",
                f"the body ({total} bytes) does not end with a {self.format} end record: it was cut, "
                "or the response did not opt in",
            )
        count, digest = int(match.group(1)), match.group(2).decode()
        start = count - self.released  # where the record (its separator first) begins in `held`
        if not 0 <= start <= match.start() or not re.compile(_SEPARATOR).fullmatch(
            held, start, match.start()
        ):
            raise EndRecordError(
                "count",
                f"the end record counts {count} bytes before it, but {self.released + match.start()} came",
            )
        rest = held[:start]
        self._hash.update(rest)
        if self._hash.hexdigest() != digest:
            raise EndRecordError(
                "hash", "the body's SHA-256 does not match its end record: bytes were altered"
            )
        return rest


def _reader_for(headers: Any) -> EndRecordReader:
    fmt = format_of(headers.get("content-type", ""), headers.get("content-encoding", ""))
    if fmt is None:
        raise EndRecordError(
            "missing", f"a {headers.get('content-type', 'response')!r} body carries no end record"
        )
    return EndRecordReader(fmt)


def verify(content_type: str, body: bytes) -> bytes:
    """A whole body without its end record; raises :class:`EndRecordError` when missing or wrong."""
    reader = _reader_for({"content-type": content_type})
    return reader.feed(body) + reader.finish()


def iter_verified(response: Any) -> Iterator[bytes]:
    """The body of an httpx response (``client.stream(...)``) as it arrives, without its end record.

    Raises :class:`EndRecordError` at the end when the record is missing or wrong::

        with httpx.stream("GET", url) as response:
            for chunk in iter_verified(response):
                ...
    """
    reader = _reader_for(response.headers)
    chunks: Iterable[bytes] = response.iter_raw()
    for chunk in chunks:
        out = reader.feed(chunk)
        if out:
            yield out
    rest = reader.finish()
    if rest:
        yield rest


async def aiter_verified(response: Any) -> AsyncIterator[bytes]:
    """:func:`iter_verified` for an ``httpx.AsyncClient`` response."""
    reader = _reader_for(response.headers)
    async for chunk in response.aiter_raw():
        out = reader.feed(chunk)
        if out:
            yield out
    rest = reader.finish()
    if rest:
        yield rest
