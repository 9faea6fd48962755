"""Server-side rendering that flushes early, from Lambda.

    lambda-asgi-stream serve examples.fastapi_ssr.app:app      # then open http://127.0.0.1:9000/

``GET /`` renders a Jinja2 template with ``generate_async``: the ``<head>`` and page shell leave at once,
and each section follows as soon as its (simulated, slow) data call returns, so the browser can fetch CSS
and paint the top of the page while the server is still working. ``GET /progress`` streams a progress
bar for a long task. Delays come from ``SSR_DELAY_MS`` (default 400 per section).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

SECTIONS = ["orders", "recommendations", "activity"]
DATA = {
    "orders": ["#1041 shipped", "#1042 packed", "#1043 awaiting payment"],
    "recommendations": ["Trail shoes", "Rain jacket", "Water bottle"],
    "activity": ["Signed in from a new device", "Changed delivery address"],
}

env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(),
    enable_async=True,
)


def _delay() -> float:
    return float(os.environ.get("SSR_DELAY_MS", 400)) / 1000


async def load(name: str) -> list[str]:
    """A slow data call (a database, another service)."""
    await anyio.sleep(_delay())
    return DATA[name]


async def work_step(index: int) -> None:
    """One slice of the long task."""
    await anyio.sleep(_delay() / 2)


app = FastAPI(docs_url=None, redoc_url=None)


@app.get("/")
async def page() -> StreamingResponse:
    started = time.perf_counter()
    template = env.get_template("page.html")
    body = template.generate_async(
        title="Your account",
        sections=SECTIONS,
        load=load,
        elapsed=lambda: round((time.perf_counter() - started) * 1000),
    )
    return StreamingResponse(body, media_type="text/html; charset=utf-8")


@app.get("/progress")
async def progress(steps: int = 10) -> StreamingResponse:
    """A long task reporting progress as it goes: an HTML bar that fills up, one step per write."""

    async def render() -> AsyncIterator[str]:
        yield (
            "<!doctype html><html><head><meta charset='utf-8'><title>Working</title></head><body>"
            "<h1>Working</h1><div style='border:1px solid #888;width:20rem'>"
        )
        style = f"background:#4a4;height:1rem;width:{100 // steps}%;display:inline-block"
        step = f"<div class='step' style='{style}'>"
        for i in range(steps):
            await work_step(i)
            yield step + "</div>"
        yield "</div><p id='done'>done</p></body></html>"

    return StreamingResponse(render(), media_type="text/html; charset=utf-8")
