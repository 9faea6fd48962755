"""Lifespan runs once per client (as once per execution environment), and its state reaches requests."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from lambda_asgi_stream import StartupError
from lambda_asgi_stream.testing import LambdaTransport

from .apps import Probe, fastapi_app
from .conftest import BASE_URL, LIMIT, in_thread

pytestmark = pytest.mark.anyio


async def _failing_startup(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})


async def test_async_client_runs_lifespan_once_and_shares_its_state() -> None:
    probe = Probe()
    async with httpx.AsyncClient(transport=LambdaTransport(fastapi_app(probe)), base_url=BASE_URL) as client:
        with anyio.fail_after(LIMIT):
            assert probe.startups == 1
            first = await client.get("/state")
            second = await client.get("/state")
            assert probe.shutdowns == 0
    assert first.json() == second.json() == {"db": "connected", "startups": 1}
    assert (probe.startups, probe.shutdowns) == (1, 1)


async def test_sync_client_runs_lifespan_once_and_shares_its_state() -> None:
    probe = Probe(sync=True)

    def body() -> list[Any]:
        with httpx.Client(transport=LambdaTransport(fastapi_app(probe)), base_url=BASE_URL) as client:
            assert probe.startups == 1
            return [client.get("/state").json() for _ in range(2)]

    assert await in_thread(body) == [{"db": "connected", "startups": 1}] * 2
    assert (probe.startups, probe.shutdowns) == (1, 1)


async def test_without_a_with_block_lifespan_does_not_run() -> None:
    probe = Probe()
    client = httpx.AsyncClient(transport=LambdaTransport(fastapi_app(probe)), base_url=BASE_URL)
    with anyio.fail_after(LIMIT):
        response = await client.get("/json")
        await client.aclose()
    assert response.status_code == 200
    assert probe.startups == 0


async def test_lifespan_off() -> None:
    probe = Probe()
    transport = LambdaTransport(fastapi_app(probe), lifespan="off")
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        with anyio.fail_after(LIMIT):
            assert (await client.get("/json")).status_code == 200
    assert probe.startups == 0


async def test_startup_failure_raises_startup_error() -> None:
    with anyio.fail_after(LIMIT), pytest.raises(StartupError, match="no database"):
        async with httpx.AsyncClient(transport=LambdaTransport(_failing_startup), base_url=BASE_URL):
            pass


async def test_startup_failure_raises_startup_error_in_sync_client() -> None:
    def body() -> None:
        with httpx.Client(transport=LambdaTransport(_failing_startup), base_url=BASE_URL):
            pass

    with pytest.raises(StartupError, match="no database"):
        await in_thread(body)


async def test_context_and_deadline_reach_the_app() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        context = scope["aws.context"]
        from lambda_asgi_stream.runtime import current_context

        body = f"{context.get_remaining_time_in_millis()} {current_context.get() is context}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async with httpx.AsyncClient(transport=LambdaTransport(app, timeout=30), base_url=BASE_URL) as client:
        with anyio.fail_after(LIMIT):
            remaining, same = (await client.get("/")).text.split()
    assert 0 < int(remaining) <= 30_000
    assert same == "True"
