"""The emulator's settings (``serve``'s flags), its limits, and the console helpers every part uses."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

from .._types import Integration
from ..buffering import make_release

MAX_REQUEST_BYTES = 6 * 1024 * 1024  # synchronous invoke payload limit (Lambda quotas)
#: How long a request waits for a (re)starting runtime to take it, on top of the function timeout.
INIT_ALLOWANCE_S = 10.0
PREFIX = "lambda-asgi-stream:"


@dataclass(frozen=True)
class EmulatorOptions:
    """Settings of ``serve``; each is a command-line flag of the same name."""

    app: str
    host: str = "127.0.0.1"
    port: int = 9000
    integration: Integration = "function-url"
    invoke_mode: str = "RESPONSE_STREAM"
    buffering: str = "lambda"
    buffer_threshold: int = 100 * 1024
    timeout: float = 30.0
    bandwidth: bool = False
    reload: bool = False
    concurrency: int = 1
    #: seconds a client may take to send its request head (slowloris connections are closed)
    head_timeout: float = 5.0
    #: seconds one write may wait for a client that does not read before its response is given up
    write_timeout: float = 30.0
    environ: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.invoke_mode not in ("RESPONSE_STREAM", "BUFFERED"):
            raise ValueError(f"invoke mode must be RESPONSE_STREAM or BUFFERED, not {self.invoke_mode!r}")
        make_release(self.buffering, self.buffer_threshold)  # raises ValueError on a bad mode/threshold
        for name in ("timeout", "head_timeout", "write_timeout"):
            value = getattr(self, name)
            if not value > 0 or math.isinf(value):
                raise ValueError(
                    f"the {name.replace('_', ' ')} must be a positive number of seconds, not {value}"
                )
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {self.concurrency}")


def say(text: str) -> None:
    """A plain line on the console (stderr), for what the user must notice."""
    print(f"{PREFIX} {text}", file=sys.stderr, flush=True)


def error_text(detail: Any) -> str:
    """The message of an error payload (Lambda's ``{"errorMessage": ..., "errorType": ...}``)."""
    if isinstance(detail, dict):
        return str(detail.get("errorMessage", detail))
    return str(detail)


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
