"""End records: written only at a clean end, counting and hashing every byte before them, and verified."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse._decoders import SSEDecoder

from lambda_asgi_stream._errors import EndRecordError, InvocationError
from lambda_asgi_stream.client import stream_response
from lambda_asgi_stream.cycle import HTTPCycle, PaddedStreamingResponder, PlainWriter, StreamingResponder
from lambda_asgi_stream.encoder import DELIMITER, decode_stream
from lambda_asgi_stream.end_record import (
    EndRecordReader,
    choose,
    iter_verified,
    parse_formats,
    render,
    verify,
)
from lambda_asgi_stream.eventstream import invoke_complete, payload_chunk
from lambda_asgi_stream.padding import PaddingPolicy
from lambda_asgi_stream.sse import SSEOptions
from tests.emulator.conftest import _factory

# --- the record and its reader, sans-IO ------------------------------------------------------------

BODIES = [
    ("sse", b"data: a\n\n"),
    ("sse", b"data: a\n"),  # an unterminated event: the record's separator ends it
    ("sse", b"data: a"),
    ("sse", b"data: a\r\n\r\n"),
    ("sse", b"data: a\r"),
    ("sse", b""),
    ("sse", b"data: x\n\n: " + b" " * 300 + b"\n"),  # padding last
    ("ndjson", b'{"a": 1}\n'),
    ("ndjson", b'{"a": 1}\n' + b" " * 500),  # padding spaces at a line start
    ("ndjson", b'{"a": 1}'),
    ("csv", b"a,b\r\n1,2\r\n"),
    ("csv", b"a,b\n1,2"),
]


def _append(fmt: Any, body: bytes) -> bytes:
    stripped = body.rstrip(b" \t")
    line_start = not stripped or stripped.endswith(b"\n")
    return body + render(fmt, len(body), hashlib.sha256(body).hexdigest(), body[-4:], line_start)


@pytest.mark.parametrize(("fmt", "body"), BODIES)
@pytest.mark.parametrize("split", [1, 7, 10_000])
def test_reader_gives_back_the_body_without_its_record(fmt: Any, body: bytes, split: int) -> None:
    whole = _append(fmt, body)
    reader = EndRecordReader(fmt)
    out = b"".join(reader.feed(whole[i : i + split]) for i in range(0, len(whole), split))
    assert out + reader.finish() == body


def test_the_record_parses_as_its_format() -> None:
    # An SSE parser sees the app's event, then a `lambda-end` event; an NDJSON reader one more object.
    decoder = SSEDecoder()
    lines = _append("sse", b"data: a\n\n").decode().splitlines()
    events = [(e.event, e.data) for line in lines if (e := decoder.decode(line)) is not None]
    assert events[0] == ("message", "a")
    assert events[1][0] == "lambda-end" and json.loads(events[1][1])["bytes"] == 9
    lines = _append("ndjson", b'{"a": 1}\n' + b" " * 10).decode().splitlines()
    assert [json.loads(line) for line in lines][-1]["lambda_end"]["bytes"] == 19


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda w: w[:-1], "missing"),  # cut inside the record
        (lambda w: w[: len(w) // 2], "missing"),  # cut before it: what a failed response looks like
        (lambda w: w.replace(b"data: 1", b"data: 7", 1), "hash"),  # altered
        (lambda w: w.replace(b"data: 1\n\n", b"", 1), "count"),  # a piece lost
    ],
)
def test_reader_refuses_a_cut_or_altered_body(tamper: Any, reason: str) -> None:
    body = b"".join(f"data: {i}\n\n".encode() for i in range(100))
    with pytest.raises(EndRecordError) as caught:
        verify("text/event-stream", tamper(_append("sse", body)))
    assert caught.value.reason == reason


def test_formats_and_the_choice_per_response() -> None:
    assert parse_formats("on") == {"sse", "ndjson"} and parse_formats("csv") == {"csv"}
    assert parse_formats("off") == frozenset() == parse_formats("")
    with pytest.raises(ValueError):
        parse_formats("xml")
    sse = [(b"content-type", b"text/event-stream")]
    csv = [(b"content-type", b"text/csv")]
    opt = (b"x-lambda-end-record", b"on")
    assert choose(sse, frozenset()) == (None, sse)
    assert choose(sse, parse_formats("on")) == ("sse", sse)
    assert choose(csv, parse_formats("on")) == (None, csv)  # CSV only where chosen
    assert choose([*csv, opt], frozenset()) == ("csv", csv)  # the header is consumed
    assert choose([*sse, (b"x-lambda-end-record", b"off")], parse_formats("on")) == (None, sse)
    gz = [*sse, (b"content-encoding", b"gzip")]
    assert choose([*gz, opt], frozenset()) == (None, gz)  # a record would corrupt compressed bytes
    json_doc = [(b"content-type", b"application/json")]
    assert choose([*json_doc, opt], frozenset()) == (None, json_doc)


# --- in the cycle -----------------------------------------------------------------------------------


class Recorder(PlainWriter):
    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.trailers: list[tuple[bytes, bytes]] | None = None

    async def write(self, data: bytes) -> None:
        self.data.append(data)

    async def close(self, trailers: list[tuple[bytes, bytes]]) -> None:
        self.trailers = trailers

    def body(self) -> tuple[Any, bytes]:
        return decode_stream(b"".join(self.data))


def sse_app(fail: bool, header: bytes | None) -> Any:
    import anyio

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")] + (
            [(b"x-lambda-end-record", header)] if header else []
        )
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(3):
            await send({"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True})
            await anyio.sleep(0.06)  # padding (latency 20 ms) and heartbeats (every 50 ms) go in here
        if fail:
            raise RuntimeError("boom")
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


@pytest.mark.anyio
@pytest.mark.parametrize(("header", "formats"), [(b"on", frozenset()), (None, frozenset({"sse"}))])
async def test_a_clean_end_gets_a_record_covering_padding_and_heartbeats(header: Any, formats: Any) -> None:
    writer = Recorder()
    policy = PaddingPolicy(mode="idle", threshold=2048, latency_ms=20)
    responder = PaddedStreamingResponder(
        writer, "function-url", policy, SSEOptions(heartbeat_s=0.05), formats
    )
    result = await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(sse_app(False, header))
    assert result.end == "complete" and writer.trailers == []
    prelude, body = writer.body()
    assert "x-lambda-end-record" not in dict(prelude.headers)  # consumed
    assert responder.stats.padding > 0 and b": heartbeat" in body
    assert verify("text/event-stream", body) == body[: body.index(b"event: lambda-end")].removesuffix(b"\n")


class WriterOfOldProtocol:
    """A writer written before ``when_pass_ends`` was part of the protocol: the padding flusher then asks
    the loop for the end of the pass itself, through an end-record writer too."""

    def __init__(self) -> None:
        self.recorder = Recorder()

    async def prelude(self, data: bytes) -> None:
        await self.recorder.write(data)

    async def write(self, data: bytes) -> None:
        await self.recorder.write(data)

    async def end(self, data: bytes, trailers: list[tuple[bytes, bytes]]) -> None:
        if data:
            await self.recorder.write(data)
        await self.recorder.close(trailers)


@pytest.mark.anyio
async def test_a_writer_without_the_end_of_pass_call_still_gets_padding_and_a_record() -> None:
    old = WriterOfOldProtocol()
    policy = PaddingPolicy(mode="idle", threshold=2048, latency_ms=20)
    responder = PaddedStreamingResponder(old, "function-url", policy, SSEOptions(heartbeat_s=0.05))  # type: ignore[arg-type]
    result = await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(sse_app(False, b"on"))
    assert result.end == "complete" and responder.stats.padding > 0
    body = old.recorder.body()[1]
    assert verify("text/event-stream", body) == body[: body.index(b"event: lambda-end")].removesuffix(b"\n")


@pytest.mark.anyio
async def test_a_failed_response_gets_no_record() -> None:
    writer = Recorder()
    responder = StreamingResponder(writer, "function-url", frozenset({"sse"}))
    result = await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(sse_app(True, None))
    assert result.end == "error" and writer.trailers  # error trailers, which plain HTTP clients never see
    with pytest.raises(EndRecordError) as caught:
        verify("text/event-stream", writer.body()[1])
    assert caught.value.reason == "missing"


@pytest.mark.anyio
async def test_not_opted_in_costs_no_wrapper() -> None:
    writer = Recorder()
    responder = StreamingResponder(writer, "function-url")
    await HTTPCycle({"type": "http", "headers": []}, b"", responder).run(sse_app(False, None))
    assert responder.writer is writer  # nothing counted or hashed
    assert b"lambda-end" not in writer.body()[1]


@pytest.mark.anyio
async def test_a_head_response_gets_no_record_even_when_asked() -> None:
    # RFC 9110 9.3.2: a response to HEAD has no content; the record would be some.
    from lambda_asgi_stream.cycle import make_responder
    from lambda_asgi_stream.events import parse_event
    from lambda_asgi_stream.events.build import build_event

    request = parse_event(build_event("function-url", method="HEAD", path="/"))
    writer = Recorder()
    responder = make_responder(request, writer, PaddingPolicy(), SSEOptions(), end_records=frozenset({"sse"}))
    await HTTPCycle(dict(request.scope), b"", responder).run(sse_app(False, b"on"))
    prelude, body = writer.body()
    assert body == b"" and "x-lambda-end-record" not in dict(prelude.headers)


# --- the streamed-invocation client ---------------------------------------------------------------

SSE_PRELUDE = b'{"statusCode":200,"headers":{"content-type":"text/event-stream"}}' + DELIMITER


def test_client_verifies_the_record_of_a_streamed_invocation() -> None:
    whole = _append("sse", b"data: 1\n\ndata: 2\n\n")
    pieces = [payload_chunk(SSE_PRELUDE + whole[:5]), payload_chunk(whole[5:]), invoke_complete()]
    with stream_response(pieces, end_record=True) as r:
        assert r.read() == b"data: 1\n\ndata: 2\n\n"
    cut = [payload_chunk(SSE_PRELUDE + whole[:20]), invoke_complete()]
    with pytest.raises(EndRecordError), stream_response(cut, end_record=True) as r:
        r.read()
    failed = [payload_chunk(SSE_PRELUDE + b"data: 1\n\n"), invoke_complete("Function.RuntimeError", "boom")]
    with pytest.raises(InvocationError), stream_response(failed, end_record=True) as r:  # the better news
        r.read()


# --- end to end: serve, a plain HTTP client ---------------------------------------------------------


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    for start in _factory(tmp_path_factory.mktemp("end")):
        env = {
            "LAMBDA_ASGI_STREAM_END_RECORD": "sse,ndjson",
            "LAMBDA_ASGI_STREAM_PADDING_LATENCY_MS": "20",
        }
        yield start("tests.end_record.apps:app", "--buffer-threshold", "4096", env=env)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/sse?n=3&pause=0.05", b"data: 0\n\n"),
        ("/ndjson?n=3&pause=0.05", b'{"i": 0}\n'),
        ("/csv?n=3&opt=on", b"0,x\r\n"),
    ],
)
def test_httpx_reads_a_verified_body_through_serve(emu: Any, path: str, expected: bytes) -> None:
    with httpx.Client(base_url=emu.url, timeout=30) as client, client.stream("GET", path) as response:
        assert "x-lambda-end-record" not in response.headers
        body = b"".join(iter_verified(response))
    assert body.startswith(expected) and b"lambda" not in body


def _read_verified(url: str, path: str) -> bytes:
    with httpx.Client(base_url=url, timeout=30) as client, client.stream("GET", path) as response:
        return b"".join(iter_verified(response))


def test_httpx_sees_a_cut_stream_as_cut(emu: Any) -> None:
    with pytest.raises((EndRecordError, httpx.RemoteProtocolError)):
        _read_verified(emu.url, "/crash?n=2")
    with pytest.raises(EndRecordError):
        _read_verified(emu.url, "/csv?n=2")  # csv is not enabled by the variable: no record
