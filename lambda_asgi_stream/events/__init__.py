"""Lambda events -> ASGI HTTP requests, one module per payload format; ``build`` is the inverse."""

from __future__ import annotations

from .parse import parse_event
from .request import Request

__all__ = ["Request", "parse_event"]
