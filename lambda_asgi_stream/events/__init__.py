"""Lambda events -> ASGI HTTP requests, one module per payload format; ``build`` is the inverse."""

from __future__ import annotations

from .request import Request, parse_event

__all__ = ["Request", "parse_event"]
