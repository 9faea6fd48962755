"""Bodies reach the client as the app sends them, and the hold-back and padding models shape them."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from httpx_sse import aconnect_sse

from lambda_asgi_stream.padding import PaddingPolicy
from lambda_asgi_stream.sse import format_event
from lambda_asgi_stream.testing import LambdaInfo, LambdaTransport

from .apps import Probe, fastapi_app
from .conftest import BASE_URL, LIMIT, in_thread

pytestmark = pytest.mark.anyio


async def _lockstep(
    transport: httpx.AsyncBaseTransport, path: str, probe: Probe, limit: float = LIMIT
) -> list[bytes]:
    """Read chunk i, check the app has not produced chunk i+1 yet, then let it go on.

    A transport that collects the body first can never hand out chunk 0 (the app waits for gate 0
    before it finishes), so this ends in the fail_after instead of passing.
    """
    received: list[bytes] = []
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        with anyio.fail_after(limit):
            async with client.stream("GET", path) as response:
                assert response.status_code == 200
                chunks = response.aiter_raw()
                for i in range(probe.steps):
                    received.append(await chunks.__anext__())
                    assert probe.did(f"produced {i}")
                    assert not probe.did(f"produced {i + 1}"), "the app ran ahead of the client"
                    if i + 1 < probe.steps:
                        probe.open(i)
                assert [c async for c in chunks] == []
    return received


@pytest.mark.parametrize("integration", ["function-url", "rest"])
async def test_each_chunk_arrives_before_the_app_produces_the_next(integration: str) -> None:
    probe = Probe()
    transport = LambdaTransport(fastapi_app(probe), integration=integration)  # type: ignore[arg-type]
    assert await _lockstep(transport, "/stream", probe) == [b"chunk 0\n", b"chunk 1\n", b"chunk 2\n"]


async def test_the_lockstep_check_fails_on_a_transport_that_buffers() -> None:
    # Control: the same check against httpx's ASGITransport (which collects the body) must time out,
    # or the lockstep test above would prove nothing.
    probe = Probe()
    with pytest.raises(TimeoutError):
        await _lockstep(httpx.ASGITransport(fastapi_app(probe)), "/stream", probe, limit=0.5)
    assert probe.did("produced 0") and not probe.did("produced 1")


async def test_sse_events_stream_through_httpx_sse() -> None:
    probe = Probe()
    seen: list[tuple[str, str, str]] = []
    async with httpx.AsyncClient(transport=LambdaTransport(fastapi_app(probe)), base_url=BASE_URL) as client:
        with anyio.fail_after(LIMIT):
            async with aconnect_sse(client, "GET", "/sse") as source:
                assert source.response.headers["content-type"].startswith("text/event-stream")
                async for event in source.aiter_sse():
                    seen.append((event.event, event.id, event.data))
                    i = len(seen) - 1
                    assert not probe.did(f"produced {i + 1}")
                    if i + 1 < probe.steps:
                        probe.open(i)
    assert seen == [("token", "0", "word 0"), ("token", "1", "word 1"), ("token", "2", "word 2")]


async def test_lambda_buffering_holds_small_writes_until_the_end() -> None:
    probe = Probe()
    transport = LambdaTransport(fastapi_app(probe), buffering="lambda")
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        with anyio.fail_after(LIMIT):
            async with client.stream("GET", "/small-writes", params={"n": 5}) as response:
                body = b"".join([c async for c in response.aiter_raw()])
    info: LambdaInfo = response.extensions["lambda"]
    assert body == b"000000111111222222333333444444"
    assert len(info.writes) == 1 + 5  # the prelude, then each of the app's writes
    assert len(info.chunks) == 1  # all of it released at once, at the end
    assert info.chunks[0][0] >= info.writes[-1][0] >= probe.when("produced 4")


async def test_lambda_buffering_releases_once_the_threshold_is_pending() -> None:
    transport = LambdaTransport(fastapi_app(Probe()), buffering="lambda", buffer_threshold=10)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        with anyio.fail_after(LIMIT):
            response = await client.get("/small-writes", params={"n": 5, "size": 6})
    info: LambdaInfo = response.extensions["lambda"]
    assert response.content == b"000000111111222222333333444444"
    assert [size for _, size in info.chunks] == [12, 12, 6]  # 6+6 >= 10, 6+6 >= 10, the rest at the end


async def test_lambda_buffering_without_padding_blocks_a_lockstep_stream() -> None:
    # Small SSE events sit in the service: the client never sees event 0 while the app waits for it.
    probe = Probe()
    transport = LambdaTransport(fastapi_app(probe), buffering="lambda", padding="none")
    with pytest.raises(TimeoutError):
        await _lockstep(transport, "/sse", probe, limit=0.5)
    assert probe.did("produced 0") and not probe.did("produced 1")


@pytest.mark.parametrize(
    ("path", "item", "padding"),
    [
        ("/sse", "id: {i}\r\nevent: token\r\ndata: word {i}\r\n\r\n", b": \n"),
        ("/ndjson", '{{"n": {i}}}\n', b" "),
    ],
)
async def test_idle_padding_pushes_small_writes_past_the_hold_back(
    path: str, item: str, padding: bytes
) -> None:
    probe = Probe()
    transport = LambdaTransport(fastapi_app(probe), buffering="lambda", padding="idle", buffer_threshold=4096)
    received = await _lockstep(transport, path, probe)
    *pushed, last = received
    for i, chunk in enumerate(pushed):
        # The app's bytes, then just enough padding (SSE comment lines, NDJSON spaces) to reach 4096.
        data = item.format(i=i).encode()
        assert chunk.startswith(data) and len(chunk) == 4096
        assert chunk[len(data) :].strip(padding) == b""
    # The end of the response releases the last one (padding only if the app idled before it returned).
    last_item = item.format(i=2).encode()
    assert last.startswith(last_item) and last[len(last_item) :].strip(padding) == b""


async def test_idle_padded_sse_still_parses_with_httpx_sse() -> None:
    probe = Probe()
    transport = LambdaTransport(fastapi_app(probe), buffering="lambda", padding="idle", buffer_threshold=2048)
    seen: list[str] = []
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        with anyio.fail_after(LIMIT):
            async with aconnect_sse(client, "GET", "/sse") as source:
                async for event in source.aiter_sse():
                    seen.append(event.data)
                    if len(seen) < probe.steps:
                        probe.open(len(seen) - 1)
    assert seen == ["word 0", "word 1", "word 2"]


async def test_chunk_timing_is_recorded_in_order() -> None:
    probe = Probe()
    transport = LambdaTransport(fastapi_app(probe))
    await _lockstep(transport, "/stream", probe)
    # _lockstep's response is gone; run once more and keep it.
    probe = Probe()
    transport = LambdaTransport(fastapi_app(probe))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        with anyio.fail_after(LIMIT):
            async with client.stream("GET", "/stream") as response:
                chunks = response.aiter_raw()
                for i in range(probe.steps):
                    await chunks.__anext__()
                    if i + 1 < probe.steps:
                        probe.open(i)
                await response.aclose()
    info: LambdaInfo = response.extensions["lambda"]
    assert info.prelude is not None and info.prelude.status == 200
    assert info.raw_prelude.startswith(b'{"statusCode":200') and info.raw_prelude.endswith(b"\0" * 8)
    assert [size for _, size in info.writes] == [len(info.raw_prelude), 8, 8, 8]
    assert [size for _, size in info.chunks] == [8, 8, 8]
    released = [t for t, _ in info.chunks]
    assert released == sorted(released)
    # Chunk i reached the client before the app produced chunk i+1, and after it produced chunk i.
    for i in range(probe.steps):
        assert probe.when(f"produced {i}") <= released[i]
        if i + 1 < probe.steps:
            assert released[i] < probe.when(f"produced {i + 1}")


def _sync_lockstep(probe: Probe, path: str) -> list[bytes]:
    received: list[bytes] = []
    transport = LambdaTransport(fastapi_app(probe))
    with (
        httpx.Client(transport=transport, base_url=BASE_URL) as client,
        client.stream("GET", path) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_raw()
        for i in range(probe.steps):
            received.append(next(chunks))
            assert not probe.did(f"produced {i + 1}")
            if i + 1 < probe.steps:
                probe.open(i)
        assert list(chunks) == []
    return received


async def test_sync_client_streams_chunk_by_chunk() -> None:
    probe = Probe(sync=True)
    received = await in_thread(lambda: _sync_lockstep(probe, "/stream"))
    assert received == [b"chunk 0\n", b"chunk 1\n", b"chunk 2\n"]


async def test_sync_client_without_a_with_block() -> None:
    def body() -> tuple[int, bytes, list[tuple[int, bytes]]]:
        probe = Probe(sync=True)
        client = httpx.Client(transport=LambdaTransport(fastapi_app(probe)), base_url=BASE_URL)
        plain = client.get("/json", params={"q": "sync"})
        got = []
        for _ in range(2):  # several requests, each on its own portal
            with client.stream("GET", "/small-writes", params={"n": 2}) as response:
                got.append((response.status_code, response.read()))
        client.close()
        return plain.status_code, plain.content, got

    status, content, got = await in_thread(body)
    assert (status, content) == (200, b'{"hello":"lambda","q":"sync"}')
    assert got == [(200, b"000000111111")] * 2


async def test_leaving_a_stream_early_stops_the_app() -> None:
    probe = Probe()
    async with httpx.AsyncClient(transport=LambdaTransport(fastapi_app(probe)), base_url=BASE_URL) as client:
        with anyio.fail_after(LIMIT):
            async with client.stream("GET", "/forever") as response:
                chunks = response.aiter_raw()
                assert await chunks.__anext__() == b"tick\n"
                assert await chunks.__anext__() == b"tick\n"
            assert probe.closed  # the generator's finally ran: the app was stopped, not left running
            assert not probe.did("produced 3")
            # and the client still works afterwards
            assert (await client.get("/json")).status_code == 200


async def test_leaving_a_sync_stream_early_stops_the_app() -> None:
    probe = Probe(sync=True)

    def body() -> None:
        transport = LambdaTransport(fastapi_app(probe))
        with (
            httpx.Client(transport=transport, base_url=BASE_URL) as client,
            client.stream("GET", "/forever") as r,
        ):
            assert next(r.iter_raw()) == b"tick\n"

    await in_thread(body)
    assert probe.closed


async def test_concurrent_and_nested_streams_on_one_client() -> None:
    probe = Probe()
    bodies: dict[str, bytes] = {}
    async with httpx.AsyncClient(transport=LambdaTransport(fastapi_app(probe)), base_url=BASE_URL) as client:

        async def fetch(name: str, n: int) -> None:
            async with client.stream("GET", "/small-writes", params={"n": n}) as response:
                bodies[name] = b"".join([c async for c in response.aiter_raw()])

        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as group:  # each task opens and closes its own stream
                for name, n in (("a", 3), ("b", 5), ("c", 1)):
                    group.start_soon(fetch, name, n)
            async with client.stream("GET", "/small-writes", params={"n": 2}) as outer:
                outer_chunks = outer.aiter_raw()
                first = await outer_chunks.__anext__()
                async with client.stream("GET", "/json") as inner:
                    inner_body = await inner.aread()
                rest = b"".join([c async for c in outer_chunks])
    assert bodies == {"a": b"000000111111222222", "b": b"000000111111222222333333444444", "c": b"000000"}
    assert (first, rest) == (b"000000", b"111111")
    assert inner_body == b'{"hello":"lambda","q":""}'


async def test_idle_padding_waits_for_a_pause_not_for_the_next_write() -> None:
    # The flusher pads only once no write came for `idle_ms` (a debounce), so a burst of writes costs no
    # padding. Through this transport each write is handed to the client before the next one is made,
    # so the app yields to the event loop between writes and the flusher gets to run in the middle of
    # the burst: a flusher that padded as soon as it woke up would pad there.
    events = [format_event(f"token {i}") for i in range(20)]
    padded = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for event in events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await padded.wait()  # the pause: now, and only now, padding is due
        await send({"type": "http.response.body", "body": b"data: end\n\n"})

    policy = PaddingPolicy(mode="idle", idle_ms=300, threshold=4096)
    chunks: list[bytes] = []
    async with httpx.AsyncClient(transport=LambdaTransport(app, padding=policy), base_url=BASE_URL) as client:
        with anyio.fail_after(LIMIT):
            async with client.stream("GET", "/") as response:
                async for chunk in response.aiter_raw():
                    chunks.append(chunk)
                    if chunk.startswith(b":"):
                        padded.set()
    pads = [i for i, chunk in enumerate(chunks) if chunk.startswith(b":")]
    assert chunks[: len(events)] == events, "padding came in the middle of the burst"
    assert pads == [len(events)]  # once, after the last write of the burst
    assert len(b"".join(events)) + len(chunks[len(events)]) == 4096  # just enough to reach the threshold
    assert chunks[-1] == b"data: end\n\n"
