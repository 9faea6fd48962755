"""After-invocation hooks: a batching telemetry client flushed after each response, before the next event."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

import lambda_asgi_stream
from lambda_asgi_stream import Adapter
from lambda_asgi_stream.events.build import build_event

from .fake_api import FakeRuntimeAPI, decode_streamed
from .helpers import body, http_event, run_loop, start

pytestmark = pytest.mark.anyio


class BatchingClient:
    """A telemetry SDK in miniature: events wait in a buffer until flush() sends them (here: to the fake
    Runtime API's log, where their order against `next` can be checked)."""

    def __init__(self, api: FakeRuntimeAPI | None) -> None:
        self.api = api
        self.buffer: list[str] = []
        self.sent: list[str] = []

    def capture(self, text: str) -> None:
        self.buffer.append(text)

    def flush(self) -> None:
        batch, self.buffer = self.buffer, []
        self.sent.extend(batch)
        if self.api is not None:
            for text in batch:
                self.api.note("telemetry", text)


@pytest.fixture
def hooks() -> Iterator[list[Any]]:
    added: list[Any] = []
    yield added
    for hook in added:
        lambda_asgi_stream.remove_after_invocation(hook)


def app_for(client: BatchingClient) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        client.capture(f"served {scope['path']}")
        await send(start(200, [("content-type", "text/plain")]))
        await send(body(b"ok"))

    return app


async def test_a_batching_client_is_flushed_after_each_response_before_the_next_event(
    api: FakeRuntimeAPI, hooks: list[Any]
) -> None:
    client = BatchingClient(api)
    hooks.append(lambda_asgi_stream.after_invocation(client.flush))
    first, second = api.add(http_event("/one")), api.add(http_event("/two"))
    await run_loop(app_for(client), api)
    assert client.sent == ["served /one", "served /two"]
    assert decode_streamed(api.response(first)).payload == b"ok"
    events = [e for e in api.log if e[0] in ("telemetry", "answered", "next")]
    # each response is answered, then flushed, and only then is the next event asked for
    one = events.index(("answered", first.request_id, "response"))
    assert events[one + 1] == ("telemetry", "served /one")
    assert events[one + 2][0] == "next"
    two = events.index(("answered", second.request_id, "response"))
    assert events[two + 1] == ("telemetry", "served /two")


async def test_a_failing_or_overlong_hook_is_logged_and_the_loop_goes_on(
    api: FakeRuntimeAPI, hooks: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("telemetry backend down")

    async def endless() -> None:
        await asyncio.sleep(30)

    client = BatchingClient(None)
    for hook in (broken, endless, client.flush):
        hooks.append(lambda_asgi_stream.after_invocation(hook))
    # Deadlines 1 s away with the default 0.5 s margin: the endless hook is stopped within 0.5 s.
    soon = int(time.time() * 1000) + 1000
    api.add(http_event("/one"), deadline_ms=soon)
    api.add(http_event("/two"), deadline_ms=soon + 500)
    await run_loop(app_for(client), api)
    assert client.sent == ["served /one", "served /two"]  # hooks after a failing one still run
    messages = [r.getMessage() for r in caplog.records]
    assert sum("broken failed" in m for m in messages) == 2
    assert sum("endless stopped" in m for m in messages) == 2


def test_the_adapter_runs_hooks_before_it_returns(hooks: list[Any]) -> None:
    client = BatchingClient(None)
    hooks.append(lambda_asgi_stream.after_invocation(client.flush))
    handler = Adapter(app_for(client), lifespan="off")
    response = handler(build_event("function-url", method="GET", path="/x"))
    assert response["body"] == "ok" and client.sent == ["served /x"]
    handler.close()


def test_registering_twice_runs_once_and_non_callables_are_refused(hooks: list[Any]) -> None:
    client = BatchingClient(None)
    runs: list[int] = []

    def counted() -> None:
        runs.append(1)
        client.flush()

    hooks.append(lambda_asgi_stream.after_invocation(counted))
    lambda_asgi_stream.after_invocation(counted)
    handler = Adapter(app_for(client), lifespan="off")
    client.capture("a")
    handler(build_event("function-url", method="GET", path="/x"))
    assert client.sent == ["a", "served /x"]
    assert len(runs) == 1  # a second flush would find an empty buffer: count the runs themselves
    handler.close()
    with pytest.raises(TypeError):
        lambda_asgi_stream.after_invocation(json.dumps(1))  # type: ignore[arg-type]
