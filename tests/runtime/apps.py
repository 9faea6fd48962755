"""A FastAPI app for the subprocess tests of ``python -m lambda_asgi_stream run``.

It appends what happens (``startup``, each request, ``shutdown``) to the file named by ``LAS_TEST_MARKER``;
``LAS_TEST_FAIL_STARTUP=1`` makes its lifespan startup fail.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

MARKER_ENV = "LAS_TEST_MARKER"
FAIL_STARTUP_ENV = "LAS_TEST_FAIL_STARTUP"


def mark(text: str) -> None:
    path = os.environ.get(MARKER_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    if os.environ.get(FAIL_STARTUP_ENV):
        raise RuntimeError("startup refused by the test")
    mark("startup")
    yield {"greeting": "hello from lifespan"}
    mark("shutdown")


app = FastAPI(lifespan=lifespan)


@app.get("/hello")
async def hello(request: Request) -> dict[str, str]:
    mark(f"request {request.url.path}")
    return {"greeting": request.state.greeting}
