"""examples/sse_llm: an OpenAI-compatible endpoint whose tokens leave Lambda as they are generated.

In-process through LambdaTransport (the production cycle and encoder, Lambda's hold-back model with the
idle padding flusher on, as deployed), against a fake OpenAI-compatible upstream on 127.0.0.1 for the
proxy provider. The ``openai`` client and headless Chromium tests go through the emulator, in
test_examples_served.py.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from httpx_sse import aconnect_sse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from examples.sse_llm.app import LocalModel, UpstreamModel, create_app, tokenize
from lambda_asgi_stream import StreamTruncatedError
from lambda_asgi_stream.testing import LambdaTransport

pytestmark = pytest.mark.anyio
MESSAGES = [{"role": "user", "content": "What does streaming give me?"}]
LIMIT = 15.0


class GatedModel:
    """Produces token i+1 only once the test has seen token i: delivery order, not timing."""

    def __init__(self) -> None:
        self.tokens = tokenize("one two three four")
        self.gates = [anyio.Event() for _ in self.tokens]
        self.produced = 0

    async def stream(self, messages: list[dict[str, Any]], max_tokens: int | None) -> AsyncIterator[str]:
        for i, token in enumerate(self.tokens):
            if i:
                await self.gates[i - 1].wait()
            self.produced = i + 1
            yield token


def _client(app: Any) -> httpx.AsyncClient:
    transport = LambdaTransport(app, buffering="lambda", padding="idle")
    return httpx.AsyncClient(transport=transport, base_url="https://lambda")


def _request(stream: bool, **extra: Any) -> dict[str, Any]:
    return {"model": "local", "stream": stream, "messages": MESSAGES, **extra}


async def test_each_token_reaches_the_client_before_the_next_is_generated() -> None:
    model = GatedModel()
    received: list[str] = []
    async with _client(create_app(model)) as client:
        with anyio.fail_after(LIMIT):
            async with aconnect_sse(client, "POST", "/v1/chat/completions", json=_request(True)) as source:
                assert source.response.headers["content-type"].startswith("text/event-stream")
                async for event in source.aiter_sse():
                    if event.data == "[DONE]":
                        break
                    chunk = json.loads(event.data)
                    assert chunk["object"] == "chat.completion.chunk"
                    piece = chunk["choices"][0]["delta"].get("content")
                    if piece:
                        received.append(piece)
                        # Held back by Lambda, this token would wait for the next ones, which wait for us.
                        assert model.produced == len(received)
                        model.gates[len(received) - 1].set()
    assert received == model.tokens


async def test_local_model_stream_matches_its_answer_and_ends_with_done() -> None:
    model = LocalModel(first_token_ms=0, token_ms=0)
    async with (
        _client(create_app(model)) as client,
        aconnect_sse(client, "POST", "/v1/chat/completions", json=_request(True)) as source,
    ):
        data = [event.data async for event in source.aiter_sse()]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == model.answer(MESSAGES)
    assert len({c["id"] for c in chunks}) == 1


async def test_non_streaming_completion_and_max_tokens() -> None:
    model = LocalModel(first_token_ms=0, token_ms=0)
    async with _client(create_app(model)) as client:
        response = await client.post("/v1/chat/completions", json=_request(False, max_tokens=3))
    body = response.json()
    assert response.status_code == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "".join(tokenize(model.answer(MESSAGES))[:3])
    assert body["usage"]["completion_tokens"] == 3


async def test_bad_request_is_a_422_not_a_stream() -> None:
    async with _client(create_app(LocalModel(0, 0))) as client:
        response = await client.post("/v1/chat/completions", json={"model": "local", "messages": []})
    assert response.status_code == 422


async def test_page_is_served() -> None:
    async with _client(create_app(LocalModel(0, 0))) as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert "v1/chat/completions" in response.text


# --- the proxy provider against a fake upstream on loopback --------------------------------------


def _fake_upstream(seen: list[dict[str, Any]]) -> Starlette:
    async def completions(request: Request) -> Response:
        payload = await request.json()
        seen.append({"body": payload, "auth": request.headers.get("authorization")})
        if payload["messages"][0]["content"] == "fail":
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)

        async def events() -> AsyncIterator[str]:
            for piece in ["Hel", "lo", " there"]:
                delta = {"choices": [{"index": 0, "delta": {"content": piece}}]}
                yield f"data: {json.dumps(delta)}\n\n"
            if payload["messages"][0]["content"] == "cut":
                raise RuntimeError("upstream dropped the connection")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


@pytest.fixture
def upstream() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(_fake_upstream(seen), log_level="critical", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", seen
    finally:
        server.should_exit = True
        thread.join(10)


async def test_upstream_tokens_are_proxied(upstream: tuple[str, list[dict[str, Any]]]) -> None:
    url, seen = upstream
    app = create_app(UpstreamModel(url, api_key="sk-test", model="gpt-x"))
    async with (
        _client(app) as client,
        aconnect_sse(client, "POST", "/v1/chat/completions", json=_request(True, max_tokens=5)) as source,
    ):
        data = [event.data async for event in source.aiter_sse()]
    pieces = [json.loads(d)["choices"][0]["delta"].get("content") for d in data[:-1]]
    assert "".join(p for p in pieces if p) == "Hello there"
    assert seen[0]["auth"] == "Bearer sk-test"
    assert seen[0]["body"]["model"] == "gpt-x" and seen[0]["body"]["max_tokens"] == 5


async def test_upstream_failure_before_streaming_is_a_502(upstream: tuple[str, list[dict[str, Any]]]) -> None:
    url, _ = upstream
    app = create_app(UpstreamModel(url))
    body = {"model": "local", "stream": False, "messages": [{"role": "user", "content": "fail"}]}
    async with _client(app) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 502
    assert "503" in response.json()["detail"]


async def test_upstream_cut_mid_stream_is_a_truncated_stream_not_a_clean_end(
    upstream: tuple[str, list[dict[str, Any]]],
) -> None:
    url, _ = upstream
    app = create_app(UpstreamModel(url))
    body = {"model": "local", "stream": True, "messages": [{"role": "user", "content": "cut"}]}
    async with _client(app) as client:
        with pytest.raises(StreamTruncatedError):
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                assert response.status_code == 200
                async for _ in response.aiter_raw():
                    pass
