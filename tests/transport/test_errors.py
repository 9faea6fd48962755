"""Failures reach the test as they reach a Lambda client; a cut body is never taken for a whole one."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from lambda_asgi_stream import DeadlineExceeded, StreamTruncatedError
from lambda_asgi_stream.testing import LambdaInfo, LambdaTransport

from .apps import Probe, fail_before_start, fastapi_app, slow_before_start
from .conftest import BASE_URL, LIMIT, in_thread

pytestmark = pytest.mark.anyio


def _client(transport: LambdaTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL)


@pytest.mark.parametrize("buffering", ["off", "lambda"])
@pytest.mark.parametrize("integration", ["function-url", "rest"])
async def test_error_mid_stream_raises_when_the_body_is_read(integration: Any, buffering: str) -> None:
    transport = LambdaTransport(fastapi_app(Probe()), integration=integration, buffering=buffering)
    async with _client(transport) as client:
        with anyio.fail_after(LIMIT), pytest.raises(StreamTruncatedError) as caught:
            await client.get("/fail-mid-stream")
    error = caught.value
    assert error.remote_error_type == "Function.RuntimeError"
    assert error.remote_error == "boom mid-stream"
    assert isinstance(error.__cause__, RuntimeError) and str(error.__cause__) == "boom mid-stream"


async def test_error_mid_stream_comes_after_the_chunks_that_were_sent() -> None:
    received: list[bytes] = []
    async with _client(LambdaTransport(fastapi_app(Probe()))) as client:
        with anyio.fail_after(LIMIT):
            async with client.stream("GET", "/fail-mid-stream") as response:
                assert response.status_code == 200  # the status was on its way before the failure
                with pytest.raises(StreamTruncatedError):
                    async for chunk in response.aiter_raw():
                        received.append(chunk)
    assert received == [b"partial ", b"body"]
    info: LambdaInfo = response.extensions["lambda"]
    assert info.error is not None and info.error[0] == "Function.RuntimeError"
    assert info.error[1]["errorMessage"] == "boom mid-stream"
    assert info.result is not None and info.result.end == "error"


async def test_error_mid_stream_with_the_sync_client() -> None:
    def body() -> tuple[list[bytes], StreamTruncatedError]:
        received: list[bytes] = []
        with httpx.Client(transport=LambdaTransport(fastapi_app(Probe())), base_url=BASE_URL) as client:
            with pytest.raises(StreamTruncatedError):
                client.get("/fail-mid-stream")
            with (
                client.stream("GET", "/fail-mid-stream") as response,
                pytest.raises(StreamTruncatedError) as e,
            ):
                for chunk in response.iter_raw():
                    received.append(chunk)
            assert client.get("/json").status_code == 200  # the client is still usable
        return received, e.value

    received, error = await in_thread(body)
    assert received == [b"partial ", b"body"]
    assert isinstance(error.__cause__, RuntimeError)


async def test_app_failing_before_start_gets_the_runtimes_500() -> None:
    for integration in ("function-url", "rest"):
        async with _client(LambdaTransport(fail_before_start, integration=integration)) as client:
            with anyio.fail_after(LIMIT):
                response = await client.get("/anything")
        assert response.status_code == 500
        assert response.text == "Internal Server Error"
        info: LambdaInfo = response.extensions["lambda"]
        assert info.error is not None and info.error[0] == "Function.ValueError"  # Lambda sees a failure
        assert isinstance(info.exception, ValueError) and str(info.exception) == "boom before start"


async def test_buffered_app_failing_before_start_gets_500() -> None:
    transport = LambdaTransport(fail_before_start, invoke_mode="BUFFERED")
    async with _client(transport) as client:
        with anyio.fail_after(LIMIT):
            response = await client.get("/anything")
    assert response.status_code == 500 and response.text == "Internal Server Error"
    info: LambdaInfo = response.extensions["lambda"]
    assert info.buffered is not None and info.buffered["statusCode"] == 500
    assert info.error is not None and info.error[0] == "Function.ValueError"
    assert isinstance(info.exception, ValueError)


async def test_fastapi_endpoint_error_is_starlettes_500() -> None:
    # Starlette answers 500 itself and re-raises: the response is complete, the error is a late one.
    async with _client(LambdaTransport(fastapi_app(Probe()))) as client:
        with anyio.fail_after(LIMIT):
            response = await client.get("/fail-in-endpoint")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    info: LambdaInfo = response.extensions["lambda"]
    assert info.result is not None and isinstance(info.result.late_error, ValueError)


async def test_buffered_error_mid_stream_is_a_whole_500_never_half_a_body() -> None:
    transport = LambdaTransport(fastapi_app(Probe()), invoke_mode="BUFFERED")
    async with _client(transport) as client:
        with anyio.fail_after(LIMIT):
            response = await client.get("/fail-mid-stream")
    assert response.status_code == 500
    assert b"partial" not in response.content
    info: LambdaInfo = response.extensions["lambda"]
    assert isinstance(info.exception, RuntimeError)
    assert info.buffered is not None and info.buffered["statusCode"] == 500


async def test_timeout_before_start_is_a_504() -> None:
    async with _client(LambdaTransport(slow_before_start, timeout=0.05)) as client:
        with anyio.fail_after(LIMIT):
            response = await client.get("/")
    assert response.status_code == 504
    assert response.text == "Gateway Timeout"
    info: LambdaInfo = response.extensions["lambda"]
    assert info.error is not None and info.error[0] == "Function.Timeout"
    assert isinstance(info.exception, DeadlineExceeded)


async def test_timeout_mid_stream_truncates() -> None:
    received: list[bytes] = []
    async with _client(LambdaTransport(fastapi_app(Probe()), timeout=0.05)) as client:
        with anyio.fail_after(LIMIT):
            async with client.stream("GET", "/slow-stream") as response:
                with pytest.raises(StreamTruncatedError) as caught:
                    async for chunk in response.aiter_raw():
                        received.append(chunk)
    assert received == [b"before the deadline"]
    assert caught.value.remote_error_type == "Function.Timeout"
    assert isinstance(caught.value.__cause__, DeadlineExceeded)


async def test_prelude_too_large_is_a_500() -> None:
    async with _client(LambdaTransport(fastapi_app(Probe()))) as client:
        with anyio.fail_after(LIMIT):
            response = await client.get("/huge-header")
    assert response.status_code == 500
    info: LambdaInfo = response.extensions["lambda"]
    assert info.error is not None and info.error[0] == "Function.PreludeTooLarge"


async def test_a_response_that_never_finishes_is_truncated() -> None:
    async def unfinished(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})

    async with _client(LambdaTransport(unfinished)) as client:
        with anyio.fail_after(LIMIT), pytest.raises(StreamTruncatedError) as caught:
            await client.get("/")
    assert caught.value.remote_error_type == "Function.ASGIProtocolError"
