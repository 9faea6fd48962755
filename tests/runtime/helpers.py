"""Running the loop against the fake Runtime API, and tiny ASGI building blocks."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from lambda_asgi_stream import RuntimeAPIStatusError
from lambda_asgi_stream._types import ASGIApp
from lambda_asgi_stream.config import Config
from lambda_asgi_stream.events.build import build_event
from lambda_asgi_stream.padding import PaddingPolicy
from lambda_asgi_stream.runtime import LambdaRuntime, RuntimeClient

from .fake_api import DRAINED_STATUS, TIMEOUT, FakeRuntimeAPI

PRELUDE_TYPE = "application/vnd.awslambda.http-integration-response"


def make_config(api: FakeRuntimeAPI, **overrides: Any) -> Config:
    """Exact bytes by default: no padding, no lifespan."""
    settings: dict[str, Any] = {"lifespan": "off", "padding": PaddingPolicy(mode="none")}
    settings.update(overrides)
    return Config(runtime_api=api.address, **settings)


async def run_loop(
    app: ASGIApp, api: FakeRuntimeAPI, config: Config | None = None, **overrides: Any
) -> LambdaRuntime:
    """Serve every queued invocation; the fake's 410 on the last ``next`` ends the loop."""
    # Blocking waits, as `run` has them in Lambda: the fake API ends the loop with a 410, never a cancel.
    cfg = config or make_config(api, **overrides)
    runtime = LambdaRuntime(app, cfg, handle_signals=False, blocking_waits=cfg.max_concurrency == 1)
    with anyio.fail_after(TIMEOUT + 5), pytest.raises(RuntimeAPIStatusError) as stopped:
        await runtime.serve()
    assert stopped.value.status == DRAINED_STATUS, stopped.value
    assert api.errors == []
    return runtime


def http_event(path: str = "/", method: str = "GET", integration: str = "function-url", **kw: Any) -> Any:
    return build_event(integration, method=method, path=path, **kw)  # type: ignore[arg-type]


def start(status: int, headers: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    return {"type": "http.response.start", "status": status, "headers": raw}


def body(data: bytes = b"", *, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


class LoopbackServer:
    """A listening socket on loopback for one client's connections; what it opened is closed with it."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)  # a connection that never comes fails the test, not hangs it
        self.opened: list[RuntimeClient | socket.socket] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listener.getsockname()[1]}"

    def client(self) -> RuntimeClient:
        client = RuntimeClient(self.address)
        self.opened.append(client)
        return client

    def accept(self) -> socket.socket:
        sock, _ = self.listener.accept()
        sock.settimeout(5)
        self.opened.append(sock)
        return sock

    def close(self) -> None:
        for item in (*self.opened, self.listener):
            item.close()
