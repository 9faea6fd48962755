"""``invoke``: one event through the whole streaming path on this machine, printed as it arrives.

The app runs in this process under the real runtime loop (:class:`~lambda_asgi_stream.runtime.LambdaRuntime`)
against a loopback Runtime API (:class:`.local_api.LocalRuntimeAPI`); each chunk of the response is printed
with the time it arrived, so a user sees whether their writes stream or bunch up. The event is either a
file (``--event``; ``event-template.json`` beside this module is a Function URL one to start from) or built
here from a request (``invoke APP GET /path -H 'name: value' -d body``) by ``events.build``, as the
emulator builds it for each HTTP request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

import anyio

from .._errors import LambdaAsgiStreamError
from .._http import is_token
from .._types import Integration
from ..encoder import PreludeDecoder
from ..events.build import build_event
from ..padding import padding_alphabet
from .local_api import BufferedResult, InvocationFailed, LocalRuntimeAPI, StreamData, StreamEnd
from .options import error_text

#: A Function URL event (payload 2.0) to copy and edit for ``invoke --event``.
EVENT_TEMPLATE = Path(__file__).with_name("event-template.json")


def request_event(
    integration: Integration,
    method: str,
    target: str,
    header_lines: list[str],
    body: bytes = b"",
) -> bytes:
    """The event (JSON) the integration would deliver for ``METHOD target``, as a client sent it.

    ``target`` is the path and query as on the wire (percent-encoded); ``header_lines`` are ``Name: value``
    as curl's ``-H`` takes them. Raises ``ValueError`` for a request no client could send.
    """
    if not is_token(method.encode("latin-1", "replace")):
        raise ValueError(f"{method!r} is not an HTTP method")
    if not target.startswith("/"):
        raise ValueError(f"the path must start with '/', not {target!r}")
    headers = [_header(line) for line in header_lines]
    path, _, query = target.partition("?")
    event = build_event(
        integration, method=method.upper(), path=path, query_string=query, headers=headers, body=body
    )
    return json.dumps(event).encode("utf-8")


def _header(line: str) -> tuple[str, str]:
    name, colon, value = line.partition(":")
    if not colon or not is_token(name.strip().encode("latin-1", "replace")):
        raise ValueError(f"a header is 'Name: value', not {line!r}")
    return name.strip(), value.strip()


async def invoke(
    run_runtime: Callable[[str], Awaitable[None]], event: bytes, function_timeout_s: float, out: TextIO
) -> int:
    """Invoke once, printing what comes back; 0 when the invocation succeeded.

    ``run_runtime(address)`` runs the runtime loop against the Runtime API at ``address`` (the caller
    builds it: a shell does not import another shell); it may fail with :class:`LambdaAsgiStreamError`.
    """
    api = LocalRuntimeAPI()
    status = 1
    failure: list[BaseException] = []

    async def runtime(address: str, cancel: anyio.CancelScope) -> None:
        try:
            await run_runtime(address)
        except LambdaAsgiStreamError as exc:
            failure.append(exc)
            cancel.cancel()

    async with anyio.create_task_group() as group:
        address = await group.start(api.serve, "127.0.0.1", 0)
        group.start_soon(runtime, address, group.cancel_scope)
        started = time.perf_counter()
        decoder = PreludeDecoder()
        chunks = 0
        size = 0

        def stamp() -> str:
            return f"+{(time.perf_counter() - started) * 1000:8.1f} ms"

        async for item in api.invoke(event, timeout_s=function_timeout_s):
            if isinstance(item, StreamData):
                had_prelude = decoder.prelude is not None
                body = decoder.feed(item.data)
                if not had_prelude and decoder.prelude is not None:
                    p = decoder.prelude
                    print(f"{stamp()}  status {p.status}", file=out)
                    for name, value in p.headers:
                        print(f"{'':13}  header {name}: {value}", file=out)
                    for cookie in p.cookies:
                        print(f"{'':13}  cookie {cookie}", file=out)
                if body:
                    chunks += 1
                    size += len(body)
                    print(f"{stamp()}  {_describe(chunks, body, decoder.prelude)}", file=out)
            elif isinstance(item, StreamEnd):
                if item.error is None:
                    print(f"{stamp()}  end: complete ({chunks} chunks, {size} bytes)", file=out)
                    status = 0
                else:
                    print(
                        f"{stamp()}  end: ERROR {item.error[0]}: {error_text(item.error[1])}",
                        file=out,
                    )
            elif isinstance(item, BufferedResult):
                print(json.dumps(item.payload, indent=2), file=out)
                status = 0
            elif isinstance(item, InvocationFailed):
                print(
                    f"{stamp()}  invocation error {item.error_type}: {error_text(item.payload)}",
                    file=out,
                )
            out.flush()
        group.cancel_scope.cancel()
    for exc in failure:
        print(f"init error: {exc}", file=out)
    return status


def _describe(number: int, body: bytes, prelude: Any, limit: int = 120) -> str:
    headers = dict(prelude.headers) if prelude is not None else {}
    alphabet = padding_alphabet(headers.get("content-type", ""), headers.get("content-encoding", ""))
    if alphabet is not None and not body.translate(None, alphabet):
        return f"chunk {number} ({len(body)} bytes): padding (the flusher pushing earlier writes out)"
    text = repr(body[:limit]) + (" ..." if len(body) > limit else "")
    return f"chunk {number} ({len(body)} bytes): {text}"
