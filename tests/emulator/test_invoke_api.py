"""The emulator speaks Lambda's Invoke API: the real boto3 client against ``serve``, both operations.

Streaming order proofs as in test_streaming: the app writes event n, then waits until the test, having
received event n, creates ``<key>.go<n>``. An emulator that held a chunk back would hang the app, and the
test would fail on its guard timeout.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import boto3
import botocore.config
import botocore.exceptions
import httpx
import pytest

from lambda_asgi_stream.client import (
    IncompleteStreamError,
    InvocationError,
    astream_response,
    invoke_payload,
    invoke_response,
    stream_response,
)
from lambda_asgi_stream.encoder import DELIMITER
from lambda_asgi_stream.events.build import build_event

from .conftest import APP, Factory
from .harness import GUARD_S, Emulator, wait_for_file

STREAM_PATH = "/2021-11-15/functions/local/response-streaming-invocations"
INVOKE_PATH = "/2015-03-31/functions/local/invocations"


def _key() -> str:
    return uuid.uuid4().hex[:12]


def _lambda(emu: Emulator) -> Any:
    config = botocore.config.Config(read_timeout=GUARD_S, retries={"total_max_attempts": 1})
    return boto3.client(
        "lambda",
        endpoint_url=emu.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=config,
    )


def _event(path: str, query: str = "") -> str:
    """The Function URL event for ``GET path?query``, as the caller of the Invoke API builds it."""
    return json.dumps(build_event("function-url", method="GET", path=path, query_string=query))


def _gate(emu: Emulator, key: str, n: int) -> None:
    """The app wrote event n and waits: it cannot have written n + 1. Let it go on."""
    wait_for_file(emu.signals / f"{key}.{n}")
    assert not (emu.signals / f"{key}.{n + 1}").exists()
    (emu.signals / f"{key}.go{n}").touch()


def _payloads(events: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for event in events:
        assert list(event) == ["PayloadChunk"], event
        yield event["PayloadChunk"]["Payload"]


# --- InvokeWithResponseStream -------------------------------------------------------------------------


def test_stream_chunks_arrive_one_by_one_as_written(emu_off: Emulator) -> None:
    key = _key()
    mark = emu_off.mark()
    # The qualifier (any, here) puts the key in the log line.
    response = _lambda(emu_off).invoke_with_response_stream(
        FunctionName="local", Payload=_event("/sse", f"key={key}&n=3"), Qualifier=key
    )
    assert response["StatusCode"] == 200
    assert response["ResponseStreamContentType"] == "application/vnd.amazon.eventstream"
    assert response["ExecutedVersion"] == "$LATEST"
    events = iter(response["EventStream"])
    raw = b""
    while DELIMITER not in raw:  # the prelude, exactly as the runtime wrote it
        raw += next(_payloads(events))
    assert raw.startswith(b'{"statusCode":200,"headers":{"content-type":"text/event-stream"')
    body = raw.split(DELIMITER, 1)[1]
    for n in (1, 2, 3):
        while len(body) < len(f"data: {n}\n\n"):
            body += next(_payloads(events))
        assert body == f"data: {n}\n\n".encode()
        body = b""
        if n < 3:
            _gate(emu_off, key, n)
    assert list(events) == [{"InvokeComplete": {}}]
    line = emu_off.log_line(f"POST {STREAM_PATH}?Qualifier={key}", start=mark)
    assert " 200 " in line
    assert line.endswith("end=complete")


def test_stream_client_helper_yields_each_chunk_before_the_next_is_written(emu_off: Emulator) -> None:
    key = _key()
    response = _lambda(emu_off).invoke_with_response_stream(
        FunctionName="local", Payload=_event("/sse", f"key={key}&n=3")
    )
    seen = []
    with stream_response(response) as r:
        assert r.status == 200
        assert ("content-type", "text/event-stream") in r.headers
        for chunk in r.iter_bytes():
            seen.append(chunk)
            if len(seen) < 3:
                _gate(emu_off, key, len(seen))
    assert seen == [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"]


def test_stream_mid_stream_failure_ends_with_an_error_in_invoke_complete(emu_off: Emulator) -> None:
    key = _key()
    mark = emu_off.mark()
    lam = _lambda(emu_off)
    response = lam.invoke_with_response_stream(
        FunctionName="local", Payload=_event("/crash", f"key={key}"), Qualifier=key
    )
    assert response["StatusCode"] == 200  # a function error is not an API error
    events = list(response["EventStream"])
    assert b"".join(e["PayloadChunk"]["Payload"] for e in events[:-1]).endswith(DELIMITER + b"data: 1\n\n")
    assert events[-1] == {
        "InvokeComplete": {"ErrorCode": "Function.RuntimeError", "ErrorDetails": f"boom {key}"}
    }
    emu_off.wait_for(rf"POST {STREAM_PATH}\?Qualifier={key}: Function\.RuntimeError: boom {key}$", start=mark)
    line = emu_off.log_line(f"POST {STREAM_PATH}?Qualifier={key}", start=mark)
    assert line.endswith("end=error:Function.RuntimeError")

    # The helper hands over what arrived, then raises: the body is never mistaken for a whole one.
    response = lam.invoke_with_response_stream(FunctionName="local", Payload=_event("/crash", f"key={key}"))
    received = []
    with pytest.raises(InvocationError) as caught, stream_response(response) as r:
        for chunk in r:
            received.append(chunk)
    assert received == [b"data: 1\n\n"]
    assert (caught.value.error_code, caught.value.error_details) == ("Function.RuntimeError", f"boom {key}")


def test_stream_failure_before_any_byte(emu_off: Emulator) -> None:
    """A payload that is not an HTTP event: the runtime reports the error before writing anything."""
    lam = _lambda(emu_off)
    response = lam.invoke_with_response_stream(FunctionName="local", Payload=json.dumps({"orders": [1]}))
    [complete] = list(response["EventStream"])
    assert complete["InvokeComplete"]["ErrorCode"] == "Function.UnsupportedEvent"
    assert "orders" in complete["InvokeComplete"]["ErrorDetails"]
    response = lam.invoke_with_response_stream(FunctionName="local", Payload=json.dumps({"orders": [1]}))
    with pytest.raises(InvocationError, match=r"^Function\.UnsupportedEvent: "):
        stream_response(response)  # raised at once: there is no status to give


def test_stream_app_error_before_its_response_is_the_runtimes_500(emu_off: Emulator) -> None:
    key = _key()
    response = _lambda(emu_off).invoke_with_response_stream(
        FunctionName="local", Payload=_event("/crash-early", f"key={key}")
    )
    r = stream_response(response)
    assert r.status == 500
    with pytest.raises(InvocationError, match=rf"Function\.RuntimeError: early boom {key}"):
        r.read()


def test_stream_sandbox_death_mid_stream(emu_off: Emulator) -> None:
    key = _key()
    response = _lambda(emu_off).invoke_with_response_stream(
        FunctionName="local", Payload=_event("/die", f"key={key}&when=after")
    )
    r = stream_response(response)
    chunks = r.iter_bytes()
    assert next(chunks) == b"data: 1\n\n"
    _gate(emu_off, key, 1)
    with pytest.raises(InvocationError) as caught:
        next(chunks)
    # The cut connection or the exit, whichever the emulator notices first, as Lambda would report it.
    assert caught.value.error_code in ("Runtime.TruncatedResponse", "Runtime.ExitError")


def test_stream_log_tail(emu_off: Emulator) -> None:
    key = _key()
    lam = _lambda(emu_off)
    response = lam.invoke_with_response_stream(
        FunctionName="local", Payload=_event("/hello", f"key={key}"), LogType="Tail"
    )
    with stream_response(response) as r:
        assert json.loads(r.read())["query"] == f"key={key}"
        assert r.log_result is not None
        assert f"app: hello {key}\n" in base64.b64decode(r.log_result).decode()
    response = lam.invoke_with_response_stream(FunctionName="local", Payload=_event("/hello", f"key={key}"))
    assert list(response["EventStream"])[-1] == {"InvokeComplete": {}}  # no LogResult unless asked


def test_stream_async_helper_over_raw_http_bytes(emu_off: Emulator) -> None:
    """Any async iterable of event stream bytes: here httpx's, on a plain POST."""
    key = _key()

    async def main() -> None:
        async with httpx.AsyncClient(timeout=GUARD_S) as client:
            url = f"{emu_off.url}{STREAM_PATH}"
            async with client.stream("POST", url, content=_event("/hello", f"key={key}")) as http:
                assert http.headers["content-type"] == "application/vnd.amazon.eventstream"
                r = await astream_response(http.aiter_raw())
                assert r.status == 200
                assert json.loads(await r.aread())["query"] == f"key={key}"
            async with client.stream("POST", url, content=_event("/crash", f"key={key}")) as http:
                r = await astream_response(http.aiter_raw())
                with pytest.raises(InvocationError, match=rf"boom {key}"):
                    await r.aread()
            async with client.stream("POST", url, content=_event("/crash", f"key={key}")) as http:
                r = await astream_response(http.aiter_raw())
                chunks = r.aiter_bytes()
                assert await chunks.__anext__() == b"data: 1\n\n"
            # A stream cut a few bytes into its second message is not complete.
            async with client.stream("POST", url, content=_event("/hello", f"key={key}")) as http:
                raw = b"".join([data async for data in http.aiter_raw()])
            first = int.from_bytes(raw[:4], "big")

            async def cut() -> AsyncIterator[bytes]:
                yield raw[: first + 5]

            with pytest.raises(IncompleteStreamError, match="5 bytes of an unfinished message"):
                await (await astream_response(cut())).aread()

    anyio.run(main)


def test_stream_rejects_event_invocations(emu_off: Emulator) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        _lambda(emu_off).invoke_with_response_stream(
            FunctionName="local", Payload=_event("/hello"), InvocationType="Event"
        )
    assert caught.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


# --- Invoke --------------------------------------------------------------------------------------------


def test_invoke_returns_the_whole_payload(emu_off: Emulator) -> None:
    key = _key()
    response = _lambda(emu_off).invoke(FunctionName="local", Payload=_event("/hello", f"key={key}"))
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    r = invoke_response(response)  # a streaming function: prelude, NULs and body, collected
    assert r.status == 200
    assert r.cookies == ["a=1; Path=/", "b=2; Path=/"]
    assert json.loads(r.body)["query"] == f"key={key}"


def test_invoke_function_error(emu_off: Emulator) -> None:
    key = _key()
    lam = _lambda(emu_off)
    for path, message in (("/crash", f"boom {key}"), ("/crash-early", f"early boom {key}")):
        response = lam.invoke(FunctionName="local", Payload=_event(path, f"key={key}"))
        assert response["StatusCode"] == 200
        assert response["FunctionError"] == "Unhandled"
        error = json.loads(response["Payload"].read())
        assert (error["errorMessage"], error["errorType"]) == (message, "RuntimeError")
        assert error["stackTrace"]
    response = lam.invoke(FunctionName="local", Payload=json.dumps({"orders": [1]}))
    with pytest.raises(InvocationError) as caught:
        invoke_payload(response)
    assert caught.value.error_code == "Unhandled"
    assert isinstance(caught.value.error_object, dict)
    assert caught.value.error_object["errorType"] == "UnsupportedEventError"


def test_invoke_log_tail(emu_off: Emulator) -> None:
    key = _key()
    response = _lambda(emu_off).invoke(
        FunctionName="local", Payload=_event("/hello", f"key={key}"), LogType="Tail"
    )
    assert f"app: hello {key}\n" in base64.b64decode(response["LogResult"]).decode()


def test_invoke_event_is_queued_and_dry_run_is_not_run(emu_off: Emulator) -> None:
    key = _key()
    lam = _lambda(emu_off)
    mark = emu_off.mark()
    dry = lam.invoke(FunctionName="local", Payload=_event("/hello", f"key=dry{key}"), InvocationType="DryRun")
    assert dry["StatusCode"] == 204
    assert "content-length" not in dry["ResponseMetadata"]["HTTPHeaders"]  # RFC 9110 8.6
    queued = lam.invoke(
        FunctionName="local", Payload=_event("/hello", f"key={key}"), InvocationType="Event", Qualifier=key
    )
    assert queued["StatusCode"] == 202
    assert queued["Payload"].read() == b""
    emu_off.wait_for(rf"app: hello {key}$", start=mark)  # it ran, after the answer
    emu_off.wait_for(rf"EVENT {INVOKE_PATH}\?Qualifier={key} 200 .* end=complete$", start=mark)
    assert f"app: hello dry{key}" not in emu_off.since(mark)


def test_invoke_rejects_a_payload_that_is_not_json(emu_off: Emulator) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        _lambda(emu_off).invoke(FunctionName="local", Payload=b"{not json")
    assert caught.value.response["Error"]["Code"] == "InvalidRequestContentException"


# --- timeouts ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emu_1s(start_emulator: Factory) -> Emulator:
    return start_emulator(
        APP, "--timeout", "1", "--buffering", "off", env={"LAMBDA_ASGI_STREAM_PADDING": "none"}
    )


def test_stream_timeout_is_reported_in_invoke_complete(emu_1s: Emulator) -> None:
    response = _lambda(emu_1s).invoke_with_response_stream(
        FunctionName="local", Payload=_event("/block", "stream=1&seconds=60")
    )
    r = stream_response(response)
    with pytest.raises(InvocationError) as caught:
        r.read()
    assert caught.value.error_code == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in caught.value.error_details


def test_invoke_of_a_streamed_response_over_6_mb_fails_like_lambda(emu_off: Emulator) -> None:
    lam = _lambda(emu_off)
    response = lam.invoke(FunctionName="local", Payload=_event("/download", "size=7000000"))
    assert response["FunctionError"] == "Unhandled"
    error = json.loads(response["Payload"].read())
    assert error["errorType"] == "Function.ResponseSizeTooLarge"
    # The function ran to its end meanwhile; the sandbox serves the next call.
    assert invoke_response(lam.invoke(FunctionName="local", Payload=_event("/hello"))).status == 200


# --- a function in BUFFERED invoke mode -------------------------------------------------------------------


@pytest.fixture(scope="module")
def emu_buffered(start_emulator: Factory) -> Emulator:
    return start_emulator(APP, "--invoke-mode", "BUFFERED")


def test_buffered_function_through_both_operations(emu_buffered: Emulator) -> None:
    key = _key()
    lam = _lambda(emu_buffered)
    r = invoke_response(lam.invoke(FunctionName="local", Payload=_event("/hello", f"key={key}")))
    assert (r.status, r.cookies) == (200, ["a=1; Path=/", "b=2; Path=/"])
    assert json.loads(r.body)["query"] == f"key={key}"
    # InvokeWithResponseStream of a function that does not stream: its JSON document, in one chunk.
    response = lam.invoke_with_response_stream(FunctionName="local", Payload=_event("/hello", f"key={key}"))
    [chunk, complete] = list(response["EventStream"])
    assert complete == {"InvokeComplete": {}}
    document = json.loads(chunk["PayloadChunk"]["Payload"])
    assert document["statusCode"] == 200
    assert json.loads(document["body"])["query"] == f"key={key}"
