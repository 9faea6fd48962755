"""An OpenAI-compatible chat completions endpoint that streams its tokens from Lambda.

    lambda-asgi-stream serve examples.sse_llm.app:app
    curl -N localhost:9000/v1/chat/completions -H 'content-type: application/json' \\
         -d '{"model": "local", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'

``stream: true`` answers with ``chat.completion.chunk`` Server-Sent Events ending in ``data: [DONE]``,
exactly what the official ``openai`` client, ``httpx-sse`` and browsers expect; ``stream: false`` answers
with one ``chat.completion``. ``GET /`` is a small page that shows the tokens as they arrive and, under
the answer, when each was written and when it arrived, and the bytes on the wire against the useful ones
(each chunk carries ``x_written_ms``, its write time, for that).

Tokens come from a deterministic local model (no network, no weights) that answers from a small fixed
text chosen by a hash of the prompt and paces its tokens like a hosted model: ``LLM_FIRST_TOKEN_MS``
(default 250) before the first, ``LLM_TOKEN_MS`` (default 30) between the others. Set ``LLM_UPSTREAM_URL``
(e.g. ``https://api.openai.com/v1``, with ``LLM_UPSTREAM_API_KEY`` and ``LLM_UPSTREAM_MODEL``) to proxy a
real OpenAI-compatible upstream instead, its tokens streamed through as they come.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio
import httpx
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

# --- where the tokens come from -----------------------------------------------------------------

ANSWERS = [
    "Streaming lets the first words reach the reader while the rest is still being written, "
    "so a long answer feels quick even when the whole of it takes several seconds to produce.",
    "AWS Lambda can stream a response through a Function URL or an API Gateway REST API, "
    "which cuts the time to first byte and lifts the response size limit from 6 MB to 200 MB.",
    "Server-Sent Events are plain text over one HTTP response: each event is a few lines "
    "starting with data, and a blank line ends it, which is why every browser can read them.",
]


class Provider(Protocol):
    async def stream(self, messages: list[dict[str, Any]], max_tokens: int | None) -> AsyncIterator[str]:
        """Yield the completion's text, piece by piece."""
        ...


def _prompt(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content", "")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def tokenize(text: str) -> list[str]:
    """Words with their leading space, as most BPE tokenizers split English."""
    return re.findall(r"\s*\S+", text)


class LocalModel:
    """A deterministic stand-in for a hosted model."""

    def __init__(self, first_token_ms: float | None = None, token_ms: float | None = None) -> None:
        self.first_token_ms = float(
            os.environ.get("LLM_FIRST_TOKEN_MS", 250) if first_token_ms is None else first_token_ms
        )
        self.token_ms = float(os.environ.get("LLM_TOKEN_MS", 30) if token_ms is None else token_ms)

    def answer(self, messages: list[dict[str, Any]]) -> str:
        digest = hashlib.sha256(_prompt(messages).encode()).digest()
        return ANSWERS[digest[0] % len(ANSWERS)]

    async def stream(self, messages: list[dict[str, Any]], max_tokens: int | None) -> AsyncIterator[str]:
        tokens = tokenize(self.answer(messages))
        if max_tokens is not None:
            tokens = tokens[:max_tokens]
        await anyio.sleep(self.first_token_ms / 1000)
        for i, token in enumerate(tokens):
            if i:
                await anyio.sleep(self.token_ms / 1000)
            yield token


class UpstreamModel:
    """Proxies an OpenAI-compatible ``/v1/chat/completions`` upstream, streaming its tokens through."""

    def __init__(
        self, base_url: str, api_key: str = "", model: str = "", client: httpx.AsyncClient | None = None
    ):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.model = model
        self.client = client

    async def stream(self, messages: list[dict[str, Any]], max_tokens: int | None) -> AsyncIterator[str]:
        payload: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True}
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        client = self.client or httpx.AsyncClient(timeout=httpx.Timeout(60.0, read=None))
        try:
            async with client.stream(
                "POST", f"{self.base_url}/chat/completions", json=payload, headers=headers
            ) as response:
                if response.status_code != 200:
                    body = (await response.aread()).decode("utf-8", "replace")[:500]
                    raise UpstreamError(f"upstream answered {response.status_code}: {body}")
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    for choice in json.loads(data).get("choices", []):
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            yield piece
        finally:
            if self.client is None:
                await client.aclose()


class UpstreamError(RuntimeError):
    """The upstream model failed; the route turns it into a 502."""


def provider_from_env() -> Provider:
    """``LLM_UPSTREAM_URL`` (e.g. ``https://api.openai.com/v1``) selects the proxy; else the local model."""
    url = os.environ.get("LLM_UPSTREAM_URL", "")
    if url:
        return UpstreamModel(
            url, os.environ.get("LLM_UPSTREAM_API_KEY", ""), os.environ.get("LLM_UPSTREAM_MODEL", "")
        )
    return LocalModel()


# --- the API -------------------------------------------------------------------------------------


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    model: str = "local"
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = None


def create_app(provider: Provider | None = None) -> FastAPI:
    app = FastAPI(title="sse_llm", docs_url=None, redoc_url=None)
    model = provider or provider_from_env()
    page = (Path(__file__).parent / "page.html").read_text()

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": "local", "object": "model", "created": 0, "owned_by": "local"}],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: ChatRequest) -> StreamingResponse | JSONResponse:
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        messages = [m.model_dump(exclude_none=True) for m in request.messages]
        limit = request.max_completion_tokens or request.max_tokens
        tokens = model.stream(messages, limit)
        if request.stream:
            return StreamingResponse(
                _chunks(tokens, completion_id, created, request.model),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
            )
        try:
            text = "".join([piece async for piece in tokens])
        except UpstreamError as exc:
            raise HTTPException(502, str(exc)) from exc
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": request.model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": _usage(messages, text),
            }
        )

    return app


async def _chunks(
    tokens: AsyncIterator[str], completion_id: str, created: int, model: str
) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            # Not OpenAI's: when this chunk was written (epoch ms), for the page's timeline of the
            # flusher's effect. Clients ignore fields they do not know.
            "x_written_ms": round(time.time() * 1000, 1),
        }
        return f"data: {json.dumps(body, separators=(',', ':'))}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    async for piece in tokens:
        yield chunk({"content": piece})
    yield chunk({}, "stop")
    yield "data: [DONE]\n\n"


def _usage(messages: list[dict[str, Any]], text: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in messages)
    completion = len(text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


app = create_app()
