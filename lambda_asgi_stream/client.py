"""Read an invocation of a lambda-asgi-stream function the way AWS returns it, and never misread a failure.

``InvokeWithResponseStream`` hands a Python caller ``response["EventStream"]``: ``PayloadChunk`` events
holding the raw bytes the function wrote (for an HTTP app: the JSON prelude, 8 NUL bytes, then the body),
and one last ``InvokeComplete`` event, which alone says whether the function failed (AWS Lambda API
reference, "InvokeWithResponseStream"; the HTTP status of the call is 200 either way). Reading only the
chunks makes a failed or cut stream look finished. :func:`stream_response` reads it properly: status,
headers and cookies from the prelude, the body as it arrives, and at the end :class:`InvocationError`
(``error_code``, ``error_details``) when ``InvokeComplete`` reports a failure, or
:class:`IncompleteStreamError` when the stream ends without ``InvokeComplete`` at all.

With boto3::

    import json
    import boto3
    from lambda_asgi_stream.client import InvocationError, stream_response

    lam = boto3.client("lambda")
    event = {"version": "2.0", "rawPath": "/chat", ...}  # the Function URL event the app expects
    response = lam.invoke_with_response_stream(FunctionName="my-function", Payload=json.dumps(event))
    with stream_response(response) as r:  # reads up to the end of the prelude
        print(r.status, r.headers, r.cookies)
        try:
            for chunk in r.iter_bytes():  # each chunk as it arrives
                print(chunk)
        except InvocationError as exc:  # after the last chunk: the body above is incomplete
            print("failed:", exc.error_code, exc.error_details)

The source may be boto3's response (or its ``EventStream``), or any iterable of raw
``application/vnd.amazon.eventstream`` bytes; :func:`astream_response` takes aiobotocore's response, its
``EventStream``, or an async iterable of bytes::

    async with session.create_client("lambda") as lam:  # aiobotocore
        response = await lam.invoke_with_response_stream(FunctionName="my-function", Payload=payload)
        async with await astream_response(response) as r:
            async for chunk in r:
                ...

:func:`invoke_payload` and :func:`invoke_response` read a buffered ``Invoke`` the same way
(``X-Amz-Function-Error`` becomes :class:`InvocationError`).

``stream_response(response, end_record=True)`` (and :func:`astream_response`) also checks the body's
end record (:mod:`lambda_asgi_stream.end_record`): the body is given without it, and
:class:`EndRecordError` is raised at the end when it is missing or does not match, as for a plain HTTP
response read with ``end_record.iter_verified``.

Errors from the transport (a dropped connection in urllib3 or aiohttp) propagate as they are.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ._errors import EndRecordError, IncompleteStreamError, InvocationError, LambdaAsgiStreamError
from .encoder import Prelude, PreludeDecoder, decode_buffered_response, decode_stream
from .end_record import EndRecordReader, format_of
from .eventstream import INVOKE_COMPLETE, PAYLOAD_CHUNK, Message, MessageDecoder

__all__ = [
    "AsyncStreamedResponse",
    "EndRecordError",
    "IncompleteStreamError",
    "InvocationError",
    "Response",
    "StreamedResponse",
    "astream_response",
    "invoke_payload",
    "invoke_response",
    "stream_response",
]


class _Reader:
    """Sans-IO core shared by the sync and async readers: stream items in, body bytes out.

    An item is an event as boto3/aiobotocore parse it (``{"PayloadChunk": {"Payload": b"..."}}``) or raw
    event stream bytes.
    """

    def __init__(self) -> None:
        self._messages: MessageDecoder | None = None
        self._prelude = PreludeDecoder()
        self.complete: dict[str, Any] | None = None

    @property
    def prelude(self) -> Prelude | None:
        return self._prelude.prelude

    def take(self, item: object) -> bytes:
        """The body bytes ``item`` holds (maybe none); raises when it reports a failure."""
        raw = b"".join(self._payloads(item))
        return self._prelude.feed(raw) if raw else b""

    def end(self) -> None:
        """The source is exhausted: raise unless ``InvokeComplete`` arrived and reported success."""
        if self.complete is None:
            held = self._messages.pending if self._messages is not None else 0
            cut = f" ({held} bytes of an unfinished message)" if held else ""
            raise IncompleteStreamError(
                f"the response stream ended without its InvokeComplete event{cut}: the function's "
                "response may be incomplete"
            )
        if self.prelude is None:
            raise LambdaAsgiStreamError(
                "the stream ended before the prelude delimiter (8 NUL bytes): not an HTTP response"
            )

    def _payloads(self, item: object) -> Iterator[bytes]:
        if self.complete is not None:
            raise LambdaAsgiStreamError(f"data after the InvokeComplete event: {item!r:.100}")
        if isinstance(item, Mapping):
            yield from self._event(item)
        elif isinstance(item, bytes | bytearray | memoryview):
            if self._messages is None:
                self._messages = MessageDecoder()
            for message in self._messages.feed(bytes(item)):
                yield from self._message(message)
        else:
            raise TypeError(f"expected an event dict or bytes from the stream, got {type(item).__name__}")

    def _event(self, event: Mapping[str, Any]) -> Iterator[bytes]:
        if PAYLOAD_CHUNK in event:
            yield bytes(event[PAYLOAD_CHUNK].get("Payload", b""))
        elif INVOKE_COMPLETE in event:
            self._complete(dict(event[INVOKE_COMPLETE]))
        # Any other key is an event type this model does not know: skipped, as botocore would leave it.

    def _message(self, message: Message) -> Iterator[bytes]:
        kind = message.header(":message-type")
        if kind == "event":
            event_type = message.header(":event-type")
            if event_type == PAYLOAD_CHUNK:
                yield message.payload
            elif event_type == INVOKE_COMPLETE:
                self._complete(_json_object(message.payload))
        elif kind == "exception":  # a modeled error event (Amazon Event Stream spec, "Modeled Error Events")
            details = _json_object(message.payload).get("message") or message.payload.decode(
                "utf-8", "replace"
            )
            raise InvocationError(message.header(":exception-type") or "exception", str(details))
        elif kind == "error":  # an unmodeled error event
            raise InvocationError(
                message.header(":error-code") or "error", message.header(":error-message") or ""
            )

    def _complete(self, fields: dict[str, Any]) -> None:
        self.complete = fields
        if fields.get("ErrorCode"):
            raise InvocationError(
                str(fields["ErrorCode"]),
                str(fields.get("ErrorDetails") or ""),
                log_result=fields.get("LogResult") or None,
            )


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload) if payload else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _event_stream(source: Any) -> Any:
    """boto3's whole response, or what is already its ``EventStream`` (or raw bytes)."""
    if isinstance(source, Mapping) and "EventStream" in source:
        return source["EventStream"]
    return source


class _Head:
    """Status, headers and cookies, once the prelude is read."""

    def __init__(self, reader: _Reader, first: bytes, stream: Any, end_record: bool = False) -> None:
        self._reader = reader
        self._first = first  # body bytes that came with the end of the prelude
        self._stream = stream
        self._check: EndRecordReader | None = None
        if end_record:
            found = dict(self.headers)
            fmt = format_of(found.get("content-type", ""), found.get("content-encoding", ""))
            if fmt is None:
                raise EndRecordError("missing", f"a {found.get('content-type')!r} body carries no end record")
            self._check = EndRecordReader(fmt)

    def _take_first(self) -> bytes:
        first, self._first = self._first, b""
        return self._checked(first)

    def _checked(self, data: bytes) -> bytes:
        return data if self._check is None or not data else self._check.feed(data)

    def _rest(self) -> bytes:
        """After a successful end: the body's last bytes, once its end record is verified."""
        return b"" if self._check is None else self._check.finish()

    @property
    def status(self) -> int:
        """The HTTP status the app sent."""
        return self._prelude.status

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Response headers (lower-case names), ``Set-Cookie`` excepted: see :attr:`cookies`."""
        return self._prelude.headers

    @property
    def cookies(self) -> list[str]:
        """Each ``Set-Cookie`` value."""
        return self._prelude.cookies

    @property
    def log_result(self) -> str | None:
        """``InvokeComplete``'s ``LogResult`` (base64 log tail with ``LogType="Tail"``), at the end."""
        complete = self._reader.complete
        if complete is None:
            return None
        return complete.get("LogResult") or None

    @property
    def _prelude(self) -> Prelude:
        prelude = self._reader.prelude
        assert prelude is not None  # the constructors read up to it
        return prelude


class StreamedResponse(_Head):
    """A streamed invocation whose prelude has been read; iterate it for the body."""

    def __init__(
        self, reader: _Reader, first: bytes, items: Iterator[Any], stream: Any, end_record: bool = False
    ) -> None:
        super().__init__(reader, first, stream, end_record)
        self._items = items

    def iter_bytes(self) -> Iterator[bytes]:
        """The body as it arrives; raises :class:`InvocationError` at the end if the function failed
        (and :class:`EndRecordError` if the end record was asked for and is missing or wrong)."""
        first = self._take_first()
        if first:
            yield first
        for item in self._items:
            data = self._checked(self._reader.take(item))
            if data:
                yield data
        self._reader.end()
        rest = self._rest()
        if rest:
            yield rest

    __iter__ = iter_bytes

    def read(self) -> bytes:
        """The whole (rest of the) body; raises like :meth:`iter_bytes`."""
        return b"".join(self.iter_bytes())

    def close(self) -> None:
        """Close the underlying stream (boto3's ``EventStream.close``), if it can be closed."""
        close = getattr(self._stream, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> StreamedResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stream_response(source: Any, *, end_record: bool = False) -> StreamedResponse:
    """Read a streamed invocation up to the end of its prelude.

    ``source``: boto3's ``invoke_with_response_stream`` response, its ``EventStream``, or an iterable of
    raw event stream bytes. Raises :class:`InvocationError` when the function failed before its prelude,
    :class:`IncompleteStreamError` when the stream ended first. ``end_record=True``: the body must end
    with an end record (see the module docstring).
    """
    stream = _event_stream(source)
    reader = _Reader()
    items = iter(stream)
    for item in items:
        first = reader.take(item)
        if reader.prelude is not None:
            return StreamedResponse(reader, first, items, stream, end_record)
    reader.end()
    raise AssertionError("unreachable: end() raises without a prelude")  # pragma: no cover


class AsyncStreamedResponse(_Head):
    """The async twin of :class:`StreamedResponse` (for aiobotocore, or any async iterable of bytes)."""

    def __init__(
        self,
        reader: _Reader,
        first: bytes,
        items: AsyncIterator[Any],
        stream: Any,
        end_record: bool = False,
    ) -> None:
        super().__init__(reader, first, stream, end_record)
        self._items = items

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises like :meth:`StreamedResponse.iter_bytes`."""
        first = self._take_first()
        if first:
            yield first
        async for item in self._items:
            data = self._checked(self._reader.take(item))
            if data:
                yield data
        self._reader.end()
        rest = self._rest()
        if rest:
            yield rest

    __aiter__ = aiter_bytes

    async def aread(self) -> bytes:
        """The whole (rest of the) body; raises like :meth:`aiter_bytes`."""
        return b"".join([chunk async for chunk in self.aiter_bytes()])

    async def aclose(self) -> None:
        """Close the underlying stream, if it can be closed (sync or async ``close``)."""
        close = getattr(self._stream, "close", None)
        if callable(close):
            result = close()
            if inspect.isawaitable(result):
                await result

    async def __aenter__(self) -> AsyncStreamedResponse:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


async def astream_response(source: Any, *, end_record: bool = False) -> AsyncStreamedResponse:
    """:func:`stream_response` for async sources (aiobotocore's response or ``EventStream``)."""
    stream = _event_stream(source)
    if not isinstance(stream, AsyncIterable):
        raise TypeError(f"expected an async iterable, got {type(stream).__name__} (use stream_response)")
    reader = _Reader()
    items = aiter(stream)
    async for item in items:
        first = reader.take(item)
        if reader.prelude is not None:
            return AsyncStreamedResponse(reader, first, items, stream, end_record)
    reader.end()
    raise AssertionError("unreachable: end() raises without a prelude")  # pragma: no cover


# --- buffered Invoke ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Response:
    """The HTTP response a buffered invocation's payload describes."""

    status: int
    headers: list[tuple[str, str]]
    cookies: list[str]
    body: bytes


def invoke_payload(response: Mapping[str, Any]) -> Any:
    """The decoded JSON a function returned through boto3's ``invoke`` (None when there is none).

    Raises :class:`InvocationError` when ``X-Amz-Function-Error`` is set (boto3's ``FunctionError``):
    ``error_code`` is its value (``Unhandled``), ``error_details`` the error object's message and
    ``error_object`` the whole object. A payload that is not JSON (a streamed response collected whole)
    raises :class:`LambdaAsgiStreamError`: read it with :func:`invoke_response`.

    ``Payload`` may be botocore's ``StreamingBody`` or bytes; with aiobotocore, pass
    ``{**response, "Payload": await response["Payload"].read()}``.
    """
    raw = _payload_bytes(response)
    try:
        return _decoded_payload(response, raw)
    except _NotJSON:
        raise LambdaAsgiStreamError(
            f"the invocation's payload is not JSON: {raw[:100]!r} (an HTTP response? see invoke_response)"
        ) from None


def invoke_response(response: Mapping[str, Any]) -> Response:
    """The HTTP response a boto3 ``invoke`` of an HTTP app returned.

    Reads both shapes a function can answer ``Invoke`` with: a buffered response dict (invoke mode
    ``BUFFERED``), or a streamed response collected whole (prelude, 8 NULs, body). Raises like
    :func:`invoke_payload`.
    """
    raw = _payload_bytes(response)
    try:
        payload = _decoded_payload(response, raw)
    except _NotJSON:
        prelude, body = decode_stream(raw)
        return Response(prelude.status, prelude.headers, prelude.cookies, body)
    status, pairs, body = decode_buffered_response(payload)
    headers = [(k, v) for k, v in pairs if k != "set-cookie"]
    return Response(status, headers, [v for k, v in pairs if k == "set-cookie"], body)


class _NotJSON(Exception):
    pass


def _payload_bytes(response: Mapping[str, Any]) -> bytes:
    payload = response.get("Payload", b"")
    if hasattr(payload, "read"):  # botocore's StreamingBody
        payload = payload.read()
    if not isinstance(payload, bytes | bytearray):
        raise TypeError(f"expected the Payload as bytes or a readable body, got {type(payload).__name__}")
    return bytes(payload)


def _decoded_payload(response: Mapping[str, Any], raw: bytes) -> Any:
    function_error = response.get("FunctionError")
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        if function_error:
            raise InvocationError(
                str(function_error), raw.decode("utf-8", "replace"), log_result=response.get("LogResult")
            ) from None
        raise _NotJSON from None
    if function_error:
        details = payload.get("errorMessage", "") if isinstance(payload, dict) else payload
        raise InvocationError(
            str(function_error), str(details), log_result=response.get("LogResult"), error_object=payload
        )
    return payload
