"""The front door in process, with a fake sandbox: the limits that are too slow to hit end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, MutableMapping
from typing import Any, cast

import anyio
import pytest

from lambda_asgi_stream.buffering import MAX_STREAMED_BYTES
from lambda_asgi_stream.emulator import EmulatorOptions, FrontDoor, Sandbox, SandboxPool, StreamCut
from lambda_asgi_stream.emulator.local_api import BufferedResult, InvocationEvent, StreamData, StreamEnd
from lambda_asgi_stream.encoder import MAX_PRELUDE_BYTES, build_prelude

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
SSE_PRELUDE = build_prelude(200, [(b"content-type", b"text/event-stream")], "function-url")


class FakeSandbox:
    """Plays a recorded stream (the item before the last ``repeat`` times); remembers how much of it was
    consumed and whether it was killed."""

    def __init__(self, items: list[InvocationEvent], repeat: int = 1) -> None:
        self.items = items
        self.repeat = repeat
        self.consumed = 0
        self.killed: tuple[str, str] | None = None
        self.lock = anyio.Semaphore(1)

    async def _stream(self, on_taken: Callable[[], None]) -> AsyncIterator[InvocationEvent]:
        on_taken()
        items = list(self.items)
        if self.repeat > 1:
            items[-2:-1] = [items[-2]] * self.repeat
        for item in items:
            yield item
            self.consumed += 1

    def invoke(self, event: bytes, timeout: float, on_taken: Callable[[], None]) -> AsyncIterator[Any]:
        return self._stream(on_taken)

    async def kill(self, error_type: str, message: str) -> None:
        self.killed = (error_type, message)


class Client:
    """Records what the front door sends; never disconnects."""

    def __init__(self) -> None:
        self.messages: list[MutableMapping[str, Any]] = []
        self.body_bytes = 0

    async def receive(self) -> dict[str, Any]:
        if not self.messages and not hasattr(self, "_asked"):
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body":
            self.body_bytes += len(message.get("body", b""))
            message = {**message, "body": b"<%d bytes>" % len(message.get("body", b""))}
        self.messages.append(message)


SCOPE = {
    "type": "http",
    "method": "GET",
    "path": "/x",
    "raw_path": b"/x",
    "query_string": b"",
    "headers": [(b"host", b"127.0.0.1:9000")],
    "client": ("127.0.0.1", 5000),
}


async def _run(sandbox: FakeSandbox, **options: Any) -> tuple[Client, BaseException | None, FrontDoor]:
    client = Client()
    pool = SandboxPool([cast(Sandbox, sandbox)])
    error: BaseException | None = None
    async with anyio.create_task_group() as tasks:
        front = FrontDoor(pool, EmulatorOptions(app="x:app", **options), tasks)
        try:
            await front(dict(SCOPE), client.receive, client.send)
        except StreamCut as exc:
            error = exc
        # The sandbox goes back to the pool only once its invocation is over.
        with anyio.fail_after(5):
            assert await pool.acquire() is cast(Sandbox, sandbox)
    return client, error, front


async def test_streamed_response_is_cut_at_200_mb_and_the_rest_drained() -> None:
    chunk = StreamData(b"x" * MiB)
    sandbox = FakeSandbox([StreamData(SSE_PRELUDE), chunk, StreamEnd([], None)], repeat=210)
    client, error, _ = await _run(sandbox, buffering="off")
    assert isinstance(error, StreamCut)  # the client's connection is dropped mid-body
    assert error.args == ("error:Function.ResponseSizeTooLarge",)
    assert client.body_bytes == MAX_STREAMED_BYTES  # everything up to the limit, nothing after it
    assert client.messages[-1]["more_body"] is True  # no final chunk
    assert sandbox.consumed == 1 + 210 + 1  # the function's remaining output was drained, not left hanging
    assert sandbox.killed is None


async def test_prelude_without_delimiter_in_16_kib_gives_502() -> None:
    sandbox = FakeSandbox(
        [StreamData(b"{" + b" " * MAX_PRELUDE_BYTES), StreamData(b"more"), StreamEnd([], None)]
    )
    client, error, _ = await _run(sandbox)
    assert error is None
    assert client.messages[0]["status"] == 502
    assert client.messages[-1]["more_body"] is False


async def test_held_bytes_are_released_before_a_cut() -> None:
    """With the hold-back model, what the service held when the function failed still goes out."""
    failure = StreamEnd([], ("Function.RuntimeError", {"errorMessage": "boom"}))
    sandbox = FakeSandbox([StreamData(SSE_PRELUDE), StreamData(b"data: 1\n\n"), failure])
    client, error, _ = await _run(sandbox, buffering="lambda")
    assert isinstance(error, StreamCut)
    assert [m.get("body") for m in client.messages[1:]] == [b"<9 bytes>"]
    assert client.messages[-1]["more_body"] is True


async def test_function_timeout_kills_the_sandbox() -> None:
    class Hanging(FakeSandbox):
        async def _stream(self, on_taken: Callable[[], None]) -> AsyncIterator[InvocationEvent]:
            on_taken()
            yield StreamData(SSE_PRELUDE)
            await anyio.sleep_forever()
            yield StreamEnd([], None)

    sandbox = Hanging([])
    client, error, _ = await _run(sandbox, timeout=0.05)
    assert isinstance(error, StreamCut)
    assert sandbox.killed is not None and sandbox.killed[0] == "Sandbox.Timedout"
    assert client.messages[0]["status"] == 200


async def test_buffered_response_over_6_mb_gives_502() -> None:
    """Lambda's limit is on the JSON the function returns (our runtime checks too; the front door does not
    rely on it)."""
    payload = {"statusCode": 200, "body": "x" * (6 * MiB), "isBase64Encoded": False}
    sandbox = FakeSandbox([BufferedResult(payload, "application/json")])
    client, error, _ = await _run(sandbox, invoke_mode="BUFFERED")
    assert error is None
    assert client.messages[0]["status"] == 502
    payload["body"] = "x" * (6 * MiB - 100)
    client, error, _ = await _run(
        FakeSandbox([BufferedResult(payload, "application/json")]), invoke_mode="BUFFERED"
    )
    assert client.messages[0]["status"] == 200
    assert client.body_bytes == 6 * MiB - 100


async def test_non_latin1_header_values_pass_as_utf8() -> None:
    prelude = build_prelude(
        200, [(b"content-disposition", "r\u00e9sum\u00e9 \u20ac.pdf".encode())], "function-url"
    )
    sandbox = FakeSandbox([StreamData(prelude + b"pdf"), StreamEnd([], None)])
    client, error, _ = await _run(sandbox, buffering="off")
    assert error is None
    start = client.messages[0]
    assert start["status"] == 200
    assert (b"content-disposition", "r\u00e9sum\u00e9 \u20ac.pdf".encode()) in start["headers"]


async def test_bandwidth_option_paces_the_client_past_6_mb(monkeypatch: pytest.MonkeyPatch) -> None:
    import lambda_asgi_stream.emulator.response as emulator

    slept: list[float] = []
    real_sleep = anyio.sleep

    async def record(seconds: float) -> None:  # the pacing asked for, without waiting it out
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(emulator.anyio, "sleep", record)
    chunk = StreamData(b"x" * MiB)
    sandbox = FakeSandbox([StreamData(SSE_PRELUDE), chunk, StreamEnd([], None)], repeat=10)
    client, error, _ = await _run(sandbox, buffering="off", bandwidth=True)
    assert error is None and client.body_bytes == 10 * MiB
    paced = [s for s in slept if s > 0]
    # 6 MiB go out uncapped, then 2 MiB/s: the 4 MiB after them are each due 0.5 s after the previous
    # one. (The clock does not move here, so each delay counts from the start: 0.5, 1.0, 1.5, 2.0 s.)
    assert len(paced) == 4
    assert paced == pytest.approx([0.5, 1.0, 1.5, 2.0], abs=0.05)
