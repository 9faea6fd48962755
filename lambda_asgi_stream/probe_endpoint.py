"""The deployed side of ``lambda-asgi-stream probe``: answer probe requests, pass everything else on.

:func:`wrap` returns the app itself unless ``LAMBDA_ASGI_STREAM_PROBE_TOKEN`` is set, so a function
without the token pays nothing. With it, an HTTP request whose ``x-lambda-asgi-stream-probe`` header holds
that token (compared in constant time) is answered here with the writes its plan asks for
(:mod:`probe_protocol`); every other request, a wrong token included, goes to the app unchanged, so a
stranger cannot even tell that probing is enabled.

The answer is ``application/octet-stream`` with ``x-lambda-padding: none``: the padding flusher leaves it
alone, so the writes reach Lambda exactly as planned.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

from ._errors import ProbeError
from ._types import ASGIApp, Receive, Scope, Send
from .padding import PADDING_HEADER
from .probe_protocol import ENV_PROBE_TOKEN, PLAN_HEADER, PROBE_HEADER, Step, parse_plan, token_matches

_PROBE = PROBE_HEADER.encode()
_PLAN = PLAN_HEADER.encode()
_FILL = b"." * 65536


def wrap(app: ASGIApp, environ: Mapping[str, str] | None = None) -> ASGIApp:
    """``app``, answering probe requests first when the probe token is configured."""
    token = (os.environ if environ is None else environ).get(ENV_PROBE_TOKEN, "")
    if not token:
        return app
    return ProbeEndpoint(app, token)


class ProbeEndpoint:
    """ASGI middleware: probe requests carrying the token are answered here, the rest go to ``app``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http":
            given = plan = None
            for name, value in scope.get("headers", ()):
                if name == _PROBE:
                    given = value
                elif name == _PLAN:
                    plan = value
            if given is not None and token_matches(self.token, given):
                await _answer(send, (plan or b"").decode("latin-1"))
                return
        await self.app(scope, receive, send)


async def _answer(send: Send, plan_text: str) -> None:
    try:
        plan = parse_plan(plan_text)
    except ProbeError as exc:
        body = f"{exc}\n".encode()
        await send({"type": "http.response.start", "status": 400, "headers": _headers(b"text/plain")})
        await send({"type": "http.response.body", "body": body})
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": _headers(b"application/octet-stream")}
    )
    for step in plan:
        await _write(send, step)
    await send({"type": "http.response.body", "body": b""})


async def _write(send: Send, step: Step) -> None:
    # One write of `size` bytes: the service sees them pending together, as the hold-back counts them.
    if step.size:
        body = _FILL[: step.size] if step.size <= len(_FILL) else b"." * step.size
        await send({"type": "http.response.body", "body": body, "more_body": True})
    if step.pause:
        await asyncio.sleep(step.pause)


def _headers(content_type: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", content_type),
        (b"cache-control", b"no-store"),
        (PADDING_HEADER.encode(), b"none"),
        (_PROBE, b"1"),
    ]
