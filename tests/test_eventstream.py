"""The event stream codec, checked against botocore's own parser (the one boto3 uses to read Lambda).

botocore has no encoder, so every message we encode is read back by botocore's ``EventStreamBuffer``
(framing, CRCs, header types) and by its ``EventStream`` with the ``lambda`` service model (what
``invoke_with_response_stream`` returns to a caller). Our decoder is then held to botocore's verdicts:
same messages from the same bytes however they are split, and a rejection wherever botocore rejects.
"""

from __future__ import annotations

import datetime
import doctest
import json
import random
import struct
import uuid
import zlib
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer

from lambda_asgi_stream import eventstream
from lambda_asgi_stream._errors import EventStreamFormatError
from lambda_asgi_stream.eventstream import (
    HeaderType,
    Message,
    MessageDecoder,
    Typed,
    decode_messages,
    encode_message,
    invoke_complete,
    payload_chunk,
)

from .botocore_streams import lambda_event_stream

ALL_TYPES: dict[str, Any] = {
    "true": True,
    "false": False,
    "byte": Typed(HeaderType.BYTE, -128),
    "short": Typed(HeaderType.SHORT, 32767),
    "int": -(2**31),
    "long": 2**63 - 1,
    "bytes": b"\x00\xff" * 100,
    "string": "héllo ✓",
    "timestamp": datetime.datetime(2026, 11, 29, 12, 0, 0, 123000, tzinfo=datetime.timezone.utc),
    "uuid": uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e"),
    "empty-string": "",
}


def _botocore_messages(pieces: list[bytes]) -> list[tuple[dict[str, Any], bytes]]:
    buffer = EventStreamBuffer()
    out = []
    for piece in pieces:
        buffer.add_data(piece)
        out.extend((m.headers, m.payload) for m in buffer)
    return out


def _ours(pieces: list[bytes]) -> list[tuple[dict[str, Any], bytes]]:
    return [(_as_botocore(m.headers), m.payload) for m in decode_messages(pieces)]


def _as_botocore(headers: dict[str, Any]) -> dict[str, Any]:
    """Our decoded values in botocore's representation (timestamps as ms, UUIDs as 16 bytes)."""
    out = {}
    for name, value in headers.items():
        if isinstance(value, datetime.datetime):
            value = (value - eventstream._EPOCH) // datetime.timedelta(milliseconds=1)
        elif isinstance(value, uuid.UUID):
            value = value.bytes
        out[name] = value
    return out


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Typed) else value


def test_docstring_examples() -> None:
    assert doctest.testmod(eventstream).failed == 0


def test_every_header_type_reads_the_same_in_botocore_and_back() -> None:
    wire = encode_message(ALL_TYPES, b"payload")
    [(headers, payload)] = _botocore_messages([wire])
    assert payload == b"payload"
    expected = _as_botocore({k: _plain(v) for k, v in ALL_TYPES.items()})
    assert headers == expected
    # The type bytes on the wire are the ones asked for (botocore maps every int width to int).
    for name, kind in [("byte", 2), ("short", 3), ("int", 4), ("long", 5), ("bytes", 6), ("string", 7)]:
        raw = bytes([len(name)]) + name.encode() + bytes([kind])
        assert raw in wire, name
    [message] = decode_messages(wire)
    assert message.headers == {k: _plain(v) for k, v in ALL_TYPES.items()}


def test_crcs_are_crc32_of_the_prelude_and_of_the_message() -> None:
    wire = encode_message({":event-type": "x"}, b"abc")
    total, headers_length, prelude_crc = struct.unpack("!III", wire[:12])
    assert total == len(wire)
    assert prelude_crc == zlib.crc32(wire[:8])
    assert struct.unpack("!I", wire[-4:])[0] == zlib.crc32(wire[:-4])
    assert wire[12 + headers_length : -4] == b"abc"


def test_empty_payload_and_no_headers() -> None:
    for wire in (encode_message({}, b""), encode_message({"a": "b"}), payload_chunk(b"")):
        assert _botocore_messages([wire]) == _ours([wire])
    assert decode_messages(encode_message({}, b"")) == [Message({}, b"")]


def _lambda_event_stream(pieces: list[bytes]) -> list[dict[str, Any]]:
    """What boto3's ``response["EventStream"]`` yields for these bytes from the network."""
    return list(lambda_event_stream(pieces))


def test_lambda_events_parse_with_the_lambda_service_model() -> None:
    stream = [
        payload_chunk(b'{"statusCode":200}' + b"\0" * 8),
        payload_chunk(b""),
        payload_chunk(bytes(range(256))),
        invoke_complete("Function.RuntimeError", "boom", "bG9n"),
    ]
    assert _lambda_event_stream(stream) == [
        {"PayloadChunk": {"Payload": b'{"statusCode":200}' + b"\0" * 8}},
        {"PayloadChunk": {"Payload": b""}},
        {"PayloadChunk": {"Payload": bytes(range(256))}},
        {
            "InvokeComplete": {
                "ErrorCode": "Function.RuntimeError",
                "ErrorDetails": "boom",
                "LogResult": "bG9n",
            }
        },
    ]
    assert _lambda_event_stream([invoke_complete()]) == [{"InvokeComplete": {}}]
    [complete] = decode_messages(invoke_complete(log_result="eA=="))
    assert complete.headers == {
        ":event-type": "InvokeComplete",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert json.loads(complete.payload) == {"LogResult": "eA=="}


def _boundaries(wire: bytes) -> list[int]:
    """Offsets of each structural part of each message in a stream."""
    offsets, at = [], 0
    while at < len(wire):
        total, headers_length = struct.unpack_from("!II", wire, at)
        offsets += [at, at + 4, at + 8, at + 12, at + 12 + headers_length, at + total - 4]
        at += total
    return [*offsets, len(wire)]


def test_split_at_every_offset_of_a_small_stream() -> None:
    wire = b"".join(
        [payload_chunk(b"a"), payload_chunk(b""), encode_message(ALL_TYPES, b"xyz"), invoke_complete()]
    )
    expected = _botocore_messages([wire])
    assert len(expected) == 4
    for cut in range(len(wire) + 1):
        assert _ours([wire[:cut], wire[cut:]]) == expected, cut
    for second in range(3, len(wire), 7):
        assert _ours([wire[:3], wire[3:second], wire[second:]]) == expected
    assert _ours([wire[i : i + 1] for i in range(len(wire))]) == expected


def test_large_payload_split_around_every_boundary_class() -> None:
    big = random.Random(1).randbytes(3 * 1024 * 1024 + 17)
    wire = payload_chunk(b"head") + payload_chunk(big) + invoke_complete()
    expected = _botocore_messages([wire])
    assert expected[1][1] == big
    cuts = sorted({c + d for c in _boundaries(wire) for d in (-1, 0, 1, 2) if 0 <= c + d <= len(wire)})
    cuts += [len(wire) // 2, len(wire) - 5]  # inside the big payload, inside the last message
    for cut in cuts:
        assert _ours([wire[:cut], wire[cut:]]) == expected, cut
    # 64 KiB reads, as a socket delivers them
    assert _ours([wire[i : i + 65536] for i in range(0, len(wire), 65536)]) == expected


def test_decoder_reports_messages_as_soon_as_they_are_whole() -> None:
    decoder = MessageDecoder()
    first, second = payload_chunk(b"1"), payload_chunk(b"2")
    assert decoder.feed(first[:-1]) == []
    assert decoder.pending == len(first) - 1
    assert [m.payload for m in decoder.feed(first[-1:] + second[:3])] == [b"1"]
    assert [m.payload for m in decoder.feed(second[3:])] == [b"2"]
    assert decoder.pending == 0
    decoder.close()


def test_a_stream_cut_inside_a_message_is_an_error() -> None:
    wire = payload_chunk(b"abc")
    for cut in (1, 11, 12, len(wire) - 1):
        with pytest.raises(EventStreamFormatError, match="ended inside a message"):
            decode_messages(wire[:cut])


# --- rejections: whatever botocore rejects, we reject ------------------------------------------------


def _botocore_rejects(wire: bytes) -> bool:
    try:
        _botocore_messages([wire])
    except Exception:  # botocore raises ParserError, but also KeyError, UnicodeDecodeError, ...
        return True
    return False


def _we_reject(wire: bytes) -> bool:
    try:
        decode_messages(wire)
    except EventStreamFormatError:
        return True
    return False  # any other exception fails the test: bad input must give the typed error


def _frame(raw_headers: bytes, payload: bytes = b"", *, total: int | None = None) -> bytes:
    """A message with arbitrary header bytes and correct CRCs (``total`` may lie)."""
    total = 16 + len(raw_headers) + len(payload) if total is None else total
    prelude = struct.pack("!II", total, len(raw_headers))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack("!I", zlib.crc32(body))


def _string_header(name: bytes, value: bytes, kind: int = 7) -> bytes:
    return bytes([len(name)]) + name + bytes([kind]) + struct.pack("!H", len(value)) + value


BOTH_REJECT = {
    "duplicate header": _string_header(b"a", b"1") + _string_header(b"a", b"2"),
    "unknown type 10": b"\x01a\x0a",
    "unknown type 255": b"\x01a\xff",
    "name not UTF-8": _string_header(b"\xff\xfe", b"x"),
    "string not UTF-8": _string_header(b"a", b"\xc3\x28"),
}


@pytest.mark.parametrize("case", sorted(BOTH_REJECT))
def test_bad_headers_rejected_like_botocore(case: str) -> None:
    wire = _frame(BOTH_REJECT[case])
    assert _botocore_rejects(wire)
    assert _we_reject(wire)


def test_size_limits_rejected_like_botocore() -> None:
    for headers_length, total in [(128 * 1024 + 1, 128 * 1024 + 17), (0, 16 + 24 * 1024 * 1024 + 1)]:
        prelude = struct.pack("!II", total, headers_length)
        prelude += struct.pack("!I", zlib.crc32(prelude))
        assert _botocore_rejects(prelude)  # botocore rejects on the prelude alone; so do we
        with pytest.raises(EventStreamFormatError, match="over"):
            MessageDecoder().feed(prelude)


def test_every_flipped_bit_position_is_rejected_by_both() -> None:
    wire = encode_message({":event-type": "PayloadChunk", "n": 7}, b"payload bytes")
    for at in range(len(wire)):
        for bit in (0x01, 0x80):
            broken = bytearray(wire)
            broken[at] ^= bit
            assert _botocore_rejects(bytes(broken)), (at, bit)  # a CRC catches every single flip
            assert _we_reject(bytes(broken)), (at, bit)


def test_random_header_bytes_with_valid_crcs_follow_botocore() -> None:
    """Differential fuzz: garbage headers framed with correct CRCs, botocore as the oracle."""
    rng = random.Random(7)
    valid = encode_message(ALL_TYPES)[12:-4]
    rejected = 0
    for _ in range(3000):
        raw = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        wire = _frame(bytes(raw))
        if _botocore_rejects(wire):
            rejected += 1
            assert _we_reject(wire), raw.hex()
        elif not _we_reject(wire):
            assert _ours([wire]) == _botocore_messages([wire])
    assert rejected > 100  # the fuzz did exercise rejections


def test_we_also_reject_lengths_that_contradict_each_other() -> None:
    """Stricter than botocore, which would read these as garbage instead of failing."""
    too_short = _frame(b"", total=15)
    overrun = _string_header(b"a", b"xyz")[:-1]  # the value claims 3 bytes, 2 are there
    for wire in (too_short, _frame(overrun), _frame(b"\x05ab")):
        with pytest.raises(EventStreamFormatError):
            decode_messages(wire)


def test_decoder_stays_failed() -> None:
    decoder = MessageDecoder()
    broken = bytearray(payload_chunk(b"x"))
    broken[-1] ^= 1
    with pytest.raises(EventStreamFormatError, match="message CRC"):
        decoder.feed(bytes(broken))
    with pytest.raises(EventStreamFormatError, match="already failed"):
        decoder.feed(payload_chunk(b"y"))


# --- encoder limits -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ({"n" * 256: "x"}, "header name"),
        ({"": "x"}, "header name"),
        ({"a": "x" * 32768}, "over 32767"),
        ({"a": b"x" * 32768}, "over 32767"),
        ({"a": Typed(HeaderType.BYTE, 128)}, "does not fit a BYTE"),
        ({"a": Typed(HeaderType.SHORT, -(2**15) - 1)}, "does not fit a SHORT"),
        ({"a": 2**63}, "does not fit a LONG"),
        ({"a": Typed(HeaderType.STRING, 5)}, "cannot be sent as STRING"),
        ({"a": datetime.datetime(2026, 1, 1)}, "needs a timezone"),
        ({"a": 1.5}, "no event stream type for float"),
        ({f"h{i}": "x" * 30000 for i in range(5)}, "over 131072"),
    ],
)
def test_encoder_refuses_what_the_format_cannot_carry(headers: dict[str, Any], match: str) -> None:
    with pytest.raises(EventStreamFormatError, match=match):
        encode_message(headers)


def test_encoder_payload_limit() -> None:
    limit = eventstream.MAX_PAYLOAD_BYTES
    encode_message({}, bytes(limit))
    with pytest.raises(EventStreamFormatError, match="payload"):
        encode_message({}, bytes(limit + 1))
