"""AWS's ``application/vnd.amazon.eventstream`` framing, both ways. No I/O.

``InvokeWithResponseStream`` answers with this framing (AWS Lambda API reference,
"InvokeWithResponseStream"); the emulator writes it and :mod:`lambda_asgi_stream.client` reads it.
The format is the "Amazon Event Stream Specification" (smithy.io/2.0/aws/amazon-eventstream.html); all
integers are big-endian::

    total length (uint32) | headers length (uint32) | prelude CRC32 (of the 8 bytes before it)
    headers | payload | message CRC32 (of everything before it, prelude included)

Each header is ``name length (uint8) | name (UTF-8) | type (uint8) | value``; the value layout depends on
the type (:class:`HeaderType`). A name appears once per message.

Limits: the specification's (payload at most 24 MiB, encoded headers at most 128 KiB, names 1-255
bytes, string and byte-array values at most 32,767 bytes) are enforced when encoding. The decoder
rejects whatever botocore's parser rejects (bad CRCs, those two size limits, a repeated name, an unknown
type, names or strings that are not UTF-8) and, stricter, lengths that contradict each other, which botocore
would misread instead.

Lambda's two events (botocore's ``lambda`` service model, shape ``InvokeWithResponseStreamResponseEvent``):
``PayloadChunk`` carries bytes of the response as its payload; ``InvokeComplete`` ends the stream with a JSON
payload ``{"ErrorCode", "ErrorDetails", "LogResult"}``, the members set only when they have a value.
"""

from __future__ import annotations

import datetime
import enum
import json
import struct
import uuid
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ._errors import EventStreamFormatError

CONTENT_TYPE = "application/vnd.amazon.eventstream"

PRELUDE_BYTES = 12  # total length, headers length, prelude CRC
CRC_BYTES = 4
MIN_MESSAGE_BYTES = PRELUDE_BYTES + CRC_BYTES
MAX_HEADERS_BYTES = 128 * 1024
MAX_PAYLOAD_BYTES = 24 * 1024 * 1024
MAX_NAME_BYTES = 255
MAX_VALUE_BYTES = 2**15 - 1

_PRELUDE = struct.Struct("!II")
_UINT32 = struct.Struct("!I")
_UINT16 = struct.Struct("!H")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class HeaderType(enum.IntEnum):
    """The type byte of a header value (the specification's ``HeaderValueType``)."""

    TRUE = 0
    FALSE = 1
    BYTE = 2
    SHORT = 3
    INTEGER = 4
    LONG = 5
    BYTE_ARRAY = 6
    STRING = 7
    TIMESTAMP = 8
    UUID = 9


# Fixed-size integer types: struct format and range.
_INTS = {
    HeaderType.BYTE: struct.Struct("!b"),
    HeaderType.SHORT: struct.Struct("!h"),
    HeaderType.INTEGER: struct.Struct("!i"),
    HeaderType.LONG: struct.Struct("!q"),
    HeaderType.TIMESTAMP: struct.Struct("!q"),
}

_INTS_BY_BYTE = {int(kind): packer for kind, packer in _INTS.items()}

#: A decoded header value. Integers of every width decode to ``int``, timestamps to an aware UTC
#: ``datetime`` (millisecond precision) and UUIDs to ``uuid.UUID``.
HeaderValue = bool | int | str | bytes | datetime.datetime | uuid.UUID


@dataclass(frozen=True, slots=True)
class Typed:
    """A header value with its wire type chosen explicitly (e.g. ``Typed(HeaderType.LONG, 5)``).

    Without it, :func:`encode_message` picks the type from the Python value: ``bool``, ``str``
    (string), ``bytes`` (byte array), ``datetime`` (timestamp), ``UUID``, and ``int`` as a 32-bit
    integer when it fits, else a 64-bit long.
    """

    type: HeaderType
    value: HeaderValue


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded event stream message."""

    headers: dict[str, HeaderValue]
    payload: bytes

    def header(self, name: str) -> str | None:
        """A string header's value, or None when absent (or not a string)."""
        value = self.headers.get(name)
        return value if isinstance(value, str) else None


# --- encoding ---------------------------------------------------------------------------------------


def encode_message(headers: Mapping[str, HeaderValue | Typed], payload: bytes = b"") -> bytes:
    """One complete message: prelude, headers, payload, CRCs.

    >>> encode_message({":event-type": "PayloadChunk"}, b"hi").hex()
    '0000002d0000001bd616fd300b3a6576656e742d7479706507000c5061796c6f61644368756e6b686958c76727'

    Raises :class:`EventStreamFormatError` for a value the format cannot carry (a name over 255 bytes, a
    string over 32,767, headers over 128 KiB, a payload over 24 MiB, an integer out of its type's range).
    """
    return frame(encode_headers(headers), payload)


def frame(encoded_headers: bytes, payload: bytes) -> bytes:
    """A message from headers already encoded (:func:`encode_headers`) and a payload."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise EventStreamFormatError(f"payload of {len(payload)} bytes is over {MAX_PAYLOAD_BYTES}")
    total = MIN_MESSAGE_BYTES + len(encoded_headers) + len(payload)
    prelude = _PRELUDE.pack(total, len(encoded_headers))
    prelude += _UINT32.pack(zlib.crc32(prelude))
    crc = zlib.crc32(payload, zlib.crc32(encoded_headers, zlib.crc32(prelude)))
    return b"".join((prelude, encoded_headers, payload, _UINT32.pack(crc)))


def encode_headers(headers: Mapping[str, HeaderValue | Typed]) -> bytes:
    """The headers section of a message (names are unique: they are the mapping's keys)."""
    out = bytearray()
    for name, value in headers.items():
        raw_name = name.encode("utf-8")
        if not 1 <= len(raw_name) <= MAX_NAME_BYTES:
            raise EventStreamFormatError(f"header name {name!r} is not 1-{MAX_NAME_BYTES} bytes of UTF-8")
        out.append(len(raw_name))
        out += raw_name
        out += _encode_value(name, value if isinstance(value, Typed) else Typed(_type_of(name, value), value))
    if len(out) > MAX_HEADERS_BYTES:
        raise EventStreamFormatError(f"headers take {len(out)} bytes, over {MAX_HEADERS_BYTES}")
    return bytes(out)


def _type_of(name: str, value: HeaderValue) -> HeaderType:
    if isinstance(value, bool):  # before int: bool is an int
        return HeaderType.TRUE if value else HeaderType.FALSE
    if isinstance(value, int):
        return HeaderType.INTEGER if -(2**31) <= value < 2**31 else HeaderType.LONG
    if isinstance(value, str):
        return HeaderType.STRING
    if isinstance(value, bytes):
        return HeaderType.BYTE_ARRAY
    if isinstance(value, datetime.datetime):
        return HeaderType.TIMESTAMP
    if isinstance(value, uuid.UUID):
        return HeaderType.UUID
    raise EventStreamFormatError(f"header {name!r}: no event stream type for {type(value).__name__}")


def _encode_value(name: str, typed: Typed) -> bytes:
    kind, value = typed.type, typed.value
    if kind in (HeaderType.TRUE, HeaderType.FALSE):
        return bytes((kind,))  # the type is the value: no value bytes follow
    if kind == HeaderType.TIMESTAMP and isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise EventStreamFormatError(f"header {name!r}: a timestamp needs a timezone")
        value = (value - _EPOCH) // datetime.timedelta(milliseconds=1)
    if kind in _INTS and isinstance(value, int) and not isinstance(value, bool):
        try:
            return bytes((kind,)) + _INTS[kind].pack(value)
        except struct.error as exc:
            raise EventStreamFormatError(f"header {name!r}: {value} does not fit a {kind.name}") from exc
    if kind in (HeaderType.STRING, HeaderType.BYTE_ARRAY) and isinstance(value, str | bytes):
        raw = value.encode("utf-8") if isinstance(value, str) else value
        if len(raw) > MAX_VALUE_BYTES:
            raise EventStreamFormatError(f"header {name!r}: {len(raw)} bytes, over {MAX_VALUE_BYTES}")
        return bytes((kind,)) + _UINT16.pack(len(raw)) + raw
    if kind == HeaderType.UUID and isinstance(value, uuid.UUID):
        return bytes((kind,)) + value.bytes
    raise EventStreamFormatError(f"header {name!r}: {type(value).__name__} cannot be sent as {kind.name}")


# --- decoding ---------------------------------------------------------------------------------------


class MessageDecoder:
    """Incremental decoder: feed bytes as they arrive, get the messages they complete.

    >>> d = MessageDecoder()
    >>> wire = encode_message({":event-type": "PayloadChunk"}, b"hi")
    >>> d.feed(wire[:5]), d.feed(wire[5:])[0].payload
    ([], b'hi')

    Each message is checked (both CRCs) as soon as its bytes are in; a bad message raises
    :class:`EventStreamFormatError` and the decoder is then unusable, as the specification wants
    ("the stream MUST be terminated").
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._total = 0  # the length of the message being received, once its prelude is checked
        self._failed = False

    @property
    def pending(self) -> int:
        """Bytes held that do not yet make a whole message (0 between messages)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        """Take the next bytes of the stream; return the messages they complete (maybe none)."""
        if self._failed:
            raise EventStreamFormatError("the event stream already failed to decode")
        buffer = self._buffer
        buffer += data
        messages: list[Message] = []
        start = 0  # consumed bytes are dropped once, at the end: not one copy per message
        try:
            with memoryview(buffer) as view:
                while True:
                    if not self._total:
                        if len(buffer) - start < PRELUDE_BYTES:
                            break
                        self._total = _check_prelude(view, start)
                    if len(buffer) - start < self._total:
                        break
                    messages.append(_decode_message(view[start : start + self._total]))
                    start += self._total
                    self._total = 0
        except EventStreamFormatError:
            self._failed = True
            raise
        del buffer[:start]
        return messages

    def close(self) -> None:
        """The stream ended: raises :class:`EventStreamFormatError` if it stopped inside a message."""
        if self._buffer:
            raise EventStreamFormatError(
                f"the event stream ended inside a message ({len(self._buffer)} bytes of it received)"
            )


def decode_messages(data: bytes | Iterable[bytes]) -> list[Message]:
    """Every message of a complete stream (one buffer, or its pieces in order)."""
    decoder = MessageDecoder()
    pieces = [data] if isinstance(data, bytes | bytearray | memoryview) else data
    messages = [message for piece in pieces for message in decoder.feed(bytes(piece))]
    decoder.close()
    return messages


def _check_prelude(view: memoryview, at: int) -> int:
    """Validate the prelude of the message at ``at``; return the message's total length."""
    total, headers_length = _PRELUDE.unpack_from(view, at)
    (crc,) = _UINT32.unpack_from(view, at + 8)
    if zlib.crc32(view[at : at + 8]) != crc:
        raise EventStreamFormatError(f"prelude CRC mismatch (message of {total} bytes)")
    if headers_length > MAX_HEADERS_BYTES:
        raise EventStreamFormatError(f"headers length {headers_length} is over {MAX_HEADERS_BYTES}")
    payload_length = total - headers_length - MIN_MESSAGE_BYTES
    if payload_length < 0:
        raise EventStreamFormatError(f"total length {total} is too short for {headers_length} header bytes")
    if payload_length > MAX_PAYLOAD_BYTES:
        raise EventStreamFormatError(f"payload length {payload_length} is over {MAX_PAYLOAD_BYTES}")
    return int(total)


def _decode_message(raw: memoryview) -> Message:
    total, headers_length = _PRELUDE.unpack_from(raw)
    (crc,) = _UINT32.unpack_from(raw, total - CRC_BYTES)
    if zlib.crc32(raw[: total - CRC_BYTES]) != crc:
        raise EventStreamFormatError(f"message CRC mismatch (message of {total} bytes)")
    headers = _decode_headers(raw[PRELUDE_BYTES : PRELUDE_BYTES + headers_length])
    return Message(headers, bytes(raw[PRELUDE_BYTES + headers_length : total - CRC_BYTES]))


def _decode_headers(raw: memoryview) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    at = 0
    while at < len(raw):
        name_length = raw[at]
        name = _utf8(_take(raw, at + 1, name_length), "header name")
        at += 1 + name_length
        if name in headers:
            raise EventStreamFormatError(f"duplicate header {name!r}")
        headers[name], at = _decode_value(raw, at, name)
    return headers


def _decode_value(raw: memoryview, at: int, name: str) -> tuple[HeaderValue, int]:
    kind = _take(raw, at, 1)[0]  # compared as a plain int: this runs for every header of every message
    at += 1
    if kind == HeaderType.STRING or kind == HeaderType.BYTE_ARRAY:
        (length,) = _UINT16.unpack(_take(raw, at, 2))
        value = _take(raw, at + 2, length)
        at += 2 + length
        if kind == HeaderType.STRING:
            return _utf8(value, f"header {name!r}"), at
        return bytes(value), at
    if kind == HeaderType.TRUE or kind == HeaderType.FALSE:
        return kind == HeaderType.TRUE, at
    fixed = _INTS_BY_BYTE.get(kind)
    if fixed is not None:
        (number,) = fixed.unpack(_take(raw, at, fixed.size))
        if kind == HeaderType.TIMESTAMP:
            return _timestamp(number, name), at + fixed.size
        return int(number), at + fixed.size
    if kind == HeaderType.UUID:
        return uuid.UUID(bytes=bytes(_take(raw, at, 16))), at + 16
    raise EventStreamFormatError(f"header {name!r} has unknown type {kind}")


def _take(raw: memoryview, at: int, length: int) -> memoryview:
    if at + length > len(raw):
        raise EventStreamFormatError("a header runs past the end of the headers section")
    return raw[at : at + length]


def _utf8(raw: memoryview, what: str) -> str:
    try:
        return str(raw, "utf-8")
    except UnicodeDecodeError:
        raise EventStreamFormatError(f"{what} is not UTF-8: {bytes(raw[:60])!r}") from None


def _timestamp(millis: int, name: str) -> datetime.datetime:
    try:
        return _EPOCH + datetime.timedelta(milliseconds=millis)
    except OverflowError:
        raise EventStreamFormatError(f"header {name!r}: timestamp {millis} ms is out of range") from None


# --- Lambda's InvokeWithResponseStream events --------------------------------------------------------

PAYLOAD_CHUNK = "PayloadChunk"
INVOKE_COMPLETE = "InvokeComplete"


_PAYLOAD_CHUNK_HEADERS = encode_headers(
    {":event-type": PAYLOAD_CHUNK, ":content-type": "application/octet-stream", ":message-type": "event"}
)


def payload_chunk(data: bytes) -> bytes:
    """A ``PayloadChunk`` event carrying ``data`` as it is (the ``Payload`` member is the event payload)."""
    return frame(_PAYLOAD_CHUNK_HEADERS, data)


def invoke_complete(
    error_code: str | None = None, error_details: str | None = None, log_result: str | None = None
) -> bytes:
    """The ``InvokeComplete`` event that ends a stream; ``error_code`` set means the invocation failed."""
    members = {"ErrorCode": error_code, "ErrorDetails": error_details, "LogResult": log_result}
    body = json.dumps({k: v for k, v in members.items() if v is not None}, separators=(",", ":"))
    return encode_message(
        {":event-type": INVOKE_COMPLETE, ":content-type": "application/json", ":message-type": "event"},
        body.encode("utf-8"),
    )
