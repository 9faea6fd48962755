"""Shell: run an app locally exactly as Lambda runs it (``lambda-asgi-stream serve MODULE:APP``).

Three parts, as in Lambda, each a module here:

* :mod:`.sandbox`: each **sandbox** is a child process running our own runtime loop
  (``python -m lambda_asgi_stream run``) against its own loopback Runtime API (:mod:`.local_api`), the way
  Lambda starts an execution environment. One invocation at a time per sandbox; ``--concurrency N`` runs
  N of them. A sandbox that dies is restarted; its in-flight invocation fails as Lambda's would.
* :mod:`.front_door`: a plain HTTP server (uvicorn) that turns each request into the event of the chosen
  integration (``events.build``), hands it to a free sandbox, and streams the answer back
  (:mod:`.response`) through the models of :mod:`~lambda_asgi_stream.buffering` (Lambda's hold-back of
  small writes, its bandwidth cap).
* **the limits** users trip over, enforced and explained: the function timeout (the sandbox is killed, as
  Lambda does), 6 MB buffered responses, the 200 MB streamed cap, the 16 KiB prelude, 6 MB request bodies.

:mod:`.server` runs them all (``serve``); :mod:`.invoke` is the ``invoke`` command (one event, in
process, printed as it arrives).

One line is logged per request: ``METHOD PATH STATUS ttfb= time= bytes= chunks= padding= end=``, where
``bytes`` and ``chunks`` count what reached the client (after the hold-back model), ``padding`` the bytes
of it that were the runtime's padding, and ``end`` is ``complete``, ``client-gone`` or ``error:TYPE``.
"""

from __future__ import annotations

from .front_door import FrontDoor, StreamCut
from .options import INIT_ALLOWANCE_S, MAX_REQUEST_BYTES, EmulatorOptions
from .sandbox import Sandbox, SandboxPool
from .server import serve

__all__ = [
    "INIT_ALLOWANCE_S",
    "MAX_REQUEST_BYTES",
    "EmulatorOptions",
    "FrontDoor",
    "Sandbox",
    "SandboxPool",
    "StreamCut",
    "serve",
]
