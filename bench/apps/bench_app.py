"""The raw ASGI app of ``invocation_cost.py``: no framework, lifespan supported, two routes.

* ``/events``: ``text/event-stream``, 4 chunks of 200 bytes (``data: ...`` lines) and the closing empty
  body message, with no pause between them (so a padding flusher is engaged but never pads);
* anything else: 100 bytes of ``text/plain`` with a ``content-length``, in one body message.

``BENCH_MODULES_OUT=FILE``: on the first request, write which package file and which of the cold-path
modules (asyncio, anyio, h11, sniffio, ...) the process has loaded, as JSON (imports done lazily there,
so that the app itself adds nothing to the cold path).
"""

import os
import sys

BODY = (b"Hello from the invocation_cost bench! " * 3)[:99] + b"\n"
CHUNKS = [b"data: " + bytes([97 + i]) * 192 + b"\n\n" for i in range(4)]
assert len(BODY) == 100 and all(len(c) == 200 for c in CHUNKS)

_TEXT_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"100")]
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_report_to = os.environ.get("BENCH_MODULES_OUT")


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "http":
        if _report_to:
            _report_modules()
        if scope["path"] == "/events":
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            for chunk in CHUNKS:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            await send({"type": "http.response.start", "status": 200, "headers": _TEXT_HEADERS})
            await send({"type": "http.response.body", "body": BODY, "more_body": False})
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def _report_modules():
    global _report_to
    path, _report_to = _report_to, None
    import json

    package = sys.modules.get("lambda_asgi_stream")
    watched = ("asyncio", "anyio", "h11", "sniffio", "idna", "ssl", "concurrent", "json", "email", "http")
    loaded = sorted(name for name in watched if name in sys.modules)
    with open(path, "w") as f:
        json.dump(
            {"package": getattr(package, "__file__", None), "loaded": loaded, "modules": len(sys.modules)}, f
        )
