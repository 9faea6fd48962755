"""Lambda events -> ASGI HTTP requests, one module per payload format; ``build`` is the inverse."""

from __future__ import annotations

from .base_path import normalize_base_path
from .handlers import EventHandler, MangumHandler, event_handlers
from .parse import parse_event
from .request import Request

__all__ = [
    "EventHandler",
    "MangumHandler",
    "Request",
    "event_handlers",
    "normalize_base_path",
    "parse_event",
]
