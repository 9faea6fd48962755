"""The loopback Runtime API server, kept importable here: it lives in :mod:`.emulator.local_api`."""

from __future__ import annotations

from .emulator.local_api import (
    BufferedResult,
    InvocationEvent,
    InvocationFailed,
    LocalRuntimeAPI,
    StreamData,
    StreamEnd,
)

__all__ = [
    "BufferedResult",
    "InvocationEvent",
    "InvocationFailed",
    "LocalRuntimeAPI",
    "StreamData",
    "StreamEnd",
]
