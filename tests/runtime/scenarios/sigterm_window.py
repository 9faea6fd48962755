"""SIGTERM after the worker's last loop pass but before it blocks waiting for ``next``: the loop must still
stop and run lifespan shutdown (the signal used to be handed to an event loop that never ran again)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from lambda_asgi_stream import runtime
from tests.runtime.fake_api import FakeRuntimeAPI
from tests.runtime.helpers import http_event, make_config

original = runtime._Connection.read_reply_blocking
calls = 0


def signal_just_before_the_wait(self: Any, **kwargs: Any) -> Any:
    global calls
    calls += 1
    if calls == 3:  # 1: next, 2: the 202 to the response, 3: the next `next`
        os.kill(os.getpid(), signal.SIGTERM)
    return original(self, **kwargs)


runtime._Connection.read_reply_blocking = signal_just_before_the_wait  # type: ignore[method-assign]
events: list[str] = []


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                events.append("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


with FakeRuntimeAPI(when_empty="hold") as api:
    api.add(http_event())
    loop_runtime = runtime.LambdaRuntime(app, make_config(api, lifespan="on"))
    done = threading.Event()

    def watchdog() -> None:
        if not done.wait(4):
            print("BUG: serve() still blocked 4 s after SIGTERM; lifespan events:", events, flush=True)
            os._exit(1)

    threading.Thread(target=watchdog, daemon=True).start()
    asyncio.run(loop_runtime.serve())
    done.set()
    print("OK: serve() returned after SIGTERM; lifespan events:", events)
